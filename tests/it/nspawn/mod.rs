//! The real-systemd suite: each test boots its own container
//! (`container.rs`) and deploys the MicroBlog example into it for real,
//! asserting from systemd's own view. Run alone with
//! `cargo test --test it nspawn` (docs/testing.md).

mod container;
mod daemon;
mod deploy;
mod kill;
mod package;
mod rollback;
mod tls;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub use container::Container;

use crate::harness::{GitRepo, Run};

/// The example's units plumb manages, and nginx.
pub const UNITS: [&str; 4] = [
    "microblog.service",
    "microblog-backup.service",
    "microblog-backup.timer",
    "nginx.service",
];

/// A container set up as the example's host `blog1`: its TLS certificate
/// issued (self-signed), the age key installed, /etc/plumb/plumb.yaml
/// pointing at the deploy repo (bound at /srv/repo; commit to it from the
/// test), nothing deployed yet.
pub struct Host {
    pub c: Container,
    pub repo: GitRepo,
}

impl Host {
    pub fn new() -> Host {
        Host::with_config("")
    }

    /// A host whose plumb.yaml has these extra lines.
    pub fn with_config(extra: &str) -> Host {
        let host = Host::without_certificate(extra);
        host.issue_certificate();
        host
    }

    /// A host whose site's certificate is not issued yet.
    pub fn without_certificate(extra: &str) -> Host {
        Host::setup(extra, &[])
    }

    /// A host without its certificate, with more host directories bound.
    pub fn setup(extra: &str, binds: &[(&Path, &str)]) -> Host {
        let repo = GitRepo::example();
        let mut all = vec![(repo.path(), "/srv/repo")];
        all.extend_from_slice(binds);
        let c = Container::boot(&all);
        let key = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-age.key"),
        )
        .unwrap();
        c.ok("install -d -m 0700 /etc/plumb");
        c.write("/etc/plumb/age.key", &key, "0600");
        c.write(
            "/etc/plumb/plumb.yaml",
            &format!("repo: /srv/repo\nhostname: blog1\nage_identity: /etc/plumb/age.key\n{extra}"),
            "0600",
        );
        Host { c, repo }
    }

    /// What certbot would leave: a certificate and key for the site (here
    /// self-signed) where the example's site expects them.
    pub fn issue_certificate(&self) {
        self.c.ok(
            "d=/etc/letsencrypt/live/blog.example.com && mkdir -p $d && \
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -days 2 -subj /CN=blog.example.com -addext subjectAltName=DNS:blog.example.com \
             -keyout $d/privkey.pem -out $d/fullchain.pem 2>/dev/null",
        );
    }

    /// `plumb reconcile --once` under the shipped unit's sandboxing.
    pub fn reconcile(&self) -> Run {
        self.c.plumb(&["reconcile", "--once"])
    }

    /// Each unit's InvocationID (new on every start) and MainPID.
    pub fn invocations(&self) -> BTreeMap<String, (String, String)> {
        UNITS
            .iter()
            .map(|u| {
                let id = self.c.show(u, "InvocationID");
                (u.to_string(), (id, self.c.show(u, "MainPID")))
            })
            .collect()
    }

    /// Units whose `NeedDaemonReload` is not `no`.
    pub fn needing_reload(&self) -> Vec<String> {
        UNITS
            .iter()
            .filter(|u| self.c.show(u, "NeedDaemonReload") != "no")
            .map(|u| u.to_string())
            .collect()
    }

    /// `curl` against nginx over TLS as https://blog.example.com/PATH:
    /// (status, headers and body).
    pub fn https(&self, path: &str, extra: &str) -> (u16, String) {
        let out = self.c.ok(&format!(
            "curl -sk --max-time 10 -i --resolve blog.example.com:443:127.0.0.1 \
             {extra} https://blog.example.com{path}"
        ));
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
        (status, out)
    }

    /// Wait until the shell `check` succeeds in the container; how long it
    /// took. Past `limit`, fail with plumb's journal.
    pub fn eventually(&self, check: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.c.sh(check).code != 0 {
            assert!(
                started.elapsed() < limit,
                "`{check}` never held within {limit:?}; plumb's journal:\n{}",
                self.c
                    .sh("journalctl --no-pager -o cat -u plumb.service -u plumb-daemon.service | tail -40")
                    .stdout
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    /// The release `current` points at.
    pub fn current(&self) -> String {
        self.c
            .ok("readlink /var/lib/plumb/current")
            .trim()
            .trim_start_matches("releases/")
            .to_string()
    }
}

/// The units plumb said it (re)started, from its output.
pub fn started(out: &str) -> Vec<String> {
    let mut units: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            l.strip_prefix("restart ")
                .or_else(|| l.strip_prefix("enable and start "))
                .or_else(|| l.strip_prefix("start "))
        })
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect();
    units.sort();
    units
}
