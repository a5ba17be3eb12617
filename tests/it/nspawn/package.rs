//! The Debian package on a fresh Debian: it installs, its units verify, its
//! timer deploys the example over HTTP first and TLS once the certificate
//! exists, nothing quarantined; removing it stops its units.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::Host;

/// `packaging/deb.sh` on the binary under test (uncompressed: it is large).
fn build_package(out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb.sh");
    let run = Command::new(script)
        .arg(env!("CARGO_BIN_EXE_plumb"))
        .arg(out)
        .env("DEB_COMPRESSION", "none")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "packaging/deb.sh failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn the_package_installs_and_its_timer_deploys_http_first_then_tls() {
    let debs = tempfile::TempDir::new().unwrap();
    build_package(debs.path());
    let host = Host::setup("", &[(debs.path(), "/srv/pkg")]);
    host.c.ok("dpkg -i /srv/pkg/plumb_*.deb");
    let version = host.c.ok("/usr/bin/plumb --version");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(version.contains(&format!("({commit})")), "{version}");
    let verify = host
        .c
        .sh("systemd-analyze verify /lib/systemd/system/plumb.service \
         /lib/systemd/system/plumb.timer /lib/systemd/system/plumb-daemon.service");
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert_eq!(verify.stderr, "", "systemd-analyze verify warned");
    host.c
        .ok("test -f /usr/share/man/man1/plumb-reconcile.1.gz && \
         test -f /usr/share/bash-completion/completions/plumb && \
         test -f /usr/share/doc/plumb/examples/plumb.yaml && \
         test \"$(stat -c %a /etc/plumb)\" = 700");
    assert!(
        host.c
            .show("plumb.service", "ExecStart")
            .contains("path=/usr/bin/plumb")
    );

    // The whole install: enable the timer (firing every 2 s here).
    host.c.write(
        "/etc/systemd/system/plumb.timer.d/test.conf",
        "[Timer]\nOnBootSec=\nOnCalendar=\nOnCalendar=*:*:0/2\nRandomizedDelaySec=0\nAccuracySec=100ms\n",
        "0644",
    );
    host.c
        .ok("systemctl daemon-reload && systemctl enable --now plumb.timer");
    host.eventually(
        "curl -sf -H 'Host: blog.example.com' http://127.0.0.1/ | grep -q MicroBlog",
        Duration::from_secs(60),
    );
    let status = host.c.ok("plumb status");
    assert!(
        status.contains("tls: microblog is served over HTTP until"),
        "{status}"
    );
    assert!(status.contains("quarantine: none"), "{status}");

    host.issue_certificate();
    host.eventually(
        "curl -sfk --resolve blog.example.com:443:127.0.0.1 https://blog.example.com/ | grep -q MicroBlog",
        Duration::from_secs(30),
    );
    let status = host.c.ok("plumb status");
    assert!(!status.contains("tls:"), "{status}");
    assert!(status.contains("quarantine: none"), "{status}");

    // Removing the package stops its units and says how to keep the files.
    let removed = host.c.sh("dpkg -r plumb");
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert!(
        removed.stderr.contains("plumb detach"),
        "{}",
        removed.stderr
    );
    assert_eq!(host.c.show("plumb.timer", "ActiveState"), "inactive");
}
