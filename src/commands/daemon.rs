//! `plumb run`: the daemon. A single-threaded tokio runtime waits for the
//! schedule, SIGHUP and the webhook; each reconcile runs on a blocking thread
//! and takes the same lock as `reconcile --once`, so a timer run and the
//! daemon never overlap. Under systemd it sends READY, STATUS and WATCHDOG.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngExt;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::daemon::{self, Outcome, Trigger, World};
use crate::error::{ConfigError, Error, exit};
use crate::host::Host;
use crate::settings::Settings;

use super::reconcile::{self, Options};

/// Where the daemon publishes its next run for `plumb status`.
pub const NEXT_RUN: &str = "/run/plumb/next-run";

struct Real {
    settings: Settings,
}

impl World for Real {
    async fn reconcile(&mut self, trigger: Trigger) -> Outcome {
        let settings = self.settings.clone();
        let run = tokio::task::spawn_blocking(move || {
            let options = Options {
                wait: true,
                trigger: trigger.as_str().into(),
                ..Options::default()
            };
            reconcile::run_with_metrics(&settings, &settings.host(), &options)
        });
        match run.await {
            Ok(Ok(_)) => Outcome::Done,
            Ok(Err(error)) => {
                eprintln!("error: {error}");
                match error {
                    Error::Fetch(_) => Outcome::FetchFailed,
                    _ => Outcome::Done,
                }
            }
            Err(panic) => {
                eprintln!("error: reconcile panicked: {panic}");
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
        Duration::from_millis(rand::rng().random_range(0..max.as_millis() as u64))
    }

    fn status(&mut self, text: &str, next: Option<DateTime<Utc>>) {
        let _ = sd_notify::notify(&[NotifyState::Status(text)]);
        if let Some(at) = next {
            let host = self.settings.host();
            let path = host.real(std::path::Path::new(NEXT_RUN));
            let _ = std::fs::create_dir_all(path.parent().unwrap());
            let _ = std::fs::write(&path, at.to_rfc3339());
        }
    }
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(settings: &Settings) -> Result<u8, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConfigError::Invalid(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(settings.clone()))
}

async fn serve(settings: Settings) -> Result<u8, Error> {
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
        println!(
            "webhook listening on {}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        let mut stopped = stop_rx.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let triggers = triggers.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::webhook::serve(listener, secret, triggers, shutdown).await {
                eprintln!("error: webhook: {e}");
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
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
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
    let mut world = Real {
        settings: settings.clone(),
    };
    daemon::run(&settings.timing, &mut world, received, shutdown).await;
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    println!("plumb run: stopped");
    Ok(exit::OK)
}
