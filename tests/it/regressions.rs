//! Bugs found by running plumb under a real systemd and as a new user
//! would, each pinned by a test in the sandbox (the real-systemd suite has
//! its own in `nspawn`).

use std::fs;

use crate::harness::{GitRepo, Sandbox};

#[test]
fn a_file_changed_by_hand_while_the_head_is_quarantined_never_restarts_the_service_in_a_loop() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    repo.restart_sec(5, 9);
    sandbox.reconcile(&repo).ok();
    sandbox.plumb(&["rollback", "--repo", &repo.url()]).ok();
    let config = sandbox
        .state_dir()
        .join("current/files/etc/microblog/config.yaml");
    fs::write(&config, "edited by hand\n").unwrap();
    for _ in 0..3 {
        sandbox.clear_calls();
        let run = sandbox.reconcile(&repo).fails_with(8, "quarantined");
        assert!(
            !sandbox.calls().iter().any(|c| c.contains("restart")),
            "a timer run restarted the app: {:?}\n{}",
            sandbox.calls(),
            run.stdout
        );
        assert!(
            run.stderr.contains("modified by hand"),
            "and says the file waits: {}",
            run.stderr
        );
    }
}

#[test]
fn a_host_whose_apps_are_all_disabled_deploys_an_empty_release() {
    let repo = GitRepo::example_minimal();
    repo.write(
        "hosts/idle.yaml",
        "apps:\n  microblog:\n    enabled: false\n",
    )
    .commit("idle host");
    let mut sandbox = Sandbox::new();
    sandbox.hostname = "idle".into();
    sandbox.reconcile(&repo).ok();
    let release = sandbox.state_dir().join("current/release.json");
    assert!(release.exists());
    assert!(sandbox.owned().is_empty());
    // A deploy.yaml with no apps at all, likewise.
    let bare = GitRepo::new();
    bare.write("deploy.yaml", "version: 1\n")
        .commit("nothing yet");
    Sandbox::new().reconcile(&bare).ok();
}

#[test]
fn a_rollback_killed_after_its_switch_is_finished_with_its_quarantine() {
    let repo = GitRepo::example_minimal();
    repo.git(&["branch", "-q", "v1"]);
    let bad = repo.restart_sec(5, 9);
    let reconcile = |host: &Sandbox, branch: &str| {
        host.plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &repo.url(),
            "--branch",
            branch,
        ])
    };
    let mut kills = 0;
    for n in 1.. {
        let host = Sandbox::new();
        reconcile(&host, "v1").ok();
        let v1 = host.current_release();
        reconcile(&host, "main").ok();
        let status = host
            .command(&["rollback", "--repo", &repo.url()])
            .env("PLUMB_FAULT_KILL_AFTER", n.to_string())
            .status()
            .unwrap();
        if status.success() {
            break;
        }
        kills += 1;
        // Killed with its plan under way, or after it was done.
        let started =
            host.state_dir().join("journal.json").exists() || host.current_release() == v1;
        // The timer's next run: it finishes what the operator asked for,
        // quarantine included, and never redeploys the commit left.
        let next = reconcile(&host, "main");
        if started {
            assert_eq!(next.code, 8, "kill {n}: {}{}", next.stdout, next.stderr);
            assert_eq!(host.current_release(), v1, "kill {n}");
            assert!(
                host.state()["quarantine"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["commit"] == bad),
                "kill {n}: the commit left is quarantined"
            );
        } else {
            // Killed before its plan was written: as if it had never run.
            assert_eq!(next.code, 0, "kill {n}: {}{}", next.stdout, next.stderr);
        }
    }
    assert!(kills >= 5, "only {kills} kill points");
}

#[test]
fn a_branch_deleted_on_the_remote_is_an_error_naming_the_branches_it_has() {
    let remote = GitRepo::example_minimal();
    remote.git(&["branch", "-q", "prod"]);
    let sandbox = Sandbox::new();
    sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &remote.url(),
            "--branch",
            "prod",
        ])
        .ok();
    remote.git(&["branch", "-q", "-D", "prod"]);
    let run = sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &remote.url(),
            "--branch",
            "prod",
        ])
        .fails_with(4, "branch \"prod\" not found");
    assert!(run.stderr.contains("it has: main"), "{}", run.stderr);
    assert!(!run.stdout.contains("up to date"), "{}", run.stdout);

    // An empty repository has no branches at all.
    let empty = GitRepo::new();
    sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &empty.url(),
            "--branch",
            "prod",
        ])
        .fails_with(4, "no branches at all");
}
