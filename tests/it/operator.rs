//! What an operator sees: every run's outcome in `status` and the metrics,
//! read-only commands without a repo, output into a closed pipe.

use std::fs;
use std::process::Stdio;

use crate::harness::{GitRepo, Sandbox};

/// A commit that changes the rendered host: the app's version.
fn bump(repo: &GitRepo, version: &str) {
    let yaml = repo.read("deploy.yaml");
    let start = yaml.find("app_version: ").unwrap();
    let end = start + yaml[start..].find('\n').unwrap();
    let yaml = format!(
        "{}app_version: \"{version}\"{}",
        &yaml[..start],
        &yaml[end..]
    );
    repo.write("deploy.yaml", &yaml).commit(version);
}

#[test]
fn status_releases_and_rollback_need_no_repo() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    bump(&repo, "2.0");
    sandbox.reconcile(&repo).ok();
    let status = sandbox.plumb(&["status"]).ok();
    assert!(status.stdout.contains("deployed: "), "{}", status.stdout);
    let releases = sandbox.plumb(&["releases"]).ok();
    assert_eq!(releases.stdout.lines().count(), 2, "{}", releases.stdout);
    sandbox.plumb(&["rollback"]).ok();
    // What fetches still says what is missing.
    sandbox
        .plumb(&["reconcile", "--once"])
        .fails_with(2, "no deploy repo given: set `repo:`");
}

#[test]
fn output_into_a_closed_pipe_keeps_the_exit_code() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    bump(&repo, "2.0");
    // The reader is gone before plumb writes (`plumb … | head -0`).
    let closed = |args: &[&str]| {
        let mut child = sandbox
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        out.status.code()
    };
    assert_eq!(closed(&["status"]), Some(0));
    assert_eq!(closed(&["releases"]), Some(0));
    let url = repo.url();
    assert_eq!(closed(&["plan", "--repo", &url]), Some(10));
}

#[test]
fn every_run_is_in_status_and_the_metrics_and_a_held_head_alerts_once() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::executing("metrics_file: /var/lib/node_exporter/plumb.prom");
    let metrics = || fs::read_to_string(sandbox.path("/var/lib/node_exporter/plumb.prom")).unwrap();
    let status = || sandbox.plumb(&["status"]).ok().stdout;
    sandbox.reconcile(&repo).ok();
    assert!(status().contains("ok (exit 0, manual)"), "{}", status());

    // Malformed YAML: refused before the switch, and said so.
    repo.write("deploy.yaml", "version: 1\napps: [\n")
        .commit("malformed");
    sandbox.reconcile(&repo).fails_with(5, "deploy.yaml");
    let now = status();
    assert!(now.contains("invalid commit (exit 5, manual)"), "{now}");
    assert!(
        now.contains("last change: ") && now.contains(" invalid "),
        "{now}"
    );
    assert!(
        now.contains("because: ") && now.contains("deploy.yaml"),
        "{now}"
    );
    let m = metrics();
    assert!(m.contains("plumb_last_run_success 0"), "{m}");
    assert!(m.contains("plumb_last_run_exit_code 5"), "{m}");

    // The next run holds the host on its release: not a new failure.
    sandbox.reconcile(&repo).fails_with(8, "quarantined");
    let now = status();
    assert!(
        now.contains("held (quarantined head) (exit 8, manual)"),
        "{now}"
    );
    let m = metrics();
    assert!(m.contains("plumb_last_run_success 1"), "{m}");
    assert!(m.contains("plumb_head_quarantined 1"), "{m}");

    // A fix: deployed, and the quarantine gauge clears.
    repo.git(&["revert", "--no-edit", "HEAD"]);
    bump(&repo, "2.1");
    sandbox.reconcile(&repo).ok();
    let m = metrics();
    assert!(m.contains("plumb_head_quarantined 0"), "{m}");
    assert!(m.contains("plumb_last_run_exit_code 0"), "{m}");

    // A fetch that fails is a run too.
    sandbox
        .plumb(&["reconcile", "--once", "--repo", "/nonexistent/repo"])
        .fails_with(4, "/nonexistent/repo");
    assert!(
        status().contains("fetch failed (exit 4, manual)"),
        "{}",
        status()
    );
}

#[test]
fn plan_agrees_with_the_run_before_it() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let plan = sandbox.plumb(&["plan", "--repo", &repo.url()]).ok();
    assert!(plan.stdout.contains("no changes"), "{}", plan.stdout);
}

#[test]
fn plan_and_releases_speak_json() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    bump(&repo, "2.0");
    let plan = sandbox.plumb(&["plan", "--json", "--repo", &repo.url()]);
    assert_eq!(plan.code, 10, "{}", plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["changes"], true);
    assert_eq!(plan["hostname"], "blog1");
    assert_eq!(
        plan["files"],
        serde_json::json!([{"name": "/etc/microblog/config.yaml", "change": "Changed"}])
    );
    assert!(
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("restart microblog.service")),
        "{plan}"
    );
    sandbox.reconcile(&repo).ok();
    let releases = sandbox.plumb(&["releases", "--json"]).ok();
    let releases: serde_json::Value = serde_json::from_str(&releases.stdout).unwrap();
    let list = releases.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[0]["commit"], repo.git(&["rev-parse", "HEAD"]).trim());
}

