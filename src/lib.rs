//! plumb: a pull-based GitOps agent for Linux hosts.
//!
//! The folders are the pipeline, and imports only point down:
//! `commands` → `daemon` → `apply` → `plan` → `render` → `spec`, `source`;
//! everything that touches the machine is in `host`, which the pure layers
//! (`spec`, `render`, `plan`) never import. See docs/architecture.md.

pub mod apply; // executes plans: releases, journal, state.json, observing the host
pub mod cli; // clap types; only `commands` sees them
pub mod commands; // one file per subcommand, and the shared deploy pipeline
pub mod daemon; // `plumb run`: schedule, webhook, metrics
pub mod error; // typed errors, whose fault each is, exit codes
pub mod host; // the host boundary: files, services, processes, users
pub mod plan; // pure: (target release, observed host) -> Plan
pub mod render; // minijinja: a deploy repo at one commit -> the desired state
pub mod source; // git2: fetch, resolve, read trees (the only git2 import)
pub mod spec; // host config, deploy.yaml, overlays, paths, schedules, layout
pub mod ui; // what the operator reads

/// `plumb --version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PLUMB_COMMIT"), ")");
