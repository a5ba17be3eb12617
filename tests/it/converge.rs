//! Converging safely: validation before the switch, restarts with reasons,
//! health checks, automatic rollback, quarantine, drift repair.

use std::fs;

use crate::harness::{GitRepo, Sandbox};

const UNIT: &str = "/etc/systemd/system/microblog.service";

/// The example with a health check that passes while `marker` exists.
fn repo_with_health(marker: &std::path::Path) -> GitRepo {
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml").replace(
        "    files:\n",
        &format!(
            "    health:\n      - command: [test, -e, {}]\n        timeout: 1\n        interval_ms: 100\n    files:\n",
            marker.display()
        ),
    );
    repo.write("deploy.yaml", &yaml).commit("health check");
    repo
}

fn bump_unit(repo: &GitRepo, restart_sec: u32) -> String {
    let yaml = repo.read("deploy.yaml");
    let at = yaml.find("restart_sec: ").unwrap();
    let end = at + yaml[at..].find('\n').unwrap();
    let yaml = format!("{}restart_sec: {restart_sec}{}", &yaml[..at], &yaml[end..]);
    repo.write("deploy.yaml", &yaml)
        .commit(&format!("restart_sec {restart_sec}"))
}

#[test]
fn a_failing_health_check_rolls_back_quarantines_and_exits_7() {
    let sandbox = Sandbox::executing("");
    let marker = sandbox.root.path().join("healthy");
    fs::write(&marker, "").unwrap();
    let repo = repo_with_health(&marker);
    sandbox.reconcile(&repo).ok();
    let v1 = sandbox.current_release();
    sandbox.clear_services();

    let bad = bump_unit(&repo, 9);
    fs::remove_file(&marker).unwrap();
    let run = sandbox.reconcile(&repo).fails_with(
        7,
        &format!("failed after the switch and was rolled back to release {v1}"),
    );
    assert!(
        run.stderr.contains("health check microblog: ") && run.stderr.contains(": no success in"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sandbox.current_release(),
        v1,
        "current is back on the previous release"
    );
    let unit = fs::read_to_string(sandbox.path(UNIT)).unwrap();
    assert!(
        unit.contains("RestartSec=5"),
        "the unit file is the old one again:\n{unit}"
    );
    assert_eq!(
        sandbox.services(),
        [
            "verify /etc/systemd/system/microblog.service",
            "systemctl daemon-reload",
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service",
            // rollback: old files back, then the touched unit restarted on them
            "systemctl daemon-reload",
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service",
        ]
    );
    let state = sandbox.state();
    assert_eq!(state["deployed"]["release"], v1);
    assert_eq!(state["quarantine"][0]["commit"], bad);
    assert!(
        state["quarantine"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("health check")
    );

    // The quarantined commit is not retried by later runs...
    sandbox.clear_services();
    sandbox.reconcile(&repo).fails_with(8, "is quarantined");
    assert!(
        sandbox.services().is_empty(),
        "a quarantined commit touches nothing"
    );
    // ...unless forced.
    sandbox
        .plumb(&["reconcile", "--once", "--force", "--repo", &repo.url()])
        .fails_with(7, "rolled back");
    // A new commit is deployed normally.
    fs::write(&marker, "").unwrap();
    let good = bump_unit(&repo, 11);
    sandbox.reconcile(&repo).ok();
    assert_ne!(sandbox.current_release(), v1);
    assert_eq!(sandbox.state()["deployed"]["commit"], good);
}

#[test]
fn a_broken_nginx_directive_is_refused_by_the_real_nginx_before_the_switch() {
    let prefix = tempfile::TempDir::new().unwrap();
    let p = prefix.path();
    let conf = p.join("nginx.conf");
    let sandbox = Sandbox::executing(&format!(
        "  nginx_test: [nginx, -t, -q, -c, {}, -p, {p}, -e, {p}/error.log]\n",
        conf.display(),
        p = p.display()
    ));
    fs::write(
        &conf,
        format!(
            "pid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{}}\nhttp {{\n  include {}/etc/nginx/conf.d/*.conf;\n}}\n",
            sandbox.root.path().display(),
            p = p.display()
        ),
    )
    .unwrap();

    // Plain HTTP, so nginx -t needs no certificate.
    let repo = GitRepo::example_minimal();
    repo.write(
        "hosts/blog1.yaml",
        "apps:\n  microblog:\n    site:\n      server_name: [blog.test]\n      listen: {address: 127.0.0.1, http: 8089}\n      root: /srv/www\n",
    )
    .commit("http only");
    sandbox.reconcile(&repo).ok();
    let v1 = sandbox.current_release();
    let before = sandbox.content();

    let site = repo.read("hosts/blog1.yaml").replace(
        "blog.test]",
        "blog.test]\n      proxy: [{location: /x, port: 8000}]",
    );
    repo.write("hosts/blog1.yaml", &site);
    repo.break_site_template();
    let bad = repo.commit("broken directive");
    let run = sandbox
        .reconcile(&repo)
        .fails_with(5, "refused before the switch");
    assert!(
        run.stderr.contains("unknown directive \"bogus_directive\""),
        "nginx's message is quoted:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("etc/nginx/conf.d/microblog.conf:"),
        "with file and line:\n{}",
        run.stderr
    );
    assert_eq!(sandbox.current_release(), v1);
    assert_eq!(
        sandbox.content(),
        before,
        "the host is as it was: links, releases, files"
    );
    assert_eq!(sandbox.state()["quarantine"][0]["commit"], bad);
}

#[test]
fn only_what_changed_restarts_and_each_restart_says_why() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();

    // A config file the app declares: the service restarts, nothing else.
    sandbox.clear_calls();
    let yaml = repo
        .read("deploy.yaml")
        .replace("site_name: MicroBlog", "site_name: MicroBlog!");
    repo.write("deploy.yaml", &yaml).commit("rename");
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("restart microblog.service (config /etc/microblog/config.yaml changed)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        sandbox.calls(),
        [
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service"
        ]
    );

    // With ExecReload, a config change reloads instead.
    sandbox.clear_calls();
    let yaml = repo
        .read("deploy.yaml")
        .replace("site_name: MicroBlog!", "site_name: MicroBlog?")
        .replace(
            "      restart: on-failure\n",
            "      restart: on-failure\n      reload: /bin/kill -HUP $MAINPID\n",
        );
    repo.write("deploy.yaml", &yaml).commit("reloadable");
    sandbox.reconcile(&repo).ok();
    assert_eq!(
        sandbox.calls(),
        [
            "systemd-analyze verify /etc/systemd/system/microblog.service",
            "systemctl daemon-reload",
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service"
        ],
        "the unit file itself changed (ExecReload added): restart"
    );
    sandbox.clear_calls();
    let yaml = repo
        .read("deploy.yaml")
        .replace("site_name: MicroBlog?", "site_name: MicroBlog.");
    repo.write("deploy.yaml", &yaml).commit("config only");
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("reload microblog.service (config /etc/microblog/config.yaml changed)"),
        "{}",
        run.stdout
    );
    assert_eq!(sandbox.calls(), ["systemctl reload microblog.service"]);

    // The app's code: restart, with that reason.
    sandbox.clear_calls();
    repo.write(
        "app/microblog/__init__.py",
        "\"\"\"MicroBlog.\"\"\"\n__version__ = \"9\"\n",
    )
    .commit("code");
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("restart microblog.service (app release changed)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        sandbox.calls(),
        [
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service"
        ]
    );

    // Only the site: nginx is checked and reloaded, no unit restarts.
    sandbox.clear_calls();
    let yaml = repo
        .read("deploy.yaml")
        .replace("immutable: [/assets/]", "immutable: [/assets/, /fonts/]");
    repo.write("deploy.yaml", &yaml).commit("fonts");
    sandbox.reconcile(&repo).ok();
    assert_eq!(
        sandbox.calls(),
        ["nginx -t -q", "systemctl reload nginx.service"]
    );
    sandbox.clear_calls();

    // Removing the backup: its timer is stopped and disabled, files go.
    let yaml = repo.read("deploy.yaml");
    let start = yaml.find("    backup:").unwrap();
    let end = yaml.find("    files:").unwrap();
    repo.write(
        "deploy.yaml",
        &format!("{}{}", &yaml[..start], &yaml[end..]),
    )
    .commit("no backups");
    sandbox.reconcile(&repo).ok();
    assert_eq!(
        sandbox.calls(),
        [
            "systemctl disable --now microblog-backup.timer",
            "systemctl daemon-reload"
        ]
    );
    assert!(
        !sandbox
            .path("/etc/systemd/system/microblog-backup.timer")
            .exists()
    );
}

