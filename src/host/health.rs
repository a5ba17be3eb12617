//! Health checks: HTTP GET, TCP connect or a command, retried until they
//! pass or their deadline expires. Every attempt is bounded too.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::account::Account;
use super::process::{Proc, ProcessError};
use crate::spec::health::{HealthCheck, Probe};

/// The pause before the first retry; it doubles up to the check's interval.
const FIRST_RETRY: Duration = Duration::from_millis(25);

/// Longest a single attempt may take.
const ATTEMPT: Duration = Duration::from_secs(5);

/// Try `check` until it passes or `check.timeout_ms` has gone by. Command
/// probes run as `account`.
pub fn wait(check: &HealthCheck, account: Option<&Account>) -> Result<(), ProcessError> {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(check.timeout_ms);
    // A restarted service usually answers within a few hundred ms: retry
    // soon, then back off to the configured interval.
    let interval = Duration::from_millis(check.interval_ms.max(10));
    let mut pause = FIRST_RETRY.min(interval);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(200), ATTEMPT);
        let error = match probe(&check.probe, account, left) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if Instant::now() + pause > deadline {
            return Err(ProcessError::Unhealthy {
                attempts,
                seconds: started
                    .elapsed()
                    .as_secs_f64()
                    .max(check.timeout_ms as f64 / 1000.0),
                last: error,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(interval);
    }
}

/// One attempt, bounded by `left`; the error says what was seen.
fn probe(probe: &Probe, account: Option<&Account>, left: Duration) -> Result<(), String> {
    match probe {
        Probe::Http { url, status } => {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(left))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .new_agent();
            let response = agent.get(url).call().map_err(|e| e.to_string())?;
            let got = response.status().as_u16();
            if got == *status {
                Ok(())
            } else {
                Err(format!("status {got}"))
            }
        }
        Probe::Tcp { address } => {
            let addr = address
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or_else(|| format!("{address} does not resolve"))?;
            TcpStream::connect_timeout(&addr, left)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Probe::Command { argv } => {
            // As the app's user: a check must not create root-owned files
            // (say, SQLite's -wal) the app then cannot write.
            let mut proc = Proc::new(argv).timeout(left).confined();
            if let Some(account) = account {
                proc = proc.account(account);
            }
            proc.run().map(drop).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probe: Probe) -> HealthCheck {
        HealthCheck {
            app: "web".into(),
            probe,
            timeout_ms: 300,
            interval_ms: 50,
            user: Some("nobody".into()),
        }
    }

    fn nobody() -> Option<Account> {
        Account::lookup("nobody")
    }

    #[test]
    fn tcp_passes_when_something_listens_and_fails_with_the_reason_when_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        wait(&check(Probe::Tcp { address }), None).unwrap();
        drop(listener);
        // Not the port just freed: a parallel test may take it at once.
        let address = "127.0.0.1:1".to_string();
        let error = wait(&check(Probe::Tcp { address }), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("no success in") && error.contains("refused"),
            "{error}"
        );
    }

    #[test]
    fn a_command_check_retries_until_its_deadline() {
        let started = Instant::now();
        let error = wait(
            &check(Probe::Command {
                argv: vec!["false".into()],
            }),
            nobody().as_ref(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("attempt(s)"), "{error}");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "retried until the deadline"
        );
        wait(
            &check(Probe::Command {
                argv: vec!["true".into()],
            }),
            nobody().as_ref(),
        )
        .unwrap();
    }

    #[test]
    fn a_hung_command_check_is_cut_at_the_deadline() {
        let started = Instant::now();
        let error = wait(
            &check(Probe::Command {
                argv: vec!["sleep".into(), "30".into()],
            }),
            nobody().as_ref(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("did not finish"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded");
    }
}
