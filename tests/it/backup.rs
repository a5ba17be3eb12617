//! The rendered backup and restore scripts, run for real: an online SQLite
//! copy taken while a writer commits continuously, checked, kept N deep, and
//! restored into a fresh directory.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, sh};

/// The example with its backup pointed at `data` and `backups` in `dir`,
/// deployed; the repo too, to build on.
fn deployed_repo(dir: &Path) -> (Sandbox, GitRepo) {
    let repo = GitRepo::example_minimal();
    let d = dir.display();
    let yaml = repo.read("deploy.yaml");
    let start = yaml.find("    backup:\n").unwrap();
    let end = yaml.find("    files:\n").unwrap();
    let backup = format!(
        "    backup:\n      schedule: \"0 3 * * *\"\n      sqlite: [{d}/data/app.db]\n      paths: [{d}/data/content]\n      keep: 2\n      destination: {d}/backups\n"
    );
    repo.write(
        "deploy.yaml",
        &format!("{}{backup}{}", &yaml[..start], &yaml[end..]),
    )
    .commit("backup here");
    let mut sandbox = Sandbox::new();
    // Backups read and write outside the default roots only when the host
    // allows it.
    let config = sandbox.root.path().join("plumb.yaml");
    fs::write(&config, format!("allow_paths: [{d}]\n")).unwrap();
    sandbox.config = Some(config);
    sandbox.reconcile(&repo).ok();
    (sandbox, repo)
}

fn deployed(dir: &Path) -> Sandbox {
    deployed_repo(dir).0
}

/// A process that commits one row per transaction, ids 1, 2, 3, … until killed.
fn writer(db: &Path) -> Child {
    let script = format!(
        "import sqlite3, time\n\
         db = sqlite3.connect({db:?}, timeout=30, isolation_level=None)\n\
         db.execute('PRAGMA journal_mode=WAL')\n\
         db.execute('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)')\n\
         deadline = time.time() + 60\n\
         i = db.execute('SELECT COALESCE(MAX(id), 0) FROM t').fetchone()[0]\n\
         while time.time() < deadline:\n\
         \x20   i += 1\n\
         \x20   db.execute('BEGIN IMMEDIATE')\n\
         \x20   db.execute('INSERT INTO t VALUES (?, ?)', (i, 'x' * 200))\n\
         \x20   db.execute('COMMIT')\n",
        db = db.display().to_string()
    );
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Run `sql` against `db`, waiting out a writer's lock (sqlite3's own
/// busy timeout, which defaults to none).
fn query(db: &Path, sql: &str) -> String {
    sh(Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql))
    .trim()
    .to_string()
}

