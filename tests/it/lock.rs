//! One run at a time.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use crate::harness::{GitRepo, Sandbox};

#[test]
fn a_second_run_is_refused_while_the_lock_is_held_and_waits_with_wait() {
    let repo = GitRepo::example_minimal();
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
fn a_run_that_holds_the_lock_refuses_a_second_run_naming_its_pid() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    // The first run holds the lock while its `nginx -t` step sleeps.
    let config = sandbox.root.path().join("plumb.yaml");
    fs::write(
        &config,
        "host_commands: execute\ncommands:\n  systemctl: [\"true\"]\n  nginx_test: [sleep, \"2\"]\n  nginx_reload: [\"true\"]\n  systemd_verify: [\"true\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let mut first = sandbox
        .command(&[
            "reconcile",
            "--once",
            "--repo",
            &repo.url(),
            "--config",
            config,
        ])
        .spawn()
        .unwrap();
    let lock = sandbox.path("/run/plumb/lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = sandbox.plumb(&[
        "reconcile",
        "--once",
        "--repo",
        &repo.url(),
        "--config",
        config,
    ]);
    let second = second.fails_with(
        3,
        &format!("another plumb run (pid {}) holds the lock", first.id()),
    );
    assert!(
        second.stdout.is_empty(),
        "the refused run did nothing: {}",
        second.stdout
    );
    assert!(first.wait().unwrap().success());
    assert!(sandbox.state_dir().join("current").exists());
}
