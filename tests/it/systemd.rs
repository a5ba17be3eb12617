//! Rendered units and timers checked by the real `systemd-analyze verify`.

use std::fs;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, sh};

/// A minimal machine image for `systemd-analyze verify --root`: the
/// distribution's units, our rendered units (links dereferenced), and the
/// programs their ExecStart= lines name.
fn verify_root(sandbox: &Sandbox, units: &[&str], programs: &[&str]) -> TempDir {
    let root = TempDir::new().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    sh(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(r.join("usr/lib/systemd/")));
    for unit in units {
        let to = r.join("etc/systemd/system").join(unit);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(sandbox.path(&format!("/etc/systemd/system/{unit}")), to).unwrap();
    }
    for program in programs {
        let from = if Path::new(program).exists() {
            Path::new(program).to_path_buf()
        } else {
            sandbox.path(program)
        };
        let to = r.join(program.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, to).unwrap();
    }
    root
}

/// `systemd-analyze verify --root=ROOT` on these units: (success, stderr).
fn verify(root: &Path, units: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(units.iter().map(|u| format!("/etc/systemd/system/{u}")))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rendered_units_and_timers_pass_systemd_analyze_verify() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let units = [
        "microblog.service",
        "microblog-backup.service",
        "microblog-backup.timer",
    ];
    let root = verify_root(
        &sandbox,
        &units,
        &[
            "/usr/bin/python3",
            "/usr/local/lib/plumb/microblog/backup.sh",
        ],
    );
    let (ok, stderr) = verify(root.path(), &units);
    assert!(ok, "systemd-analyze verify failed:\n{stderr}");
    assert_eq!(stderr, "", "systemd-analyze verify printed warnings");
}

#[test]
fn a_broken_unit_is_caught_by_the_same_check() {
    // The check above can fail: a unit with a bad directive does not pass.
    // (plumb refuses `restart: sometimes` itself: a repo's own template.)
    let repo = GitRepo::example();
    let template = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/service.j2"),
    )
    .unwrap()
    .replace("Restart={{ service.restart | unit }}", "Restart=sometimes");
    repo.write("templates/service.j2", &template)
        .commit("bad restart");
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let root = verify_root(&sandbox, &["microblog.service"], &["/usr/bin/python3"]);
    let (_, stderr) = verify(root.path(), &["microblog.service"]);
    assert!(
        stderr.contains("restart specifier, ignoring: sometimes"),
        "{stderr}"
    );
}

#[test]
fn plumbs_own_units_pass_systemd_analyze_verify() {
    let root = TempDir::new().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    sh(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(r.join("usr/lib/systemd/")));
    let units = ["plumb.service", "plumb.timer", "plumb-daemon.service"];
    for unit in units {
        let to = r.join("etc/systemd/system").join(unit);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("systemd")
                .join(unit),
            to,
        )
        .unwrap();
    }
    fs::create_dir_all(r.join("usr/local/bin")).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_plumb"), r.join("usr/local/bin/plumb")).unwrap();
    fs::create_dir_all(r.join("bin")).unwrap();
    fs::copy("/bin/kill", r.join("bin/kill")).unwrap();
    let (ok, stderr) = verify(r, &units);
    assert!(ok, "systemd-analyze verify failed:\n{stderr}");
    assert_eq!(stderr, "", "systemd-analyze verify printed warnings");
}

#[test]
fn rendered_backup_units_pass_systemd_analyze_verify() {
    // The backup service and timer with another schedule form (@weekly).
    let repo = GitRepo::example();
    repo.write(
        "hosts/weekly.yaml",
        "apps:\n  microblog:\n    backup:\n      schedule: \"@weekly\"\n      sqlite: [/var/lib/plumb/shared/microblog/microblog.db]\n      destination: /var/backups/microblog\n",
    )
    .commit("weekly");
    let mut sandbox = Sandbox::new();
    sandbox.hostname = "weekly".into();
    sandbox.reconcile(&repo).ok();
    let units = ["microblog-backup.service", "microblog-backup.timer"];
    let root = verify_root(
        &sandbox,
        &units,
        &["/usr/local/lib/plumb/microblog/backup.sh"],
    );
    let (ok, stderr) = verify(root.path(), &units);
    assert!(ok && stderr.is_empty(), "{stderr}");
}