#[test]
fn drift_is_repaired_and_reported() {
    let sandbox = Sandbox::executing("");
    let repo = GitRepo::example_minimal();
    sandbox.reconcile(&repo).ok();
    let v1 = sandbox.current_release();
    // Each drift below comes after an up-to-date run, which leaves the
    // check index: the next run trusts it only as far as nothing changed.
    let index = sandbox.path("/run/plumb/check.idx");
    let up_to_date = |why: &str| {
        let _ = fs::remove_file(&index);
        let run = sandbox.reconcile(&repo).ok();
        assert!(run.stdout.contains("up to date"), "{why}: {}", run.stdout);
        assert!(index.exists(), "{why}: no check index written");
    };
    up_to_date("after the deploy");

    // A removed link comes back; nothing restarts for it.
    fs::remove_file(sandbox.path("/etc/microblog/config.yaml")).unwrap();
    sandbox.clear_services();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout.contains("relink /etc/microblog/config.yaml"),
        "{}",
        run.stdout
    );
    assert!(sandbox.path("/etc/microblog/config.yaml").exists());
    assert_eq!(sandbox.current_release(), v1);

    // A release file edited in place: a fresh release from the same commit,
    // and the unit that depends on it restarts.
    up_to_date("after the relink");
    let release_file = sandbox
        .state_dir()
        .join("current/files/etc/systemd/system/microblog.service");
    let text = fs::read_to_string(&release_file).unwrap();
    fs::write(&release_file, text.replace("RestartSec=5", "RestartSec=1")).unwrap();
    sandbox.clear_services();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("~ change /etc/systemd/system/microblog.service"),
        "{}",
        run.stdout
    );
    assert_ne!(sandbox.current_release(), v1);
    assert!(
        fs::read_to_string(sandbox.path(UNIT))
            .unwrap()
            .contains("RestartSec=5")
    );
    assert!(
        sandbox
            .services()
            .contains(&"systemctl restart microblog.service".to_string())
    );

    // A unit that should run but does not is started.
    up_to_date("after the new release");
    sandbox.stop_unit("microblog.service");
    sandbox.clear_services();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("start microblog.service (should be running but is not)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        sandbox.services(),
        [
            "systemctl reset-failed microblog.service",
            "systemctl start microblog.service"
        ]
    );
}