#[test]
fn render_writes_a_hosts_files_in_its_layout_without_deploying() {
    use std::os::unix::fs::PermissionsExt;
    let out = tempfile::TempDir::new().unwrap();
    let render = |host: &str| {
        let dir = out.path().join(host);
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["render", "--hostname", host, "--out"])
            .arg(&dir)
            .arg(crate::harness::example_dir())
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        (dir, String::from_utf8_lossy(&run.stdout).into_owned())
    };
    let (prod, listed) = render("blog1");
    assert!(
        listed.contains("/etc/nginx/conf.d/microblog.conf"),
        "{listed}"
    );
    let site = fs::read_to_string(prod.join("etc/nginx/conf.d/microblog.conf")).unwrap();
    assert!(
        site.contains("server_name blog.example.com www.blog.example.com;"),
        "{site}"
    );
    let backup = prod.join("usr/local/lib/plumb/microblog/backup.sh");
    assert_eq!(
        fs::metadata(&backup).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    // No secret in plaintext, nothing deployed anywhere.
    assert!(
        !fs::read_dir(&prod)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "run")
    );
    let (staging, _) = render("staging");
    let site = fs::read_to_string(staging.join("etc/nginx/conf.d/microblog.conf")).unwrap();
    assert!(
        site.contains("server_name staging.blog.example.com;"),
        "{site}"
    );
    assert!(
        !staging
            .join("usr/local/lib/plumb/microblog/backup.sh")
            .exists()
    );
    // Never over existing files.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["render", "--hostname", "blog1", "--out"])
        .arg(&prod)
        .arg(crate::harness::example_dir())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
}

#[test]
fn detach_leaves_plain_files_and_attach_takes_the_host_back() {
    use std::os::unix::fs::PermissionsExt;
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let owned = sandbox.owned();
    assert!(owned.len() >= 5, "{owned:?}");
    let before: Vec<(String, Vec<u8>, u32)> = owned
        .iter()
        .map(|p| {
            let path = sandbox.path(p);
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            (p.clone(), fs::read(&path).unwrap(), mode)
        })
        .collect();
    sandbox.plumb(&["detach"]).ok();
    for (path, bytes, mode) in &before {
        let real = sandbox.path(path);
        let meta = fs::symlink_metadata(&real).unwrap();
        assert!(meta.file_type().is_file(), "{path} is still a link");
        assert_eq!(&fs::read(&real).unwrap(), bytes, "{path}");
        assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{path}");
    }
    // Detached: nothing is deployed, rolled back or repaired.
    bump(&repo, "2.0");
    sandbox
        .reconcile(&repo)
        .fails_with(2, "detached from plumb");
    sandbox
        .plumb(&["rollback"])
        .fails_with(2, "run `plumb attach`");
    assert!(
        sandbox
            .plumb(&["status"])
            .ok()
            .stdout
            .contains("detached: since")
    );

    // A copy edited meanwhile: attach refuses and changes nothing.
    let config = sandbox.path("/etc/microblog/config.yaml");
    let original = fs::read(&config).unwrap();
    fs::write(&config, "edited by hand\n").unwrap();
    sandbox.plumb(&["attach"]).fails_with(
        2,
        "changed since `plumb detach`: /etc/microblog/config.yaml",
    );
    assert!(
        fs::symlink_metadata(sandbox.path(&before[0].0))
            .unwrap()
            .file_type()
            .is_file()
    );
    fs::write(&config, original).unwrap();
    sandbox.plumb(&["attach"]).ok();
    for (path, _, _) in &before {
        assert!(
            fs::symlink_metadata(sandbox.path(path))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{path}"
        );
    }
    let run = sandbox.reconcile(&repo).ok();
    assert!(run.stdout.contains("deployed"), "{}", run.stdout);
}

#[test]
fn a_state_file_from_a_newer_plumb_is_not_read() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let state = sandbox.state();
    assert_eq!(state["format"], 1);
    let mut newer = state.clone();
    newer["format"] = serde_json::json!(2);
    fs::write(sandbox.state_dir().join("state.json"), newer.to_string()).unwrap();
    sandbox.reconcile(&repo).fails_with(
        1,
        "written by a newer plumb (state format 2; this plumb reads up to 1)",
    );
    // A state written before the format field existed is read as it is.
    let mut older = state;
    older.as_object_mut().unwrap().remove("format");
    fs::write(sandbox.state_dir().join("state.json"), older.to_string()).unwrap();
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
}
