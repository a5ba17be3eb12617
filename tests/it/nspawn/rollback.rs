//! Rollbacks under a real systemd: a release that crashes at start is
//! rolled back with its service active again; a unit left failed (start
//! limit hit) by someone else does not block a deploy; a manual rollback.

use super::deploy::{health, set_version};
use super::{Host, started};

/// Commit a service command that exits at once, with a short health check.
fn crash_at_start(host: &Host) -> String {
    let yaml = host
        .repo
        .read("deploy.yaml")
        .replace(
            "serve --config /etc/microblog/config.yaml",
            "serve --config /etc/microblog/missing.yaml",
        )
        .replace("timeout: 30", "timeout: 3");
    host.repo
        .write("deploy.yaml", &yaml)
        .commit("crashes at start")
}

#[test]
fn a_release_that_crashes_at_start_is_rolled_back_with_its_service_active() {
    let host = Host::new();
    host.reconcile().ok();
    let good = host.current();
    let bad = crash_at_start(&host);
    let run = host.reconcile().fails_with(7, "rolled back");
    assert!(
        run.stderr.contains(
            "health check microblog: GET http://127.0.0.1:8000/health answers 200: no success"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(host.current(), good);
    assert_eq!(host.c.show("microblog.service", "ActiveState"), "active");
    assert_eq!(health(&host), "ok 1.0");
    assert_eq!(host.needing_reload(), Vec::<String>::new());
    assert!(
        host.c
            .ok("cat /etc/systemd/system/microblog.service")
            .contains("/etc/microblog/config.yaml"),
        "the unit file is the old release's"
    );
    let status = host.c.ok("plumb status");
    assert!(
        status.contains(&format!("quarantined: {}", &bad[..12])),
        "{status}"
    );
    assert!(!status.contains(&format!("deployed: {bad}")), "{status}");

    // The next run leaves the quarantined head alone: no restart. Under
    // the shipped unit, that steady state does not fail plumb.service
    // again (the failed run did, once); status says what holds the host.
    let before = host.invocations();
    host.reconcile().fails_with(8, "quarantined");
    assert_eq!(host.invocations(), before);
    host.c.write(
        "/etc/systemd/system/plumb.service",
        include_str!("../../../systemd/plumb.service"),
        "0644",
    );
    host.c
        .ok("systemctl daemon-reload && systemctl start plumb.service");
    assert_eq!(host.c.show("plumb.service", "Result"), "success");
    let status = host.c.ok("plumb status");
    assert!(
        status.contains("held (quarantined head) (exit 8, timer)"),
        "{status}"
    );
    assert_eq!(host.invocations(), before);

    // The fix deploys.
    let yaml = host
        .repo
        .read("deploy.yaml")
        .replace("missing.yaml", "config.yaml");
    host.repo.write("deploy.yaml", &yaml).commit("fixed");
    set_version(&host, "1.2");
    host.reconcile().ok();
    assert_eq!(health(&host), "ok 1.2");
}

#[test]
fn a_unit_someone_left_failed_does_not_block_a_deploy() {
    let host = Host::new();
    host.reconcile().ok();
    // Six restarts within 10 s: systemd refuses the sixth.
    let refused = host
        .c
        .sh("for i in 1 2 3 4 5 6; do systemctl restart microblog.service || exit 1; done");
    assert_ne!(refused.code, 0, "the start limit was not hit");
    assert_eq!(
        host.c.show("microblog.service", "Result"),
        "start-limit-hit"
    );
    // The next run, with nothing new to deploy, brings it back.
    let run = host.reconcile().ok();
    assert_eq!(
        started(&run.stdout),
        ["microblog.service"],
        "{}",
        run.stdout
    );
    host.c.ok(
        "for i in $(seq 100); do curl -sf http://127.0.0.1:8000/health && exit; sleep 0.05; done; exit 1",
    );
    set_version(&host, "1.1");
    host.reconcile().ok();
    assert_eq!(host.c.show("microblog.service", "ActiveState"), "active");
    assert_eq!(health(&host), "ok 1.1");
}

#[test]
fn a_manual_rollback_restarts_the_old_release_and_holds_the_head() {
    let host = Host::new();
    host.reconcile().ok();
    let first = host.current();
    set_version(&host, "1.1");
    host.reconcile().ok();
    assert_eq!(health(&host), "ok 1.1");
    host.c.plumb(&["rollback"]).ok();
    assert_eq!(host.current(), first);
    assert_eq!(health(&host), "ok 1.0");
    assert_eq!(host.needing_reload(), Vec::<String>::new());
    // The head it left is quarantined: the timer does not bring it back,
    // and a file changed by hand meanwhile restarts nothing, run after run.
    host.c
        .ok("echo '# edited by hand' >> /etc/microblog/config.yaml");
    let before = host.invocations();
    for _ in 0..2 {
        host.reconcile().fails_with(8, "quarantined");
    }
    assert_eq!(host.invocations(), before);
    assert_eq!(health(&host), "ok 1.0");
    // The next deployable commit repairs it.
    set_version(&host, "1.2");
    host.reconcile().ok();
    assert!(
        !host
            .c
            .ok("cat /etc/microblog/config.yaml")
            .contains("by hand")
    );
    assert_eq!(health(&host), "ok 1.2");
}
