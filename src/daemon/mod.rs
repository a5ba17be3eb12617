//! The `plumb run` loop: reconcile at start, then on schedule (crontab line
//! or interval, plus jitter), on SIGHUP and on webhooks; back off
//! exponentially while fetching fails. Time, triggers and shutdown are passed
//! in, so tests drive the loop with a paused clock. Also the push webhook
//! and the metrics textfile.

pub mod metrics;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::spec::schedule;
use crate::spec::settings::{Schedule, Timing};

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Schedule,
    Retry,
    Webhook,
    Signal,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Schedule => "schedule",
            Trigger::Retry => "retry",
            Trigger::Webhook => "webhook",
            Trigger::Signal => "signal",
        }
    }
}

/// How a reconcile ended, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Deployed, up to date, or failed on the content (the quarantine
    /// keeps that from looping): wait for the schedule.
    Done,
    /// The fetch failed: retry with exponential backoff.
    FetchFailed,
}

/// First retry after a failed fetch; doubled each time, up to `BACKOFF_CAP`.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_CAP: Duration = Duration::from_secs(900);

/// The wait before retry number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(BACKOFF_CAP)
}

/// How long from `now` until the schedule next fires (without jitter).
pub fn until_next(schedule: &Schedule, now: DateTime<Utc>) -> Duration {
    match schedule {
        Schedule::Every(secs) => Duration::from_secs(*secs),
        Schedule::Cron(line) => schedule::next_times(line, now, 1)
            .ok()
            .and_then(|t| (t[0] - now).to_std().ok())
            // Validated at start-up; a year is a safe bound if it ever fails.
            .unwrap_or(Duration::from_secs(365 * 24 * 3600)),
    }
}

/// What the loop needs from the outside world.
pub trait World {
    /// Reconcile once.
    fn reconcile(&mut self, trigger: Trigger) -> impl Future<Output = Outcome>;
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// A random extra delay in `[0, max)`.
    fn jitter(&mut self, max: Duration) -> Duration;
    /// Report what the daemon is doing (systemd STATUS=, and the next run).
    fn status(&mut self, text: &str, next: Option<DateTime<Utc>>);
}

