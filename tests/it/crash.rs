//! Crash safety: reconcile is SIGKILLed before each of its host calls in turn
//! (PLUMB_FAULT_KILL_AFTER=N). After every kill the host is on a complete
//! release with a parseable state file, and the next run converges.

use std::fs;
use std::os::unix::process::ExitStatusExt;

use sha2::{Digest, Sha256};

use crate::harness::{GitRepo, Sandbox};

/// `current`, if present, is a complete release; state.json, if present, parses.
fn assert_consistent(sandbox: &Sandbox, context: &str) {
    let state = sandbox.state_dir().join("state.json");
    if state.exists() {
        let text = fs::read(&state).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&text).is_ok(),
            "{context}: torn state.json"
        );
    }
    let current = sandbox.state_dir().join("current");
    if fs::symlink_metadata(&current).is_err() {
        return;
    }
    let release = sandbox.state_dir().join(fs::read_link(&current).unwrap());
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(release.join("release.json")).unwrap_or_default())
            .unwrap_or_else(|_| panic!("{context}: current points at an incomplete release"));
    for (path, entry) in info["manifest"].as_object().unwrap() {
        let bytes =
            fs::read(release.join(path)).unwrap_or_else(|_| panic!("{context}: {path} missing"));
        assert_eq!(
            entry["sha256"],
            hex::encode(Sha256::digest(&bytes)),
            "{context}: {path}"
        );
    }
}

/// The next run succeeds and leaves the host exactly on `head`.
fn assert_converges(sandbox: &Sandbox, repo: &GitRepo, branch: &str, context: &str) {
    let run = sandbox.plumb(&[
        "reconcile",
        "--once",
        "--repo",
        &repo.url(),
        "--branch",
        branch,
    ]);
    assert_eq!(
        run.code, 0,
        "{context}: recovery run failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    let head = repo.git(&["rev-parse", branch]).trim().to_string();
    let state = sandbox.state();
    assert_eq!(state["deployed"]["commit"], head, "{context}");
    assert_eq!(
        state["deployed"]["release"],
        sandbox.current_release(),
        "{context}"
    );
    assert!(
        !sandbox.state_dir().join("journal.json").exists(),
        "{context}: journal left"
    );
    for path in sandbox.owned() {
        let link = fs::read_link(sandbox.path(&path))
            .unwrap_or_else(|_| panic!("{context}: {path} missing"));
        assert!(
            link.starts_with(sandbox.state_dir().join("current/files")),
            "{context}: {path}"
        );
        assert!(sandbox.path(&path).exists(), "{context}: {path} dangles");
    }
    let again = sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &repo.url(),
            "--branch",
            branch,
        ])
        .ok();
    assert!(
        again.stdout.starts_with("up to date"),
        "{context}: not converged:\n{}",
        again.stdout
    );
}

/// Kill the run before each host call in turn until a run completes; after
/// each kill the recovery must still make `expected` calls (the restarts and
/// reloads the deploy needs). Returns the number of kills.
fn kill_everywhere(repo: &GitRepo, setup: Option<&str>, branch: &str, expected: &[&str]) -> usize {
    let mut kills = 0;
    for n in 1.. {
        let sandbox = Sandbox::new();
        if let Some(first) = setup {
            sandbox
                .plumb(&[
                    "reconcile",
                    "--once",
                    "--repo",
                    &repo.url(),
                    "--branch",
                    first,
                ])
                .ok();
            sandbox.clear_calls();
        }
        let status = sandbox
            .command(&[
                "reconcile",
                "--once",
                "--repo",
                &repo.url(),
                "--branch",
                branch,
            ])
            .env("PLUMB_FAULT_KILL_AFTER", n.to_string())
            .output()
            .unwrap()
            .status;
        if status.success() {
            break; // N is past the last host call: the run finished.
        }
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {n}: the run failed instead of being killed"
        );
        kills += 1;
        let context = format!("{branch} killed before host call {n}");
        assert_consistent(&sandbox, &context);
        assert_converges(&sandbox, repo, branch, &context);
        assert_consistent(&sandbox, &context);
        let calls = sandbox.calls();
        for call in expected {
            assert!(
                calls.iter().any(|c| c == call),
                "{context}: {call:?} never ran: {calls:?}"
            );
        }
    }
    kills
}

