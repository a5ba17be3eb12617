//! The machine plumb runs on. [`RealHost::machine`] acts on it for real;
//! [`RealHost::sandbox`] is the same host with every path under a root and
//! a [`Recorder`] in place of whatever would reach outside that root. The
//! difference between the two lives here, in the two constructors.

use std::path::PathBuf;

use super::account::{self, Account};
use super::files::RealFiles;
use super::health;
use super::process::{Output, Proc, ProcessError};
use super::record::Recorder;
use super::services::{Commands, SystemServices};
use super::{Files, Host, Job, JobKind, Processes, Services, Users};
use crate::spec::health::{HealthCheck, Probe};

/// The machine, or a sandbox of it.
pub struct RealHost {
    files: RealFiles,
    services: Box<dyn Services>,
    processes: RealProcesses,
    users: RealUsers,
}

impl RealHost {
    /// Act on the machine below `root` (`/` for the machine itself; a
    /// directory for tests that run real tools against a private prefix).
    pub fn machine(root: PathBuf, commands: Commands) -> RealHost {
        RealHost {
            files: RealFiles { root: root.clone() },
            services: Box::new(SystemServices {
                commands,
                root: root.clone(),
            }),
            processes: RealProcesses {
                root: root.clone(),
                recorder: None,
            },
            users: RealUsers {
                recorder: None,
                stand_in: None,
            },
        }
    }

    /// A sandbox below `root`: builds and seeding run (they only write
    /// inside it), everything else that acts on the machine is recorded in
    /// `log` (a host path). Users missing here are stood in for by `nobody`.
    pub fn sandbox(root: PathBuf, commands: Commands, log: PathBuf) -> RealHost {
        let recorder = Recorder {
            log: crate::spec::paths::under(&root, &log),
            commands,
        };
        RealHost {
            files: RealFiles { root: root.clone() },
            services: Box::new(recorder.clone()),
            processes: RealProcesses {
                root,
                recorder: Some(recorder.clone()),
            },
            users: RealUsers {
                recorder: Some(recorder),
                stand_in: Some("nobody"),
            },
        }
    }
}

impl Host for RealHost {
    fn files(&self) -> &dyn Files {
        &self.files
    }
    fn services(&self) -> &dyn Services {
        self.services.as_ref()
    }
    fn processes(&self) -> &dyn Processes {
        &self.processes
    }
    fn users(&self) -> &dyn Users {
        &self.users
    }
}

struct RealProcesses {
    root: PathBuf,
    recorder: Option<Recorder>,
}

impl Processes for RealProcesses {
    fn run(&self, job: &Job) -> Result<Output, ProcessError> {
        if let Some(recorder) = &self.recorder {
            match job.kind {
                JobKind::Hook => {
                    let dir = crate::spec::paths::under(&self.root, &job.dir);
                    let line = format!("hook in {}: {}", dir.display(), job.label());
                    return recorder.record(&line).map(|_| Output::default());
                }
                JobKind::Snapshot | JobKind::ImageRemove | JobKind::Publish => {
                    return recorder
                        .record(&job.argv.join(" "))
                        .map(|_| Output::default());
                }
                JobKind::Build | JobKind::Seed | JobKind::Image => {}
            }
        }
        let mut proc = Proc::new(&job.argv)
            .dir(&crate::spec::paths::under(&self.root, &job.dir))
            .timeout(job.timeout)
            .confined();
        if let Some(account) = &job.account {
            proc = proc.account(account);
        }
        for (key, value) in &job.env {
            proc = proc.env(key, value);
        }
        proc.run()
    }

    fn health(&self, check: &HealthCheck) -> Result<(), ProcessError> {
        match &self.recorder {
            Some(recorder) => recorder.record(&format!("health {}: {}", check.app, check.probe)),
            None => {
                let account = match &check.probe {
                    Probe::Command { .. } => Some(
                        RealUsers {
                            recorder: None,
                            stand_in: None,
                        }
                        .account_for(check.user.as_deref())?,
                    ),
                    _ => None,
                };
                health::wait(check, account.as_ref())
            }
        }
    }
}

struct RealUsers {
    recorder: Option<Recorder>,
    /// Who stands in for users missing on a sandbox.
    stand_in: Option<&'static str>,
}

impl Users for RealUsers {
    fn lookup(&self, name: &str) -> Option<Account> {
        Account::lookup(name)
    }

    fn create(&self, name: &str) -> Result<(), ProcessError> {
        let argv: Vec<String> = [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--",
            name,
        ]
        .map(String::from)
        .to_vec();
        match &self.recorder {
            Some(recorder) => recorder.record(&format!("useradd --system {name}")),
            None => Proc::new(&argv).run().map(drop),
        }
    }

    fn account_for(&self, name: Option<&str>) -> Result<Account, ProcessError> {
        if !account::privileged() {
            // Not root: commands cannot switch users and run as plumb's.
            return Ok(Account::current());
        }
        let name = name.ok_or_else(|| ProcessError::User {
            user: "(none)".into(),
            problem: "builds and hooks need the app's `user:`; they never run as root".into(),
        })?;
        let account = match (Account::lookup(name), self.stand_in) {
            (Some(account), _) => account,
            (None, Some(other)) => Account::lookup(other).ok_or_else(|| ProcessError::User {
                user: other.into(),
                problem: "does not exist".into(),
            })?,
            (None, None) => {
                return Err(ProcessError::User {
                    user: name.into(),
                    problem: "does not exist; create it, or set `create_user: true` for the app"
                        .into(),
                });
            }
        };
        if account.is_root() {
            return Err(ProcessError::User {
                user: name.into(),
                problem: "is root; builds and hooks never run as root".into(),
            });
        }
        Ok(account)
    }
}
