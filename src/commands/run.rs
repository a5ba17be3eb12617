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

use super::status::NEXT_RUN;
use crate::daemon::{self, Outcome, Trigger, World};
use crate::error::{ConfigError, Error, exit};
use crate::spec::paths::under;
use crate::spec::settings::{Flags, Settings};
use crate::ui;

/// Longest a reconcile started by the daemon may take before it is killed
/// (the timer's unit has the same limit).
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Real {
    settings: Settings,
    /// The plumb binary, by path: after an upgrade it is the new one.
    program: std::path::PathBuf,
    /// The common flags the daemon was started with, passed on to each run.
    flags: Vec<std::ffi::OsString>,
}

impl World for Real {
    async fn reconcile(&mut self, trigger: Trigger) -> Outcome {
        let child = tokio::process::Command::new(&self.program)
            .args(["reconcile", "--once", "--wait"])
            .args(&self.flags)
            .env(TRIGGER_VAR, trigger.as_str())
            .env_remove("SSL_CERT_FILE")
            .env_remove("NOTIFY_SOCKET")
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                // Never idle on as if all were well: exit, and let systemd
                // restart the daemon (Restart=on-failure).
                ui::error(format_args!("cannot start {}: {e}", self.program.display()));
                std::process::exit(i32::from(exit::INTERNAL));
            }
        };
        match tokio::time::timeout(RUN_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.code() == Some(i32::from(exit::FETCH)) => Outcome::FetchFailed,
            Ok(_) => Outcome::Done,
            Err(_) => {
                ui::error(format_args!(
                    "a reconcile ran longer than {} min and was killed",
                    RUN_TIMEOUT.as_secs() / 60
                ));
                let _ = child.kill().await;
                Outcome::Done
            }
        }
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
            let path = under(&self.settings.root, std::path::Path::new(NEXT_RUN));
            let _ = std::fs::create_dir_all(path.parent().unwrap());
            // Renamed into place, so `plumb status` never reads half a line.
            let tmp = path.with_extension("tmp");
            let _ =
                std::fs::write(&tmp, at.to_rfc3339()).and_then(|_| std::fs::rename(&tmp, &path));
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConfigError::Invalid(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(settings.clone(), pass_on(flags)))
}

/// The flags to give each `plumb reconcile` the daemon starts.
fn pass_on(flags: &Flags) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    let mut add = |name: &str, value: Option<std::ffi::OsString>| {
        if let Some(value) = value {
            out.push(name.into());
            out.push(value);
        }
    };
    add("--config", flags.config.clone().map(Into::into));
    add("--root", flags.root.clone().map(Into::into));
    add("--repo", flags.repo.clone().map(Into::into));
    add("--branch", flags.branch.clone().map(Into::into));
    add("--path", flags.path.clone().map(Into::into));
    add("--state-dir", flags.state_dir.clone().map(Into::into));
    add("--hostname", flags.hostname.clone().map(Into::into));
    out
}

async fn serve(settings: Settings, flags: Vec<std::ffi::OsString>) -> Result<u8, Error> {
    let (triggers, received) = mpsc::channel(1);
    let io = |what: &str, e: std::io::Error| ConfigError::Invalid(format!("{what}: {e}"));
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| io("SIGHUP handler", e))?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| io("SIGTERM handler", e))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| io("SIGINT handler", e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    if let Some(hook) = &settings.webhook {
        let secret = std::fs::read(&hook.secret_file)
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
        settings: settings.clone(),
        program,
        flags,
    };
    daemon::run(&settings.timing, &mut world, received, shutdown).await;
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = std::fs::remove_file(under(&settings.root, std::path::Path::new(NEXT_RUN)));
    ui::line("plumb run: stopped");
    Ok(exit::OK)
}
