//! `plumb run` as a real process: a signed push webhook and SIGHUP each lead
//! to a reconcile; unsigned webhooks do nothing; SIGTERM stops it cleanly.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::harness::{GitRepo, Sandbox};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POST `body` to the webhook with `headers`; returns the status code.
fn post(port: u16, body: &str, headers: &[(&str, String)]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = format!(
        "POST /hook HTTP/1.1\r\nHost: plumb\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response[9..12].parse().unwrap()
}

fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Wait until the run deploying `commit` has finished (its history line is
/// written, after the health checks); returns how long it took.
fn deployed_within(sandbox: &Sandbox, commit: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let state = fs::read(sandbox.state_dir().join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let finished = state.is_some_and(|s| {
            s["deployed"]["commit"] == commit
                && s["history"]
                    .as_array()
                    .and_then(|h| h.last())
                    .map(|e| &e["commit"])
                    == Some(&serde_json::json!(commit))
        });
        if finished {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{commit} not live within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn webhook_and_sighup_trigger_reconciles_and_sigterm_stops_the_daemon() {
    let repo = GitRepo::example_minimal();
    let mut sandbox = Sandbox::new();
    let secret_file = sandbox.root.path().join("webhook.secret");
    fs::write(&secret_file, "s3cret\n").unwrap();
    let config = sandbox.root.path().join("plumb.yaml");
    fs::write(
        &config,
        format!(
            "interval: 3600\nwebhook:\n  listen: 127.0.0.1:0\n  secret_file: {}\nmetrics_file: /var/lib/node_exporter/plumb.prom\n",
            secret_file.display()
        ),
    )
    .unwrap();
    sandbox.config = Some(config);
    // systemd's notification socket, played by the test.
    let notify_path = sandbox.root.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = sandbox
        .command(&["run", "--repo", &repo.url()])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let daemon = Daemon(child);
    let first = repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    deployed_within(&sandbox, &first, Duration::from_secs(20));
    let listening = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.starts_with("webhook listening")))
        .unwrap()
        .unwrap();
    // Port 0: the daemon binds a free port itself (no race with other tests).
    let port: u16 = listening
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Like systemd, keep reading the socket: a full socket would block the sender.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = notify.recv(&mut buf) {
                let mut seen = seen.lock().unwrap();
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = seen.lock().unwrap().clone();
        if text.contains("READY=1")
            && text.contains("WATCHDOG=1")
            && text.contains("STATUS=idle; next run at")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "systemd notifications missing: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A push with a wrong signature (or none): 401, and nothing happens.
    let second = repo.write("templates/x.txt", "2\n").commit("second");
    let body = r#"{"ref":"refs/heads/main"}"#;
    assert_eq!(
        post(
            port,
            body,
            &[("X-Hub-Signature-256", signature("wrong", body))]
        ),
        401
    );
    assert_eq!(post(port, body, &[]), 401);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        sandbox.state()["deployed"]["commit"],
        first,
        "an unsigned webhook deploys nothing"
    );

    // A signed push: live within 2 s.
    let sent = Instant::now();
    assert_eq!(
        post(
            port,
            body,
            &[("X-Hub-Signature-256", signature("s3cret", body))]
        ),
        202
    );
    deployed_within(&sandbox, &second, Duration::from_secs(2));
    println!(
        "daemon: push to live through the webhook in {} ms",
        sent.elapsed().as_millis()
    );
    assert_eq!(
        sandbox.state()["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["trigger"],
        "webhook"
    );

    // SIGHUP: reconcile now.
    let third = repo.write("templates/x.txt", "3\n").commit("third");
    let pid = daemon.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    deployed_within(&sandbox, &third, Duration::from_secs(2));

    let status: serde_json::Value = serde_json::from_str(
        &sandbox
            .plumb(&["status", "--json", "--repo", &repo.url()])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(status["last_change"]["trigger"], "signal");
    assert_eq!(status["last_run"]["trigger"], "signal");
    assert!(
        status["next_run"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{status}"
    );
    let metrics = fs::read_to_string(sandbox.path("/var/lib/node_exporter/plumb.prom")).unwrap();
    assert!(metrics.contains("plumb_last_run_success 1"), "{metrics}");
    assert!(
        metrics.contains(&format!("plumb_deployed_info{{commit=\"{third}\"")),
        "{metrics}"
    );
    assert!(metrics.contains("plumb_rollbacks_total 0"), "{metrics}");

    // SIGTERM: a clean exit.
    let mut daemon = daemon;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(lines.any(|l| l.is_ok_and(|l| l == "plumb run: stopped")));
}
