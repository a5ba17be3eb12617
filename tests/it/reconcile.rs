//! First deploy, up to date, new commits, removals: the reconcile lifecycle.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::{GitRepo, Sandbox, content_id};

const SITE: &str = "/etc/nginx/conf.d/microblog.conf";
const UNIT: &str = "/etc/systemd/system/microblog.service";

#[test]
fn first_reconcile_builds_a_release_and_links_every_owned_path() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("+ create /etc/nginx/conf.d/microblog.conf"),
        "{}",
        run.stdout
    );

    let id = sandbox.current_release();
    assert_eq!(sandbox.releases(), vec![id.clone()]);
    let release = sandbox.state_dir().join("releases").join(&id);
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(release.join("release.json")).unwrap()).unwrap();
    assert_eq!(info["commit"], repo.git(&["rev-parse", "HEAD"]).trim());

    let owned = sandbox.owned();
    for path in [
        SITE,
        UNIT,
        "/etc/microblog/config.yaml",
        "/usr/local/lib/plumb/microblog/backup.sh",
    ] {
        assert!(
            owned.contains(&path.to_string()),
            "{path} not owned: {owned:?}"
        );
    }
    let current_files = sandbox.state_dir().join("current/files");
    for path in &owned {
        let link = fs::read_link(sandbox.path(path)).unwrap();
        assert_eq!(
            link,
            current_files.join(path.trim_start_matches('/')),
            "{path}"
        );
        assert!(sandbox.path(path).exists(), "{path} dangles");
    }

    // The manifest lists every file of the release with its real sha256 and mode.
    // Built files (the static site) are listed as the build's outputs.
    let manifest = info["manifest"].as_object().unwrap();
    let outputs = info["outputs"].as_object().unwrap();
    let mut on_disk = Vec::new();
    list_files(&release, &release, &mut on_disk);
    on_disk.retain(|p| p != "release.json");
    let mut listed: Vec<String> = manifest.keys().chain(outputs.keys()).cloned().collect();
    listed.sort();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    assert!(listed.iter().any(|p| p == "app/microblog/bin/microblog"));
    assert!(
        outputs.contains_key("app/microblog/build/assets/style.5b7bfccb.css"),
        "{outputs:?}"
    );
    // content/ is shared data, linked, seeded from the repo on first deploy.
    let content = fs::read_link(release.join("app/microblog/content")).unwrap();
    assert_eq!(
        content,
        sandbox.state_dir().join("shared/microblog/content")
    );
    assert!(content.join("posts/hello-plumb.md").exists());
    for (path, entry) in manifest.iter().chain(outputs) {
        let bytes = fs::read(release.join(path)).unwrap();
        assert_eq!(
            entry["sha256"],
            content_id(&bytes, entry["sha256"].as_str().unwrap()),
            "{path}"
        );
    }
    assert_eq!(
        manifest["files/usr/local/lib/plumb/microblog/backup.sh"]["mode"],
        "0755"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(release.join("app/microblog/bin/microblog"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // The sandbox records service-manager calls in order instead of running them.
    // The sandbox creates no users: `useradd` is recorded when the user is
    // missing on this machine.
    let mut calls = sandbox.calls();
    let missing = !std::process::Command::new("id")
        .arg("microblog")
        .output()
        .unwrap()
        .status
        .success();
    assert_eq!(
        calls.first().map(|c| c == "useradd --system microblog"),
        Some(missing),
        "{calls:?}"
    );
    if missing {
        calls.remove(0);
    }
    assert_eq!(
        calls,
        [
            "nginx -t -q".into(),
            "systemd-analyze verify /etc/systemd/system/microblog-backup.service /etc/systemd/system/microblog-backup.timer /etc/systemd/system/microblog.service".into(),
            format!("tar -C /var/lib/plumb/shared/microblog -czf /var/lib/plumb/backups/microblog/.{id}.tar.gz.partial ."),
            format!("hook in /var/lib/plumb/releases/{id}/app/microblog: python3 bin/microblog upgrade-db --database /var/lib/plumb/shared/microblog/microblog.db"),
            "systemctl daemon-reload".into(),
            "systemctl reset-failed microblog.service".into(),
            "systemctl enable --now microblog.service".into(),
            "systemctl reset-failed microblog-backup.timer".into(),
            "systemctl enable --now microblog-backup.timer".into(),
            "systemctl reload nginx.service".into(),
            "health microblog: GET http://127.0.0.1:8000/health answers 200".into(),
        ],
        "validation, backup of shared data, pre-switch hook, then started, nginx reloaded, health checked"
    );
}

/// Files below `dir`, not following links.
fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            list_files(base, &path, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

#[test]
fn the_same_commit_again_writes_nothing() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let before = sandbox.snapshot();
    let run = sandbox.reconcile(&repo).ok();
    let head = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(run.stdout.trim(), format!("up to date at {}", &head[..12]));
    assert_eq!(
        sandbox.snapshot(),
        before,
        "an up-to-date run changed the host"
    );
}

#[test]
fn a_new_commit_makes_a_new_release_and_only_changed_units_restart() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let first = sandbox.current_release();
    sandbox.clear_calls();

    let yaml = repo
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 9");
    repo.write("deploy.yaml", &yaml).commit("slower restarts");
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("~ change /etc/systemd/system/microblog.service"),
        "{}",
        run.stdout
    );

    let second = sandbox.current_release();
    assert_ne!(first, second);
    assert_eq!(
        sandbox.releases(),
        vec![first.clone(), second.clone()],
        "the previous release is kept"
    );
    let unit = fs::read_to_string(sandbox.path(UNIT)).unwrap();
    assert!(
        unit.contains("RestartSec=9"),
        "the link follows current:\n{unit}"
    );
    assert_eq!(
        sandbox.calls(),
        [
            "systemd-analyze verify /etc/systemd/system/microblog.service",
            "systemctl daemon-reload",
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service"
        ],
        "only the changed unit restarts; nginx is not reloaded"
    );
}

