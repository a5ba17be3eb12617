//! Least privilege for what plumb starts: a clean environment, a session of
//! its own, nothing outliving its step (a build or hook that calls `setsid`
//! and forks is killed with its cgroup), and bounded time: a hook that hangs
//! while plumb is killed never wedges the host.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{GitRepo, Sandbox};

/// The minimal example with `extra` lines inserted in its app section.
fn with(extra: &str) -> GitRepo {
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml").replace(
        "    shared: [content]\n",
        &format!("    shared: [content]\n{extra}"),
    );
    repo.write("deploy.yaml", &yaml).commit("extra");
    repo
}

/// A directory the app's user (nobody) may write into.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Whether the process whose pid is in `pid_file` still runs (a zombie,
/// killed and waiting for init to reap it, does not).
fn alive(pid_file: &Path) -> bool {
    let pid = fs::read_to_string(pid_file).unwrap_or_default();
    let pid = pid.trim();
    if pid.is_empty() {
        return false;
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("State:"))
        .is_some_and(|l| !l.contains("Z (zombie)"))
}

#[test]
fn a_build_sees_only_the_documented_environment_in_a_session_of_its_own() {
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml").replace(
        "      - python3 bin/microblog build",
        "      - env > env.txt; echo $$ > pid.txt; ps -o sid= -p $$ > sid.txt; ps -o tty= -p $$ > tty.txt\n      - python3 bin/microblog build",
    );
    repo.write("deploy.yaml", &yaml).commit("probe");
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command(&["reconcile", "--once", "--repo", &repo.url()]);
    // An operator's secret in plumb's own environment must not reach the app user.
    cmd.env("AWS_SECRET_ACCESS_KEY", "leaked")
        .env("SSH_AUTH_SOCK", "/tmp/agent");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = sandbox.state_dir().join("current/app/microblog");
    let env = fs::read_to_string(app.join("env.txt")).unwrap();
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    let allowed = [
        "PATH",
        "LANG",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PLUMB_APP", // plumb's
        "PWD",
        "SHLVL",
        "OLDPWD",
        "_", // the shell's own
    ];
    for name in &names {
        assert!(allowed.contains(name), "{name} reached the build:\n{env}");
    }
    assert!(!env.contains("leaked") && !env.contains("agent"), "{env}");
    let pid = fs::read_to_string(app.join("pid.txt")).unwrap();
    let sid = fs::read_to_string(app.join("sid.txt")).unwrap();
    assert_eq!(sid.trim(), pid.trim(), "the build leads its own session");
    let tty = fs::read_to_string(app.join("tty.txt")).unwrap();
    assert_eq!(tty.trim(), "?", "no controlling terminal");
}

#[test]
fn a_build_and_a_hook_that_escape_with_setsid_do_not_survive_their_step() {
    let marks = open_dir();
    let m = marks.path().display();
    // Each starts a detached writer that would change things after its step.
    let escape = |name: &str| {
        format!(
            "setsid sh -c 'sleep 2; echo late > {m}/{name}.late' > /dev/null 2>&1 < /dev/null & echo $! > {m}/{name}.pid; sleep 0.3"
        )
    };
    let repo = GitRepo::example_minimal();
    let yaml = repo
        .read("deploy.yaml")
        .replace(
            "      - python3 bin/microblog build",
            &format!(
                "      - \"{}\"\n      - python3 bin/microblog build",
                escape("build")
            ),
        )
        .replace(
            "    shared: [content]\n",
            &format!(
                "    shared: [content]\n    hooks:\n      post_switch: [\"{}\"]\n",
                escape("hook")
            ),
        );
    repo.write("deploy.yaml", &yaml).commit("escapes");
    let sandbox = Sandbox::executing("");
    sandbox.reconcile(&repo).ok();
    for name in ["build", "hook"] {
        let pid = marks.path().join(format!("{name}.pid"));
        assert!(pid.exists(), "the {name} step ran");
        assert!(
            !alive(&pid),
            "the {name}'s detached process outlived its step"
        );
    }
    std::thread::sleep(Duration::from_millis(2500));
    for name in ["build", "hook"] {
        assert!(
            !marks.path().join(format!("{name}.late")).exists(),
            "the {name}'s detached process wrote after its step"
        );
    }
}