/// Rows the writer committed so far; 0 until its table exists.
fn rows(db: &Path) -> u64 {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg("SELECT COUNT(*) FROM t")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn run(script: &Path, args: &[&Path]) -> std::process::Output {
    Command::new(script).args(args).output().unwrap()
}

#[test]
fn a_backup_taken_under_a_live_writer_is_consistent_and_restores() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("data/content/posts")).unwrap();
    fs::write(t.join("data/content/posts/a.md"), "# A\n").unwrap();
    fs::write(t.join("data/content/posts/b.md"), "# B\n").unwrap();
    let sandbox = deployed(t);
    let backup_sh = sandbox.path("/usr/local/lib/plumb/microblog/backup.sh");
    let restore_sh = sandbox.path("/usr/local/lib/plumb/microblog/restore.sh");
    for script in [&backup_sh, &restore_sh] {
        let lint = Command::new("shellcheck")
            .arg(script)
            .output()
            .expect("shellcheck runs (apt-get install shellcheck)");
        assert!(
            lint.status.success(),
            "shellcheck {}:\n{}",
            script.display(),
            String::from_utf8_lossy(&lint.stdout)
        );
    }

    let db = t.join("data/app.db");
    let mut writing = writer(&db);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.exists() || rows(&db) < 200 {
        assert!(Instant::now() < deadline, "the writer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run(&backup_sh, &[]);
    let rows_after = query(&db, "SELECT COUNT(*) FROM t");
    writing.kill().unwrap();
    writing.wait().unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let backups: Vec<_> = fs::read_dir(t.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = &backups[0];
    assert_eq!(
        query(&backup.join("app.db"), "PRAGMA integrity_check;"),
        "ok"
    );

    // Restore into a fresh directory: a consistent database, the same files.
    let fresh = t.join("restored");
    let out = run(&restore_sh, &[backup, &fresh]);
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = fresh.join(db.strip_prefix("/").unwrap());
    assert_eq!(query(&restored, "PRAGMA integrity_check;"), "ok");
    let (count, max): (u64, u64) = (
        query(&restored, "SELECT COUNT(*) FROM t").parse().unwrap(),
        query(&restored, "SELECT MAX(id) FROM t").parse().unwrap(),
    );
    assert_eq!(
        count, max,
        "every committed row up to the copy, none torn: a consistent state"
    );
    assert!(
        count >= 200 && count <= rows_after.parse().unwrap(),
        "{count} rows restored, {rows_after} at the end"
    );
    let content = fresh
        .join(t.strip_prefix("/").unwrap())
        .join("data/content/posts");
    assert_eq!(fs::read_to_string(content.join("a.md")).unwrap(), "# A\n");
    assert_eq!(fs::read_to_string(content.join("b.md")).unwrap(), "# B\n");
    println!("backup: {count} rows restored consistently (writer had committed {rows_after})");
}

#[test]
fn only_the_newest_backups_are_kept_and_a_failure_leaves_nothing_partial() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    fs::create_dir_all(t.join("data/content")).unwrap();
    sh(Command::new("sqlite3")
        .arg(t.join("data/app.db"))
        .arg("CREATE TABLE t (id INTEGER PRIMARY KEY);"));
    let sandbox = deployed(t);
    let backup_sh = sandbox.path("/usr/local/lib/plumb/microblog/backup.sh");
    // Three backups within the same second: none overwrites another.
    for _ in 0..3 {
        assert!(run(&backup_sh, &[]).status.success());
    }
    let listing = || -> Vec<String> {
        fs::read_dir(t.join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let kept: Vec<String> = listing()
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(kept.len(), 2, "keep: 2, the newest: {kept:?}");

    fs::write(t.join("data/app.db"), "this is not a database").unwrap();
    let out = run(&backup_sh, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("backup of microblog failed"), "{stderr}");
    let names = listing();
    assert_eq!(
        names.iter().filter(|n| !n.starts_with('.')).count(),
        2,
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with(".partial")),
        "nothing partial left behind: {names:?}"
    );
}

#[test]
fn a_backup_section_that_could_lose_data_is_refused() {
    let cases = [
        ("keep: 2", "keep: 0", "`keep` must be at least 1"),
        (
            "destination: DEST",
            "destination: DATA/content/backups",
            "overlap",
        ),
        (
            "sqlite: [DATA/app.db]",
            "sqlite: [DATA/app.db, DATA/other/app.db]",
            "two databases are named",
        ),
        (
            "paths: [DATA/content]",
            "paths: [DATA/content, /etc/shadow]",
            "the user database",
        ),
        (
            "destination: DEST",
            "destination: /etc/cron.d",
            "belongs to cron",
        ),
        (
            "destination: DEST",
            "destination: /srv/backups",
            "outside the allowed roots",
        ),
        (
            "paths: [DATA/content]",
            "paths: [\"DATA/$(touch /tmp/pwned)\"]",
            "apps.microblog.backup.paths[0]",
        ),
        (
            "schedule: \"0 3 * * *\"",
            "schedule: \"0 0 30 2 *\"",
            "never fires",
        ),
    ];
    for (from, to, needle) in cases {
        let tmp = TempDir::new().unwrap();
        let (sandbox, repo) = deployed_repo(tmp.path());
        let d = tmp.path().display().to_string();
        let yaml = repo.read("deploy.yaml");
        let start = yaml.find("    backup:\n").unwrap();
        let end = yaml.find("    files:\n").unwrap();
        let backup = "    backup:\n      schedule: \"0 3 * * *\"\n      sqlite: [DATA/app.db]\n      paths: [DATA/content]\n      keep: 2\n      destination: DEST\n"
            .to_string()
        .replace(from, to)
        .replace("DATA", &format!("{d}/data"))
        .replace("DEST", &format!("{d}/backups"));
        repo.write(
            "deploy.yaml",
            &format!("{}{backup}{}", &yaml[..start], &yaml[end..]),
        )
        .commit("bad backup");
        sandbox.reconcile(&repo).fails_with(5, needle);
    }
}