#[test]
fn removing_a_site_removes_its_link_and_keeps_the_rest() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let yaml = repo.read("deploy.yaml");
    let start = yaml.find("    site:").unwrap();
    let end = yaml.find("    backup:").unwrap();
    repo.write(
        "deploy.yaml",
        &format!("{}{}", &yaml[..start], &yaml[end..]),
    )
    .commit("no site");

    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("- remove /etc/nginx/conf.d/microblog.conf"),
        "{}",
        run.stdout
    );
    assert!(!sandbox.path(SITE).exists() && fs::symlink_metadata(sandbox.path(SITE)).is_err());
    assert!(!sandbox.owned().contains(&SITE.to_string()));
    assert!(sandbox.path(UNIT).exists());
    assert_eq!(sandbox.releases().len(), 2);
}

#[test]
fn old_releases_are_pruned_but_current_and_previous_stay() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    for i in 0..7 {
        // Each commit changes the app's config: the service restarts on each release.
        let yaml = repo.read("deploy.yaml");
        let yaml: Vec<String> = yaml
            .lines()
            .map(|l| {
                if l.starts_with("  app_version:") {
                    format!("  app_version: \"2.{i}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        repo.write("deploy.yaml", &(yaml.join("\n") + "\n"))
            .commit(&format!("v{i}"));
        sandbox.reconcile(&repo).ok();
    }
    let releases = sandbox.releases();
    assert_eq!(releases.len(), 5, "{releases:?}");
    assert_eq!(releases.last().unwrap(), &sandbox.current_release());
}

#[test]
fn host_overlay_is_merged_for_its_host_only() {
    let repo = GitRepo::example_minimal();
    let mut staging = Sandbox::new();
    staging.hostname = "staging".into();
    staging.reconcile(&repo).ok();
    let site = fs::read_to_string(staging.path(SITE)).unwrap();
    assert!(
        site.contains("server_name staging.blog.example.com;"),
        "{site}"
    );
    assert!(!site.contains("ssl"), "staging has no TLS:\n{site}");
    // `backup: null` in the overlay: no backup units on staging.
    assert!(
        !staging
            .path("/etc/systemd/system/microblog-backup.timer")
            .exists()
    );
    let out = staging.reconcile(&repo).ok();
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);

    let prod = Sandbox::new();
    let live = prod.path("/etc/letsencrypt/live/blog.example.com");
    fs::create_dir_all(&live).unwrap();
    fs::write(live.join("fullchain.pem"), "").unwrap();
    fs::write(live.join("privkey.pem"), "").unwrap();
    let out = prod.reconcile(&repo).ok();
    assert!(
        out.stdout
            .contains("for host blog1 (no overlay: deploy.yaml as it is)"),
        "{}",
        out.stdout
    );
    assert!(
        prod.path("/etc/systemd/system/microblog-backup.timer")
            .exists()
    );
    let site = fs::read_to_string(prod.path(SITE)).unwrap();
    assert!(
        site.contains("return 301 https://$host$request_uri;"),
        "{site}"
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    let run = sandbox
        .plumb(&["reconcile", "--once", "--dry-run", "--repo", &repo.url()])
        .ok();
    assert!(
        run.stdout.contains("enable and start microblog.service"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("dry run: nothing was changed"));
    assert!(!sandbox.state_dir().join("current").exists());
    assert!(!sandbox.path(SITE).exists());
}

#[test]
fn the_release_a_running_service_started_on_is_never_pruned() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let started_on = sandbox.current_release();
    // Six deploys that only touch nginx: the service keeps running on the first release.
    for i in 0..6 {
        let yaml = repo.read("deploy.yaml");
        let yaml = yaml.replacen("immutable: [", &format!("immutable: [/a{i}/, "), 1);
        repo.write("deploy.yaml", &yaml)
            .commit(&format!("site {i}"));
        sandbox.reconcile(&repo).ok();
    }
    let releases = sandbox.releases();
    assert!(releases.contains(&started_on), "{releases:?}");
    assert_eq!(
        releases.len(),
        6,
        "5 kept, plus the one microblog.service runs from: {releases:?}"
    );
}

#[test]
fn a_site_goes_live_over_http_until_its_certificate_exists_then_tls_follows() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    let run = sandbox.reconcile(&repo).ok();
    assert!(run.stderr.contains("no certificate at"), "{}", run.stderr);
    let site = fs::read_to_string(sandbox.path(SITE)).unwrap();
    assert!(!site.contains("ssl"), "{site}");
    assert!(
        site.contains("location ^~ /.well-known/acme-challenge/"),
        "{site}"
    );
    assert!(sandbox.state_dir().join("acme").is_dir());
    let status = sandbox.plumb(&["status"]).ok().stdout;
    assert!(status.contains("tls: microblog is served over HTTP until /etc/letsencrypt/live/blog.example.com/fullchain.pem exists"), "{status}");
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    // Only the certificate: still waiting for the key.
    let live = sandbox.path("/etc/letsencrypt/live/blog.example.com");
    fs::create_dir_all(&live).unwrap();
    fs::write(live.join("fullchain.pem"), "").unwrap();
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    fs::write(live.join("privkey.pem"), "").unwrap();
    let before = sandbox.current_release();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("~ change /etc/nginx/conf.d/microblog.conf"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("reload nginx"), "{}", run.stdout);
    assert_ne!(sandbox.current_release(), before);
    let site = fs::read_to_string(sandbox.path(SITE)).unwrap();
    assert!(
        site.contains("listen 443 ssl http2;") && site.contains("return 301 https://"),
        "{site}"
    );
    let status = sandbox.plumb(&["status"]).ok().stdout;
    assert!(!status.contains("tls:"), "{status}");
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
}

#[test]
fn a_template_can_raise_to_a_power() {
    // The binary answers `pow` itself instead of loading libm (src/main.rs).
    let repo = GitRepo::example_minimal();
    let template = "templates/microblog-config.yaml.j2";
    let text = repo.read(template);
    repo.write(
        template,
        &format!("{text}# {{{{ 2 ** 10 }}}} {{{{ 2 ** 0.5 }}}} {{{{ 10 ** -2 }}}}\n"),
    )
    .commit("powers");
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let config = fs::read_to_string(sandbox.path("/etc/microblog/config.yaml")).unwrap();
    assert!(
        config.ends_with("# 1024 1.4142135623730951 0.01\n"),
        "{config}"
    );
}

#[test]
fn the_binary_needs_no_shared_library_but_libc() {
    // Each shared library costs every run its loading (docs/decisions.md):
    // zlib and gcc's unwinder are linked in, `pow` is the binary's own. A
    // new dependency on libm (a float function) or another library shows here.
    let out = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_plumb")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let needed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_string()))
        // The loader itself (the unwinder may use its `_dl_find_object`).
        .filter(|name| !name.starts_with("ld-linux"))
        .collect();
    assert_eq!(needed, ["libc.so.6"]);
}
