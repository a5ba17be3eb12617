//! The sandbox's recorder: on a sandbox root, the commands that would act
//! on the machine outside the sandbox (the service manager, the web server,
//! user creation, hooks, snapshots, health checks) are appended in order to
//! `host-calls.log` instead of run, written exactly as a real host would run
//! them (`commands.*` overrides included).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::process::ProcessError;
use super::services::Commands;
use super::{Services, UnitState};

/// Appends command lines to a log file (a real path).
#[derive(Debug, Clone)]
pub struct Recorder {
    pub log: PathBuf,
    pub commands: Commands,
}

impl Recorder {
    /// Append one command line.
    pub fn record(&self, line: &str) -> Result<(), ProcessError> {
        let fail = |source| ProcessError::Record {
            command: line.to_string(),
            log: self.log.clone(),
            source,
        };
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log)
            .map_err(fail)?;
        writeln!(file, "{line}").map_err(fail)
    }

    fn argv(&self, argv: &[String]) -> Result<(), ProcessError> {
        self.record(&argv.join(" "))
    }
}

impl Services for Recorder {
    fn systemctl(&self, args: &[&str]) -> Result<(), ProcessError> {
        self.argv(&self.commands.systemctl_argv(args))
    }

    fn unit_states(&self, units: &[String]) -> Vec<UnitState> {
        // A query, not a change: nothing is recorded, and nothing runs here.
        vec![UnitState::Active; units.len()]
    }

    fn verify_units(&self, paths: &[PathBuf]) -> Result<(), ProcessError> {
        self.argv(&self.commands.verify_argv(paths))
    }

    fn nginx_test(&self) -> Result<(), ProcessError> {
        self.argv(&self.commands.nginx_test)
    }

    fn nginx_reload(&self) -> Result<(), ProcessError> {
        self.argv(&self.commands.nginx_reload)
    }
}
