//! The operator's commands: plan, status, releases, rollback, validate.

use std::fs;
use std::process::Command;

use crate::harness::{GitRepo, Sandbox, example_dir, sh};

#[test]
fn plan_shows_unified_diffs_changes_nothing_and_exits_10() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let quiet = sandbox.plumb(&["plan", "--repo", &repo.url()]).ok();
    assert!(quiet.stdout.starts_with("no changes"), "{}", quiet.stdout);

    repo.restart_sec(5, 9);
    let before = sandbox.content();
    let run = sandbox.plumb(&["plan", "--repo", &repo.url()]);
    assert_eq!(run.code, 10, "{}{}", run.stdout, run.stderr);
    for line in [
        "--- /etc/systemd/system/microblog.service (live)",
        "-RestartSec=5",
        "+RestartSec=9",
        "restart microblog.service (unit file changed)",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing {line:?}:\n{}",
            run.stdout
        );
    }
    assert_eq!(sandbox.content(), before, "plan changed the host");
}

#[test]
fn status_reports_drift_without_repairing_it() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let status = |s: &Sandbox| -> serde_json::Value {
        serde_json::from_str(
            &s.plumb(&["status", "--json", "--repo", &repo.url()])
                .ok()
                .stdout,
        )
        .unwrap()
    };
    let clean = status(&sandbox);
    assert_eq!(clean["commit"], repo.git(&["rev-parse", "HEAD"]).trim());
    assert_eq!(clean["release"], sandbox.current_release());
    assert_eq!(clean["last_change"]["result"], "deployed");
    assert_eq!(clean["last_run"]["outcome"], "ok");
    assert_eq!(clean["quarantine"], serde_json::json!([]));
    assert_eq!(clean["drift"], serde_json::json!([]));

    fs::remove_file(sandbox.path("/etc/microblog/config.yaml")).unwrap();
    let tampered = sandbox
        .state_dir()
        .join("current/files/etc/nginx/conf.d/microblog.conf");
    fs::write(&tampered, "# edited by hand\n").unwrap();
    let drifted = status(&sandbox);
    let drift = drifted["drift"].as_array().unwrap();
    assert!(
        drift.contains(&serde_json::json!({"kind": "link", "path": "/etc/microblog/config.yaml"})),
        "{drift:?}"
    );
    assert!(
        drift.contains(&serde_json::json!({"kind": "modified", "path": "files/etc/nginx/conf.d/microblog.conf"})),
        "{drift:?}"
    );
    assert!(
        !sandbox.path("/etc/microblog/config.yaml").exists(),
        "status must not repair"
    );
    let text = sandbox
        .plumb(&["status", "--repo", &repo.url()])
        .ok()
        .stdout;
    assert!(
        text.contains("drift: /etc/microblog/config.yaml: link missing or changed"),
        "{text}"
    );

    sandbox.reconcile(&repo).ok();
    assert_eq!(status(&sandbox)["drift"], serde_json::json!([]));
}

#[test]
fn rollback_switches_back_quarantines_what_it_left_and_releases_shows_it() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let v1 = sandbox.current_release();
    let bad = repo.restart_sec(5, 9);
    sandbox.reconcile(&repo).ok();
    let v2 = sandbox.current_release();
    sandbox.clear_calls();

    let run = sandbox.plumb(&["rollback", "--repo", &repo.url()]).ok();
    assert!(
        run.stdout
            .contains(&format!("rolling back from release {v2} to {v1}")),
        "{}",
        run.stdout
    );
    assert_eq!(sandbox.current_release(), v1);
    assert!(
        fs::read_to_string(sandbox.path("/etc/systemd/system/microblog.service"))
            .unwrap()
            .contains("RestartSec=5")
    );
    assert_eq!(
        sandbox.calls(),
        [
            "systemd-analyze verify /etc/systemd/system/microblog.service",
            "systemctl daemon-reload",
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service"
        ]
    );
    assert_eq!(
        sandbox.releases(),
        vec![v1.clone(), v2.clone()],
        "no release is built or deleted"
    );
    assert_eq!(sandbox.state()["quarantine"][0]["commit"], bad);

    // The next scheduled run stays on v1.
    sandbox.reconcile(&repo).fails_with(8, "quarantined");
    assert_eq!(sandbox.current_release(), v1);

    let listing = sandbox
        .plumb(&["releases", "--repo", &repo.url()])
        .ok()
        .stdout;
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].contains(&v2) && lines[0].contains("quarantined"),
        "{listing}"
    );
    assert!(lines[1].starts_with(&format!("* {v1}")), "{listing}");

    // Explicitly back to v2 works too (and quarantines v1's commit).
    sandbox
        .plumb(&["rollback", &v2, "--repo", &repo.url()])
        .ok();
    assert_eq!(sandbox.current_release(), v2);
    sandbox
        .plumb(&["rollback", "no-such-release", "--repo", &repo.url()])
        .fails_with(2, "\"no-such-release\" is not a release");
}

