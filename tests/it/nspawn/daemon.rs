//! The shipped units under a real systemd: `plumb.timer` deploys a push;
//! `plumb-daemon.service` (`plumb run`, Type=notify) is ready only once
//! listening, keeps its watchdog fed, deploys signed webhooks and SIGHUPs,
//! and stops cleanly.

use std::time::{Duration, Instant};

use super::Host;
use super::deploy::{health, set_version};

const TIMER: &str = include_str!("../../../systemd/plumb.timer");
const SERVICE: &str = include_str!("../../../systemd/plumb.service");
const DAEMON: &str = include_str!("../../../systemd/plumb-daemon.service");

/// Wait until /health answers `ok VERSION`; the time it took.
fn live_within(host: &Host, version: &str, limit: Duration) -> Duration {
    host.eventually(
        &format!("curl -s --max-time 2 http://127.0.0.1:8000/health | grep -qx 'ok {version}'"),
        limit,
    )
}

#[test]
fn plumb_timer_deploys_a_push() {
    let host = Host::new();
    host.c
        .write("/etc/systemd/system/plumb.service", SERVICE, "0644");
    host.c
        .write("/etc/systemd/system/plumb.timer", TIMER, "0644");
    // Every 2 s instead of every 5 min, so the test does not wait.
    host.c.write(
        "/etc/systemd/system/plumb.timer.d/test.conf",
        "[Timer]\nOnBootSec=\nOnCalendar=\nOnCalendar=*:*:0/2\nRandomizedDelaySec=0\nAccuracySec=100ms\n",
        "0644",
    );
    host.c
        .ok("systemctl daemon-reload && systemctl enable --now plumb.timer");
    live_within(&host, "1.0", Duration::from_secs(60));
    set_version(&host, "1.1");
    let took = live_within(&host, "1.1", Duration::from_secs(30));
    println!(
        "timer: push to live in {} ms (timer every 2 s)",
        took.as_millis()
    );
    // The app answers before plumb's run has finished recording.
    host.c.ok(
        "while [ $(systemctl show -p ActiveState --value plumb.service) != inactive ]; do sleep 0.05; done",
    );
    assert_eq!(host.c.show("plumb.service", "Result"), "success");
    let journal = host.c.ok("journalctl --no-pager -o cat -u plumb.service");
    assert_eq!(journal.matches("\ndeployed ").count(), 2, "{journal}");
}

/// A GitHub-style signed push webhook, sent from inside the container:
/// the HTTP status.
fn webhook(host: &Host, secret: &str) -> String {
    host.c
        .ok(&format!(
            "body='{{\"ref\":\"refs/heads/main\"}}'; \
             sig=$(printf %s \"$body\" | openssl dgst -sha256 -hmac {secret} -r | cut -d' ' -f1); \
             curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -X POST \
             -H \"X-Hub-Signature-256: sha256=$sig\" --data \"$body\" http://127.0.0.1:9280/"
        ))
        .trim()
        .to_string()
}

#[test]
fn plumb_run_is_a_notify_daemon_with_a_watchdog_that_deploys_signed_webhooks() {
    let host = Host::with_config(
        "interval: 3600\nwebhook:\n  listen: 127.0.0.1:9280\n  secret_file: /etc/plumb/webhook.secret\n",
    );
    host.c
        .write("/etc/plumb/webhook.secret", "s3cret\n", "0600");
    host.c
        .write("/etc/systemd/system/plumb-daemon.service", DAEMON, "0644");
    // A watchdog much shorter than the shipped 60 s: a missed ping shows.
    host.c.write(
        "/etc/systemd/system/plumb-daemon.service.d/test.conf",
        "[Service]\nWatchdogSec=2s\n",
        "0644",
    );
    // Type=notify: `start` returns once plumb said READY=1.
    host.c
        .ok("systemctl daemon-reload && systemctl start plumb-daemon.service");
    assert_eq!(host.c.show("plumb-daemon.service", "SubState"), "running");
    assert_eq!(host.c.show("plumb-daemon.service", "WatchdogUSec"), "2s");
    let pid = host.c.show("plumb-daemon.service", "MainPID");
    live_within(&host, "1.0", Duration::from_secs(60));

    // Three watchdog periods: still the same process, never restarted.
    let fed = |host: &Host| {
        host.c
            .show("plumb-daemon.service", "WatchdogTimestampMonotonic")
            .parse::<u64>()
            .unwrap()
    };
    let before = fed(&host);
    std::thread::sleep(Duration::from_secs(6));
    assert!(fed(&host) > before, "the watchdog was not fed");
    assert_eq!(host.c.show("plumb-daemon.service", "MainPID"), pid);
    assert_eq!(host.c.show("plumb-daemon.service", "NRestarts"), "0");
    let status = host.c.show("plumb-daemon.service", "StatusText");
    assert!(status.contains("next run"), "{status}");

    // A push announced with a wrong signature deploys nothing.
    set_version(&host, "1.1");
    assert_eq!(webhook(&host, "wrong"), "401");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(health(&host), "ok 1.0");
    // Signed, it is live at once.
    let sent = Instant::now();
    assert_eq!(webhook(&host, "s3cret"), "202");
    live_within(&host, "1.1", Duration::from_secs(30));
    println!(
        "daemon: push to live through the webhook in {} ms",
        sent.elapsed().as_millis()
    );

    // `systemctl reload` (SIGHUP) reconciles now.
    set_version(&host, "1.2");
    host.c.ok("systemctl reload plumb-daemon.service");
    live_within(&host, "1.2", Duration::from_secs(30));

    host.c.ok("systemctl stop plumb-daemon.service");
    assert_eq!(host.c.show("plumb-daemon.service", "Result"), "success");
    assert_eq!(host.c.show("plumb-daemon.service", "NRestarts"), "0");
    assert_eq!(host.c.show("microblog.service", "ActiveState"), "active");
}