#[test]
fn killed_while_rolling_back_the_host_still_ends_on_the_previous_release() {
    // Health checks run as the app user (nobody): the marker must be reachable.
    let markers = tempfile::TempDir::new().unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(markers.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(markers.path().join("healthy"), "").unwrap();
    let (healthy, never) = (markers.path().join("healthy"), markers.path().join("never"));
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml").replace(
        "    files:\n",
        &format!(
            "    health:\n      - command: [test, -e, {}]\n        timeout: 0\n    files:\n",
            healthy.display()
        ),
    );
    repo.write("deploy.yaml", &yaml).commit("health");
    repo.git(&["branch", "good"]);
    // The bad commit changes the unit, and its health check can never pass.
    let bad = repo
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 6")
        .replace(&healthy.display().to_string(), &never.display().to_string());
    repo.write("deploy.yaml", &bad).commit("bad");
    repo.git(&["branch", "bad"]);
    let mut kills = 0;
    for n in 1.. {
        let sandbox = Sandbox::executing("");
        let cwd = sandbox.root.path().to_path_buf();
        let run = |branch: &str, kill: Option<u32>| {
            let mut cmd = sandbox.command(&[
                "reconcile",
                "--once",
                "--repo",
                &repo.url(),
                "--branch",
                branch,
            ]);
            cmd.current_dir(&cwd);
            if let Some(n) = kill {
                cmd.env("PLUMB_FAULT_KILL_AFTER", n.to_string());
            }
            cmd.output().unwrap().status
        };
        assert!(run("good", None).success());
        let v1 = sandbox.current_release();
        let status = run("bad", Some(n));
        if status.code() == Some(7) {
            break; // N is past the last host call: the rollback finished.
        }
        assert_eq!(status.signal(), Some(9), "kill {n}: {status:?}");
        kills += 1;
        let context = format!("rollback killed before host call {n}");
        assert_consistent(&sandbox, &context);
        // The next runs finish the deploy (and its rollback) or the undo; then
        // the bad commit is quarantined and the host is on the good release.
        let next = run("bad", None).code();
        assert!(
            matches!(next, Some(7) | Some(8)),
            "{context}: recovery exited {next:?}"
        );
        assert_eq!(
            run("bad", None).code(),
            Some(8),
            "{context}: the bad commit is quarantined"
        );
        assert_consistent(&sandbox, &context);
        assert_eq!(sandbox.current_release(), v1, "{context}");
        assert!(
            !sandbox.state_dir().join("journal.json").exists(),
            "{context}"
        );
        let unit =
            fs::read_to_string(sandbox.path("/etc/systemd/system/microblog.service")).unwrap();
        assert!(
            unit.contains("RestartSec=5"),
            "{context}: the good unit is back"
        );
        let restarts = sandbox
            .services()
            .iter()
            .filter(|c| *c == "systemctl restart microblog.service")
            .count();
        assert!(
            restarts >= 2,
            "{context}: restarted on the new files and back on the old: {:?}",
            sandbox.services()
        );
    }
    println!("crash test (rollback): {kills} kills");
    assert!(kills >= 20, "only {kills} kill points");
}

#[test]
fn killed_at_any_step_the_host_stays_whole_and_the_next_run_converges() {
    let repo = GitRepo::example();
    repo.git(&["branch", "v1"]);
    // v2: a unit changes, the site goes away, a config file is added.
    let yaml = repo
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 6");
    let start = yaml.find("    site:").unwrap();
    let end = yaml.find("    backup:").unwrap();
    let yaml = format!("{}{}", &yaml[..start], &yaml[end..]).replace(
        "      - path: /etc/microblog/config.yaml",
        "      - path: /etc/microblog/extra.conf\n        source: app/static/style.css\n      - path: /etc/microblog/config.yaml",
    );
    repo.write("deploy.yaml", &yaml).commit("v2");
    repo.git(&["branch", "v2"]);

    let first = kill_everywhere(
        &repo,
        None,
        "v1",
        &[
            "systemctl enable --now microblog.service",
            "systemctl reload nginx.service",
        ],
    );
    let update = kill_everywhere(
        &repo,
        Some("v1"),
        "v2",
        &[
            "systemctl daemon-reload",
            "systemctl restart microblog.service",
            "systemctl reload nginx.service",
        ],
    );
    let back = kill_everywhere(
        &repo,
        Some("v2"),
        "v1",
        &[
            "systemctl daemon-reload",
            "systemctl restart microblog.service",
            "systemctl reload nginx.service",
        ],
    );
    let kills = first + update + back;
    println!("crash test: {kills} kills ({first} first deploy, {update} update, {back} downgrade)");
    assert!(kills >= 200, "only {kills} kill points");
}
