//! `plumb run`: the daemon. A single-threaded tokio runtime waits for the
//! schedule, SIGHUP and the webhook; each reconcile is a fresh
//! `plumb reconcile --once --wait` process with the same flags, so it takes
//! the same lock as the timer's runs (they never overlap), a crash in it
//! cannot take the daemon down, and the idle daemon stays small. Under
//! systemd it sends READY, STATUS and WATCHDOG.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use std::path::Path;

use super::status::NEXT_RUN;
use crate::daemon::{self, Outcome, Trigger, World};
use crate::error::{ConfigError, Error, exit};
use crate::host::process::{Proc, ProcessError};
use crate::host::{Host, RealHost};
use crate::spec::settings::{Flags, Settings};
use crate::ui;

/// Longest a reconcile started by the daemon may take before it is killed
/// (the timer's unit has the same limit).
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Real {
    host: RealHost,
    /// The plumb binary, by path: after an upgrade it is the new one.
    program: String,
    /// The common flags the daemon was started with, passed on to each run.
    flags: Vec<String>,
}

impl World for Real {
    async fn reconcile(&mut self, trigger: Trigger) -> Outcome {
        let mut argv = vec![
            self.program.clone(),
            "reconcile".into(),
            "--once".into(),
            "--wait".into(),
        ];
        argv.extend(self.flags.iter().cloned());
        let mut run = Proc::new(&argv)
            .env(TRIGGER_VAR, trigger.as_str())
            .timeout(RUN_TIMEOUT);
        // The log filter, and where https fetches find their CAs.
        for name in ["RUST_LOG", "SSL_CERT_FILE", "SSL_CERT_DIR"] {
            if let Ok(value) = std::env::var(name) {
                run = run.env(name, &value);
            }
        }
        let ended = tokio::task::spawn_blocking(move || run.run()).await;
        let (outcome, output) = match ended {
            Ok(Ok(out)) => (Outcome::Done, out.text),
            Ok(Err(ProcessError::Exit { code, output, .. })) if code == i32::from(exit::FETCH) => {
                (Outcome::FetchFailed, output)
            }
            Ok(Err(ProcessError::Exit { output, .. })) => (Outcome::Done, output),
            Ok(Err(ProcessError::Timeout { output, .. })) => {
                ui::error(format_args!(
                    "a reconcile ran longer than {} min and was killed",
                    RUN_TIMEOUT.as_secs() / 60
                ));
                (Outcome::Done, output)
            }
            Ok(Err(e)) => {
                // Never idle on as if all were well: exit, and let systemd
                // restart the daemon (Restart=on-failure).
                ui::error(format_args!("cannot run {}: {e}", self.program));
                std::process::exit(i32::from(exit::INTERNAL));
            }
            Err(e) => {
                ui::error(format_args!("the reconcile task failed: {e}"));
                (Outcome::Done, String::new())
            }
        };
        ui::raw(&output);
        outcome
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        // RandomState is seeded from the OS once per process: enough for jitter.
        use std::hash::{BuildHasher, Hasher};
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Duration::from_millis(random % (max.as_millis() as u64).max(1))
    }

    fn status(&mut self, text: &str, next: Option<DateTime<Utc>>) {
        notify(format!("STATUS={text}"));
        if let Some(at) = next {
            let files = self.host.files();
            let path = Path::new(NEXT_RUN);
            // Written atomically, so `plumb status` never reads half a line.
            let _ = files
                .create_dir_all(path.parent().expect("a directory"))
                .and_then(|_| files.write_atomic(path, at.to_rfc3339().as_bytes(), 0o644));
        }
    }
}

/// Send a notification to systemd off the runtime thread: a full
/// notification socket must not stall the webhook or the schedule.
fn notify(state: String) {
    tokio::task::spawn_blocking(move || {
        let _ = sd_notify::notify(&[NotifyState::Custom(&state)]);
    });
}

/// Tells a reconcile started by the daemon what triggered it.
pub const TRIGGER_VAR: &str = "PLUMB_TRIGGER";

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(settings: &Settings, flags: &Flags) -> Result<u8, Error> {
    // Every run it starts fetches: no repo is a config error now, not later.
    settings.remote()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConfigError::Invalid(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(settings.clone(), pass_on(flags)))
}

/// The flags to give each `plumb reconcile` the daemon starts.
fn pass_on(flags: &Flags) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push(name.to_string());
            out.push(value);
        }
    };
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    add("--config", path(&flags.config));
    add("--root", path(&flags.root));
    add("--repo", flags.repo.clone());
    add("--branch", flags.branch.clone());
    add("--path", flags.path.clone());
    add("--state-dir", path(&flags.state_dir));
    add("--hostname", flags.hostname.clone());
    out
}

async fn serve(settings: Settings, flags: Vec<String>) -> Result<u8, Error> {
    // The next-run file is a host path (below --root); never recorded.
    let host = RealHost::machine(settings.root.clone(), settings.commands.clone());
    let (triggers, received) = mpsc::channel(1);
    let io = |what: &str, e: std::io::Error| ConfigError::Invalid(format!("{what}: {e}"));
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| io("SIGHUP handler", e))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| io("SIGTERM handler", e))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| io("SIGINT handler", e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    if let Some(hook) = &settings.webhook {
        // Files the host config names are the machine's, whatever --root is.
        let machine = RealHost::machine("/".into(), settings.commands.clone());
        let secret = machine
            .files()
            .read(&hook.secret_file)
            .map_err(|e| io(&format!("webhook secret {}", hook.secret_file.display()), e))?;
        let secret = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
        if secret.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "webhook secret {} is empty",
                hook.secret_file.display()
            ))
            .into());
        }
        let listener = tokio::net::TcpListener::bind(&hook.listen)
            .await
            .map_err(|e| io(&format!("webhook listen {}", hook.listen), e))?;
        ui::out(format_args!(
            "webhook listening on {}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        ));
        let mut stopped = stop_rx.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let triggers = triggers.clone();
        tokio::spawn(async move {
            if let Err(e) =
                crate::daemon::webhook::serve(listener, secret, triggers, shutdown).await
            {
                ui::error(format_args!("webhook: {e}"));
            }
        });
    }
    {
        let triggers = triggers.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let _ = triggers.try_send(Trigger::Signal);
            }
        });
    }
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let every = timeout / 2;
        tokio::spawn(async move {
            loop {
                notify("WATCHDOG=1".into());
                tokio::time::sleep(every).await;
            }
        });
    }
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    let program = std::env::current_exe().map_err(|e| io("the plumb binary", e))?;
    let mut world = Real {
        host,
        program: upgraded(&program.display().to_string()).to_string(),
        flags,
    };
    daemon::run(&settings.timing, &mut world, received, shutdown).await;
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = world.host.files().remove_file(Path::new(NEXT_RUN));
    ui::line("plumb run: stopped");
    Ok(exit::OK)
}

/// The binary each run starts: the one at the path plumb was started from.
/// An upgrade that replaced that file makes the kernel name the old one
/// `PATH (deleted)`; the runs use the new binary at PATH.
fn upgraded(exe: &str) -> &str {
    exe.strip_suffix(" (deleted)").unwrap_or(exe)
}

#[cfg(test)]
mod tests {
    use super::upgraded;

    #[test]
    fn runs_use_the_binary_that_replaced_the_daemons() {
        assert_eq!(
            upgraded("/usr/local/bin/plumb (deleted)"),
            "/usr/local/bin/plumb"
        );
        assert_eq!(upgraded("/usr/local/bin/plumb"), "/usr/local/bin/plumb");
    }
}
