//! plumb: a pull-based GitOps agent for Linux hosts.

pub mod action; // the steps of a plan, each printable as one line
pub mod appdir; // app dirs of a new release: shared links, build reuse, builds
pub mod apply; // executes a Plan through the Host, one step at a time
pub mod build; // app builds and hooks as the app user, with timeouts; tree copies
pub mod cli; // clap types; commands never see them
pub mod commands; // one file per subcommand
pub mod daemon; // the `plumb run` loop: schedule, jitter, backoff, triggers
pub mod desired; // the desired state: files, units, sites (pure data)
pub mod drift; // drift: how the host differs from its release (links, hashes, units)
pub mod error; // typed errors per stage and the exit code of each
pub mod fault; // fault injection for crash tests (PLUMB_FAULT_KILL_AFTER)
pub mod health; // health checks: HTTP, TCP or a command, with retries and a deadline
pub mod host; // trait Host: every side effect, with RealHost{root}
pub mod journal; // journal.json: finish or undo a run that was killed
pub mod known_hosts; // OpenSSH known_hosts parsing and host key matching
pub mod lock; // one run at a time: an flock on /run/plumb/lock
pub mod logging; // tracing subscriber set-up
pub mod metrics; // Prometheus textfile written after every run
pub mod paths; // host paths: normalisation and the allowed roots
pub mod plan; // pure: (desired, observed) -> Plan
pub mod process; // child processes: spawn, timeout, exit code or signal, one error type
pub mod release; // release directories, manifest, the `current` swap, pruning
pub mod render; // minijinja: deploy repo -> desired state (the only minijinja import)
pub mod repo; // deploy.yaml and host overlays -> typed input
pub mod schedule; // crontab(5) lines -> systemd OnCalendar=
pub mod settings; // host config + flags resolved in one place
pub mod source; // git2: fetch, resolve, read trees (the only git2 import)
pub mod spec; // typed app sections of deploy.yaml: service, site, backup, health, hooks
pub mod state; // state.json: deployed commit, owned paths, history
pub mod templates; // built-in templates compiled into the binary
pub mod tree; // a deploy repo's files at one commit, in memory
pub mod webhook; // the push webhook: HMAC-verified triggers for `plumb run`
pub mod yaml; // the only YAML import: typed parsing with file:line:column errors
