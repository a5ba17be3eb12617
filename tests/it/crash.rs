//! Crash safety: reconcile is SIGKILLed before each of its host calls in turn
//! (PLUMB_FAULT_KILL_AFTER=N). After every kill the host is on a complete
//! release with a parseable state file, and the next run converges.

use std::fs;
use std::os::unix::process::ExitStatusExt;

use crate::harness::{GitRepo, Sandbox, content_id};

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
            content_id(&bytes, entry["sha256"].as_str().unwrap()),
            "{context}: {path}"
        );
    }
}

/// The next run succeeds and leaves the host exactly on `head`.
fn assert_converges(sandbox: &Sandbox, repo: &GitRepo, branch: &str, context: &str) {
    let reconcile = || {
        let mut cmd = sandbox.command(&[
            "reconcile",
            "--once",
            "--repo",
            &repo.url(),
            "--branch",
            branch,
            "--allow-rewind",
        ]);
        unsynced(&mut cmd);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = reconcile();
    assert_eq!(
        code, 0,
        "{context}: recovery run failed:\n{stdout}\n{stderr}"
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
    let (code, again, _) = reconcile();
    assert!(
        code == 0 && again.starts_with("up to date"),
        "{context}: not converged:\n{again}"
    );
}

/// Kill the run before each host change in turn until a run completes;
/// after each kill the recovery must still make `expected` calls (the
/// restarts and reloads the deploy needs). Returns the number of kills.
///
/// The host `setup` prepares (a deploy of that branch) is made once and
/// copied back into the same sandbox before each kill: its links name the
/// sandbox's own path, so it is reused in place rather than rebuilt.
fn kill_everywhere(repo: &GitRepo, setup: Option<&str>, branch: &str, expected: &[&str]) -> usize {
    let sandbox = Sandbox::new();
    let reconcile = |branch: &str| {
        let mut cmd = sandbox.command(&[
            "reconcile",
            "--once",
            "--repo",
            &repo.url(),
            "--branch",
            branch,
            // The downgrade goes back in history on purpose.
            "--allow-rewind",
        ]);
        cmd.current_dir(sandbox.root.path());
        unsynced(&mut cmd);
        cmd
    };
    if let Some(first) = setup {
        assert!(reconcile(first).status().unwrap().success());
        sandbox.clear_calls();
    }
    let template = tempfile::TempDir::new().unwrap();
    copy(sandbox.root.path(), template.path());
    let mut kills = 0;
    for n in 1.. {
        clear(sandbox.root.path());
        copy(template.path(), sandbox.root.path());
        let status = reconcile(branch)
            .env("PLUMB_FAULT_KILL_AFTER", n.to_string())
            .output()
            .unwrap()
            .status;
        if status.success() {
            break; // N is past the last host change: the run finished.
        }
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {n}: the run failed instead of being killed"
        );
        kills += 1;
        let context = format!("{branch} killed before host change {n}");
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

/// Run plumb without fsync (eatmydata's library, when installed): a SIGKILL
/// loses nothing the kernel already has, so durability is not what these
/// tests prove, and hundreds of runs wait on the disk far less.
fn unsynced(cmd: &mut std::process::Command) {
    let lib = "/usr/lib/x86_64-linux-gnu/libeatmydata.so";
    if std::path::Path::new(lib).exists() {
        cmd.env("LD_PRELOAD", lib);
    }
}

/// `cp -a` the contents of `from` into `to`.
fn copy(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Empty a directory (keeping it).
fn clear(dir: &std::path::Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
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
        unsynced(&mut cmd);
        if let Some(n) = kill {
            cmd.env("PLUMB_FAULT_KILL_AFTER", n.to_string());
        }
        cmd.output().unwrap().status
    };
    assert!(run("good", None).success());
    let v1 = sandbox.current_release();
    sandbox.clear_services();
    let template = tempfile::TempDir::new().unwrap();
    copy(sandbox.root.path(), template.path());
    let mut kills = 0;
    for n in 1.. {
        clear(sandbox.root.path());
        copy(template.path(), sandbox.root.path());
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

/// The example, on branch v1, and v2: a unit changes, the site goes away,
/// a config file is added.
fn two_versions() -> GitRepo {
    let repo = GitRepo::example();
    repo.git(&["branch", "v1"]);
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
    repo
}

#[test]
fn killed_at_any_step_of_a_first_deploy_the_next_run_converges() {
    let kills = kill_everywhere(
        &two_versions(),
        None,
        "v1",
        &[
            "systemctl enable --now microblog.service",
            "systemctl reload nginx.service",
        ],
    );
    println!("crash test (first deploy): {kills} kills");
    assert!(kills >= 60, "only {kills} kill points");
}

#[test]
fn killed_at_any_step_of_an_update_the_next_run_converges() {
    let kills = kill_everywhere(
        &two_versions(),
        Some("v1"),
        "v2",
        &[
            "systemctl daemon-reload",
            "systemctl restart microblog.service",
            "systemctl reload nginx.service",
        ],
    );
    println!("crash test (update): {kills} kills");
    assert!(kills >= 40, "only {kills} kill points");
}

#[test]
fn killed_at_any_step_of_a_downgrade_the_next_run_converges() {
    let kills = kill_everywhere(
        &two_versions(),
        Some("v2"),
        "v1",
        &[
            "systemctl daemon-reload",
            "systemctl restart microblog.service",
            "systemctl reload nginx.service",
        ],
    );
    println!("crash test (downgrade): {kills} kills");
    assert!(kills >= 40, "only {kills} kill points");
}
