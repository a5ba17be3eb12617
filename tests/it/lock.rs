//! One run at a time.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use crate::harness::{GitRepo, Sandbox};

#[test]
fn a_second_run_is_refused_while_the_lock_is_held_and_waits_with_wait() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let path = sandbox.path("/run/plumb/lock");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut holder = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    holder.try_lock().unwrap();
    write!(holder, "4242").unwrap();

    sandbox
        .reconcile(&repo)
        .fails_with(3, "another plumb run (pid 4242) holds the lock");
    assert!(!sandbox.state_dir().join("current").exists());

    let mut waiting = sandbox
        .command(&["reconcile", "--once", "--wait", "--repo", &repo.url()])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "--wait must block while the lock is held"
    );
    drop(holder);
    assert!(waiting.wait().unwrap().success());
    assert!(sandbox.state_dir().join("current").exists());
}

#[test]
fn two_real_runs_never_overlap() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            sandbox
                .command(&["reconcile", "--once", "--repo", &repo.url()])
                .output()
                .unwrap()
        })
        .collect();
    // Sequential runs both succeed; the second is up to date.
    assert!(runs.iter().all(|r| r.status.success()));
    let children: Vec<_> = (0..4)
        .map(|_| {
            sandbox
                .command(&["reconcile", "--once", "--force", "--repo", &repo.url()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success()
                || (out.status.code() == Some(3) && stderr.contains("holds the lock")),
            "a concurrent run failed some other way: {stderr}"
        );
    }
    assert!(sandbox.state_dir().join("current").exists());
}