#[test]
fn a_hook_that_hangs_while_plumb_is_killed_never_wedges_the_host() {
    let marks = open_dir();
    let m = marks.path().display();
    let sandbox = Sandbox::executing("");
    let good = GitRepo::example_minimal();
    sandbox.reconcile(&good).ok();
    let v1 = sandbox.current_release();

    // v2's pre-switch hook hangs; plumb is killed while it does.
    let yaml = good
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 6")
        .replace(
            "    shared: [content]\n",
            &format!(
                "    shared: [content]\n    timeout: 600\n    hooks:\n      pre_switch: [\"echo $$ > {m}/hook.pid; exec sleep 600\"]\n"
            ),
        );
    good.write("deploy.yaml", &yaml).commit("hanging hook");
    let mut run = sandbox
        .command(&["reconcile", "--once", "--repo", &good.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = marks.path().join("hook.pid");
    let started = Instant::now();
    while !alive(&pid_file) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the hook never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-KILL", &run.id().to_string()])
        .status()
        .unwrap();
    run.wait().unwrap();
    assert!(sandbox.state_dir().join("journal.json").exists());
    assert!(alive(&pid_file), "the hook still hangs, orphaned");

    // The fix is pushed: the next run undoes v2's staging and deploys it,
    // without --force, and the orphaned hook is gone.
    let fixed = good.read("deploy.yaml").replace("exec sleep 600", "true");
    good.write("deploy.yaml", &fixed).commit("fixed hook");
    let started = Instant::now();
    let out = sandbox.reconcile(&good).ok();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        out.stdout.contains("superseded"),
        "the unfinished plan was undone first:\n{}",
        out.stdout
    );
    assert_ne!(sandbox.current_release(), v1);
    assert_eq!(
        sandbox.state()["deployed"]["commit"],
        good.git(&["rev-parse", "HEAD"]).trim()
    );
    assert!(!sandbox.state_dir().join("journal.json").exists());
    assert!(!alive(&pid_file), "the orphaned hook was stopped");
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_the_commit_refused() {
    let sandbox = Sandbox::executing("");
    let repo = with("    timeout: 1\n    hooks:\n      pre_switch: [\"sleep 30\"]\n");
    let started = Instant::now();
    let run = sandbox
        .reconcile(&repo)
        .fails_with(5, "did not finish within 1s");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{}",
        run.stderr
    );
    assert!(!sandbox.state_dir().join("current").exists());
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn plumbs_own_files_and_snapshots_of_shared_data_are_root_only() {
    let sandbox = Sandbox::executing("");
    let repo = with("    hooks:\n      pre_switch: [\"true\"]\n");
    sandbox.reconcile(&repo).ok();
    let state = sandbox.state_dir();
    let backups = state.join("backups/microblog");
    let archives: Vec<_> = fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert_eq!(mode(&archives[0]), 0o600, "a snapshot of the app's data");
    assert_eq!(mode(&backups), 0o700);
    assert_eq!(mode(&state.join("backups")), 0o700);
    assert_eq!(mode(&state.join("repo.git")), 0o700, "the mirror");
    assert_eq!(mode(&state.join("state.json")), 0o600);
    assert_eq!(mode(&sandbox.path("/run/plumb/lock")), 0o600);
    // Traversable, not listable: the app's user and nginx reach the release.
    assert_eq!(mode(&state), 0o711);
    // A mode changed by hand is set again by the next run, up to date or not.
    fs::set_permissions(state.join("repo.git"), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    assert_eq!(mode(&state.join("repo.git")), 0o700, "the mirror, again");

    let recorded = Sandbox::new();
    recorded.reconcile(&repo).ok();
    assert_eq!(mode(&recorded.state_dir().join("host-calls.log")), 0o600);
}