#[test]
fn a_deploy_leaves_the_check_index_and_drift_after_it_is_still_found() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::executing("");
    let repo = GitRepo::example_minimal();
    sandbox.reconcile(&repo).ok();
    let index = sandbox.path("/run/plumb/check.idx");
    let _ = fs::remove_file(&index);
    // The link directories were made by the first deploy; the second only
    // changes a unit's bytes, so it vouches for them as it found them.
    std::thread::sleep(std::time::Duration::from_millis(50));
    bump_unit(&repo, 7);
    let run = sandbox.reconcile(&repo).ok();
    assert!(run.stdout.contains("deployed"), "{}", run.stdout);
    assert!(index.exists(), "the deploy wrote no check index");
    let written = fs::metadata(&index).unwrap().ino();
    let run = sandbox.reconcile(&repo).ok();
    assert!(run.stdout.contains("up to date"), "{}", run.stdout);
    assert!(!run.stdout.contains("checked in full"), "{}", run.stdout);
    assert_eq!(
        fs::metadata(&index).unwrap().ino(),
        written,
        "the up-to-date run answered from the deploy's index (no full check rewrote it)"
    );

    // A link pointed elsewhere by hand right after the deploy is found (its
    // directory's stamp moved) and put back, by an up-to-date commit...
    let config = sandbox.path("/etc/microblog/config.yaml");
    fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &config).unwrap();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout.contains("relink /etc/microblog/config.yaml"),
        "{}",
        run.stdout
    );
    // ...and by a deploy of the next commit, which reads the link again.
    std::thread::sleep(std::time::Duration::from_millis(50));
    bump_unit(&repo, 8);
    sandbox.reconcile(&repo).ok();
    let written = fs::metadata(&index).unwrap().ino();
    fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &config).unwrap();
    bump_unit(&repo, 9);
    let run = sandbox.reconcile(&repo).ok();
    assert!(run.stdout.contains("deployed"), "{}", run.stdout);
    assert_eq!(
        fs::read_link(&config).unwrap(),
        sandbox
            .state_dir()
            .join("current/files/etc/microblog/config.yaml"),
        "{}",
        run.stdout
    );
    assert_eq!(
        fs::metadata(&index).unwrap().ino(),
        written,
        "a deploy that relinked something vouches for nothing"
    );
}

