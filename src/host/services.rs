//! systemd and nginx on a real machine: the argv of each call (the host
//! config may override them) and running them through the process builder.

use std::io;
use std::path::{Path, PathBuf};

use super::process::{Proc, ProcessError};
use super::{Services, UnitState};
pub use crate::spec::settings::Commands;

/// The real service manager and web server.
#[derive(Debug, Clone)]
pub struct SystemServices {
    pub commands: Commands,
    /// The host's root, to turn unit host paths into real paths.
    pub root: PathBuf,
}

fn run(argv: &[String]) -> Result<(), ProcessError> {
    Proc::new(argv).run().map(drop)
}

impl Services for SystemServices {
    fn systemctl(&self, args: &[&str]) -> Result<(), ProcessError> {
        run(&self.commands.systemctl_argv(args))
    }

    fn unit_states(&self, units: &[String]) -> Vec<UnitState> {
        if units.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["is-active"];
        args.extend(units.iter().map(String::as_str));
        // Exits non-zero when any unit is not active: the lines are the answer.
        let text = match Proc::new(&self.commands.systemctl_argv(&args)).run() {
            Ok(out) => out.text,
            Err(ProcessError::Exit { output, .. }) => output,
            Err(_) => String::new(),
        };
        let states: Vec<&str> = text.lines().map(str::trim).collect();
        (0..units.len())
            .map(|i| match states.get(i) {
                Some(&"active") | Some(&"reloading") => UnitState::Active,
                Some(&"failed") => UnitState::Failed,
                _ => UnitState::Inactive,
            })
            .collect()
    }

    fn verify_units(&self, paths: &[PathBuf]) -> Result<(), ProcessError> {
        let real: Vec<PathBuf> = paths
            .iter()
            // A bare unit name is looked up by systemd itself.
            .map(|p| {
                if p.is_absolute() {
                    crate::spec::paths::under(&self.root, p)
                } else {
                    p.clone()
                }
            })
            .collect();
        match run(&self.commands.verify_argv(&real)) {
            // "where the tool exists": a host without systemd-analyze skips the check.
            Err(ProcessError::Spawn { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                tracing::warn!("systemd-analyze is not installed: unit files not verified");
                Ok(())
            }
            Err(ProcessError::Exit {
                command,
                code,
                output,
            }) => Err(ProcessError::Exit {
                command,
                code,
                output: strip_root(&output, &self.root),
            }),
            other => other,
        }
    }

    fn nginx_test(&self) -> Result<(), ProcessError> {
        run(&self.commands.nginx_test)
    }

    fn nginx_reload(&self) -> Result<(), ProcessError> {
        run(&self.commands.nginx_reload)
    }
}

/// Messages about sandbox paths read as host paths.
fn strip_root(text: &str, root: &Path) -> String {
    if root == Path::new("/") {
        return text.to_string();
    }
    text.replace(&root.display().to_string(), "")
}