/// Run until `shutdown` completes. A reconcile in progress is finished first.
pub async fn run(
    timing: &Timing,
    world: &mut impl World,
    mut triggers: mpsc::Receiver<Trigger>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut trigger = Trigger::Start;
    let mut failures = 0u32;
    loop {
        world.status(&format!("reconciling ({})", trigger.as_str()), None);
        let outcome = world.reconcile(trigger).await;
        failures = match outcome {
            Outcome::FetchFailed => failures + 1,
            Outcome::Done => 0,
        };
        // A trigger that arrived during the run stays queued (the channel
        // holds one): a push after the run's fetch must not wait for the
        // schedule. Bursts still coalesce into that one.
        let (delay, next) = if failures > 0 {
            (backoff(failures), Trigger::Retry)
        } else {
            let jitter = world.jitter(Duration::from_secs(timing.jitter_secs));
            (
                until_next(&timing.schedule, world.now()) + jitter,
                Trigger::Schedule,
            )
        };
        let at = world.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let what = if failures > 0 {
            format!("fetch failed {failures} time(s); retrying")
        } else {
            "idle".to_string()
        };
        world.status(
            &format!("{what}; next run at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
            Some(at),
        );
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(delay) => trigger = next,
            received = triggers.recv() => match received {
                Some(t) => trigger = t,
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct Fake {
        start: tokio::time::Instant,
        base: DateTime<Utc>,
        runs: Vec<(Trigger, DateTime<Utc>)>,
        fail_fetches: u32,
        /// How long each reconcile takes.
        takes: Duration,
    }

    impl World for Fake {
        async fn reconcile(&mut self, trigger: Trigger) -> Outcome {
            let now = self.now();
            self.runs.push((trigger, now));
            tokio::time::sleep(self.takes).await;
            if self.fail_fetches > 0 {
                self.fail_fetches -= 1;
                Outcome::FetchFailed
            } else {
                Outcome::Done
            }
        }
        fn now(&self) -> DateTime<Utc> {
            self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap()
        }
        fn jitter(&mut self, _max: Duration) -> Duration {
            Duration::ZERO
        }
        fn status(&mut self, _text: &str, _next: Option<DateTime<Utc>>) {}
    }

    fn fake(fail_fetches: u32) -> Fake {
        Fake {
            start: tokio::time::Instant::now(),
            base: Utc.with_ymd_and_hms(2026, 11, 26, 2, 58, 30).unwrap(),
            runs: Vec::new(),
            fail_fetches,
            takes: Duration::ZERO,
        }
    }

    fn timing(schedule: Schedule) -> Timing {
        Timing {
            schedule,
            jitter_secs: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reconciles_at_start_then_on_the_crontab_schedule() {
        let mut world = fake(0);
        let (_tx, rx) = mpsc::channel(1);
        let stop = tokio::time::sleep(Duration::from_secs(3 * 3600));
        run(
            &timing(Schedule::Cron("0 3 * * *".into())),
            &mut world,
            rx,
            stop,
        )
        .await;
        let times: Vec<String> = world
            .runs
            .iter()
            .map(|(t, at)| format!("{} {}", t.as_str(), at.format("%H:%M:%S")))
            .collect();
        assert_eq!(
            times,
            ["start 02:58:30", "schedule 03:00:00"],
            "03:00 daily, nothing else in 3 hours"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_runs_at_once_and_a_burst_is_one_run() {
        let mut world = fake(0);
        let (tx, rx) = mpsc::channel(1);
        let stop = tokio::time::sleep(Duration::from_secs(100));
        let sender = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            for _ in 0..5 {
                let _ = tx.try_send(Trigger::Webhook); // a burst of pushes
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = tx.try_send(Trigger::Signal);
        };
        let every = timing(Schedule::Every(300));
        let ((), ()) = tokio::join!(run(&every, &mut world, rx, stop), sender);
        let triggers: Vec<Trigger> = world.runs.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            triggers,
            [Trigger::Start, Trigger::Webhook, Trigger::Signal]
        );
        assert_eq!(
            (world.runs[1].1 - world.runs[0].1).num_seconds(),
            10,
            "the webhook ran at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_during_a_long_run_is_not_lost() {
        let mut world = fake(0);
        world.takes = Duration::from_secs(120); // a long build
        let (tx, rx) = mpsc::channel(1);
        let stop = tokio::time::sleep(Duration::from_secs(400));
        let sender = async {
            tokio::time::sleep(Duration::from_secs(60)).await; // mid-run
            let _ = tx.try_send(Trigger::Webhook);
        };
        let every = timing(Schedule::Every(3600));
        let ((), ()) = tokio::join!(run(&every, &mut world, rx, stop), sender);
        let runs: Vec<(Trigger, i64)> = world
            .runs
            .iter()
            .map(|(t, at)| (*t, (*at - world.base).num_seconds()))
            .collect();
        assert_eq!(
            runs,
            [(Trigger::Start, 0), (Trigger::Webhook, 120)],
            "the push runs right after the long run"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fetch_failures_back_off_exponentially_then_the_schedule_resumes() {
        let mut world = fake(4);
        let (_tx, rx) = mpsc::channel(1);
        let stop = tokio::time::sleep(Duration::from_secs(600));
        run(&timing(Schedule::Every(300)), &mut world, rx, stop).await;
        let gaps: Vec<i64> = world
            .runs
            .windows(2)
            .map(|w| (w[1].1 - w[0].1).num_seconds())
            .collect();
        assert_eq!(
            gaps,
            [10, 20, 40, 80, 300],
            "10 s, doubling, then back to every 300 s"
        );
        assert_eq!(backoff(20), BACKOFF_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_waiting_returns_at_once() {
        let mut world = fake(0);
        let (_tx, rx) = mpsc::channel(1);
        let started = tokio::time::Instant::now();
        run(
            &timing(Schedule::Every(3600)),
            &mut world,
            rx,
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(world.runs.len(), 1);
    }
}