#[test]
fn an_edit_that_keeps_size_and_mtime_is_found_by_status_verify() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let release = sandbox.state_dir().join("current");
    // A rendered file (SHA-256 in the manifest) and an app source file
    // (git's blob id in the manifest): same length, same mtime, same inode.
    let targets = [
        release.join("files/etc/microblog/config.yaml"),
        release.join("app/microblog/microblog/db.py"),
    ];
    for path in &targets {
        let meta = fs::metadata(path).unwrap();
        let mut bytes = fs::read(path).unwrap();
        bytes[0] = if bytes[0] == b'#' { b'!' } else { b'#' };
        let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        file.set_modified(meta.modified().unwrap()).unwrap();
    }
    let quick = sandbox.plumb(&["status"]).ok().stdout;
    assert!(
        quick.contains("drift: none"),
        "the quick check trusts the stat:\n{quick}"
    );
    let full = sandbox.plumb(&["status", "--verify"]).ok().stdout;
    for key in [
        "files/etc/microblog/config.yaml",
        "app/microblog/microblog/db.py",
    ] {
        assert!(
            full.contains(&format!(
                "drift: {key}: modified since the release was written"
            )),
            "{key}:\n{full}"
        );
    }
    // Only those two: the untouched files hash to their recorded ids.
    assert_eq!(full.matches("drift: ").count(), 2, "{full}");
}

#[test]
fn a_reused_file_records_the_stat_it_has_even_when_it_was_touched() {
    use std::os::unix::fs::MetadataExt;
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    // Touched by hand: same bytes, a new mtime. Intact, but its recorded
    // stat is stale.
    let touched = sandbox
        .state_dir()
        .join("current/files/etc/microblog/config.yaml");
    let file = fs::File::options().append(true).open(&touched).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
        .unwrap();
    repo.restart_sec(5, 6);
    sandbox.reconcile(&repo).ok();
    // Every file of the new release (most of them links to the previous
    // one) is recorded with the size, mtime and inode it has.
    let release = sandbox.state_dir().join("current");
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(release.join("release.json")).unwrap()).unwrap();
    let manifest = info["manifest"].as_object().unwrap();
    assert!(manifest.contains_key("files/etc/microblog/config.yaml"));
    for (key, entry) in manifest {
        let meta = fs::symlink_metadata(release.join(key)).unwrap();
        let stat = &entry["stat"];
        assert_eq!(stat["size"], meta.size(), "{key}");
        assert_eq!(
            stat["mtime_ns"],
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            "{key}"
        );
        assert_eq!(stat["ino"], meta.ino(), "{key}");
    }
    // So the next run finds nothing to hash or repair.
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    let status = sandbox.plumb(&["status", "--verify", "--json"]).ok().stdout;
    assert!(status.contains("\"drift\": []"), "{status}");
}