#[test]
fn validate_checks_every_host_and_lists_all_problems() {
    let plumb = env!("CARGO_BIN_EXE_plumb");
    let good = Command::new(plumb)
        .arg("validate")
        .arg(example_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        stdout.contains("for 4 host(s): (no overlay), container, staging, static"),
        "{stdout}"
    );
    // The rendered backup script is verified with its unit: no warning.
    assert!(!stdout.contains("warning"), "{stdout}");

    let repo = GitRepo::example_minimal();
    repo.write("hosts/broken.yaml", "vars:\n  site_name: [\n");
    repo.break_site_template();
    // A unit systemd will not take (plumb itself refuses `restart: sometimes`
    // in deploy.yaml, so through a repo template of the repo's own).
    let unit = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/service.j2"),
    )
    .unwrap()
    .replace("Restart={{ service.restart | unit }}", "Restart=sometimes");
    repo.write("templates/service.j2", &unit);
    let bad = Command::new(plumb)
        .arg("validate")
        .arg(repo.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(9), "{stdout}");
    assert!(
        stdout.contains("broken: error: hosts/broken.yaml:"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("unknown directive \"bogus_directive\" in /etc/nginx/conf.d/microblog.conf:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("restart specifier, ignoring: sometimes"),
        "{stdout}"
    );
}

#[test]
fn while_the_head_is_quarantined_the_current_release_is_still_repaired() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    repo.restart_sec(5, 9);
    sandbox.reconcile(&repo).ok();
    sandbox.plumb(&["rollback", "--repo", &repo.url()]).ok();
    fs::remove_file(sandbox.path("/etc/microblog/config.yaml")).unwrap();
    let run = sandbox.reconcile(&repo).fails_with(8, "quarantined");
    assert!(
        run.stdout.contains("relink /etc/microblog/config.yaml"),
        "{}",
        run.stdout
    );
    assert!(sandbox.path("/etc/microblog/config.yaml").exists());
}

/// A working tree is listed, not read: a named pipe (which a read would
/// wait on forever) or anything big beside the deploy repo's files costs
/// nothing unless the deploy references it.
#[test]
fn validate_reads_only_the_files_the_deploy_references() {
    let repo = GitRepo::example();
    sh(Command::new("mkfifo").arg(repo.path().join("a-pipe")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("validate")
        .arg(repo.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("plumb validate is stuck reading a named pipe nothing references");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn validate_as_a_user_runs_nginx_t_and_takes_path_and_hostname() {
    // A copy of the binary and a repo nobody can read, as in a CI job.
    let dir = tempfile::TempDir::new().unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let plumb = dir.path().join("plumb");
    fs::copy(env!("CARGO_BIN_EXE_plumb"), &plumb).unwrap();
    let repo = dir.path().join("repo");
    fs::create_dir(&repo).unwrap();
    fs::create_dir(repo.join("deploy")).unwrap();
    crate::harness::copy_tree(&example_dir(), &repo.join("deploy"));
    sh(Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()));
    let validate = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&plumb)
            .arg("validate")
            .args(args)
            .current_dir(&repo)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = validate(&["--path", "deploy", "--hostname", "staging"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("for 1 host(s): staging"), "{stdout}");
    assert!(!stdout.contains("warning"), "nginx -t skipped?\n{stdout}");
    // The check really ran: a bad directive fails it.
    let site = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/site.j2"),
    )
    .unwrap()
    .replace(
        "    server_name {{ names }};",
        "    server_name {{ names }};\n    bogus_directive on;",
    );
    fs::write(repo.join("deploy/templates/site.j2"), site).unwrap();
    sh(Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()));
    let (code, stdout) = validate(&["--path", "deploy", "--hostname", "staging"]);
    assert_eq!(code, Some(9), "{stdout}");
    assert!(
        stdout.contains("unknown directive \"bogus_directive\""),
        "{stdout}"
    );
}
