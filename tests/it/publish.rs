//! Hybrid deployments: a site's static files published after each good
//! deploy — to a directory served by a real nginx under load, and to
//! another machine over a real sshd — swapped atomically on the target,
//! with failures reported (never rolled back) and rollbacks followed.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, free_port};
use crate::serve::{Nginx, get, load};
use crate::sshd::Sshd;

/// The minimal example whose build also writes `build/version.txt` from
/// `app/VERSION`, with a host overlay `hybrid` publishing to `publish`
/// (a YAML list item).
fn hybrid_repo(publish: &str) -> GitRepo {
    let repo = GitRepo::example_minimal();
    let build =
        "      - python3 bin/microblog build --content content --out build --static static\n";
    let yaml = repo.read("deploy.yaml").replace(
        build,
        &format!("{build}      - cp VERSION build/version.txt\n"),
    );
    assert!(yaml.contains("cp VERSION"));
    repo.write("deploy.yaml", &yaml);
    repo.write(
        "hosts/hybrid.yaml",
        &format!(
            "apps:\n  microblog:\n    site:\n      server_name: [blog.example.com]\n      \
             root: /var/lib/plumb/current/app/microblog/build\n      publish:\n{publish}"
        ),
    );
    repo
}

fn version(repo: &GitRepo, v: &str) -> String {
    repo.write("app/VERSION", &format!("{v}\n"));
    repo.commit(v)
}

/// Where `<dir>/current` points, as `releases/<id>`.
fn served(dir: &Path) -> String {
    fs::read_link(dir.join("current"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn versions(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_site_published_fifty_times_to_a_directory_under_load_never_fails_a_request() {
    let repo = hybrid_repo("        - dir: /srv/www/microblog\n          keep: 3\n");
    let mut sandbox = Sandbox::executing("allow_paths: [/srv/www]");
    sandbox.hostname = "hybrid".into();
    let target = sandbox.path("/srv/www/microblog");

    // The static file server: nginx serving the target's `current`.
    let prefix = TempDir::new().unwrap();
    let p = prefix.path();
    let port = free_port();
    fs::write(
        p.join("nginx.conf"),
        format!(
            "user root;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
             events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fcgi;\n  \
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
             server {{ listen 127.0.0.1:{port}; root {target}/current; }}\n}}\n",
            p = p.display(),
            target = target.display()
        ),
    )
    .unwrap();
    let _nginx = Nginx(
        Command::new("nginx")
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-p")
            .arg(p)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (apt-get install nginx)"),
    );
    version(&repo, "v0");
    sandbox.reconcile(&repo).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port, "/version.txt").is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(port, "/version.txt").unwrap(), (200, "v0\n".into()));

    let traffic = load(port, &["/version.txt", "/"]);
    let started = Instant::now();
    for i in 1..=50 {
        version(&repo, &format!("v{i}"));
        sandbox.reconcile(&repo).ok();
        assert_eq!(get(port, "/version.txt").unwrap().1, format!("v{i}\n"));
    }
    let took = started.elapsed();
    let (total, failed) = traffic.finish();
    println!(
        "publish: 50 deploys with publish in {:.1}s, {total} requests, {} failed",
        took.as_secs_f64(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {total} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(total > 200, "the load generator ran ({total} requests)");

    // The target keeps 3 versions and serves the live release.
    let live = sandbox.current_release();
    assert_eq!(served(&target), format!("releases/{live}"));
    let kept = versions(&target);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept.last(), Some(&live));
    let status = sandbox.plumb(&["status"]).ok();
    assert!(
        status.stdout.contains(&format!(
            "published: /srv/www/microblog serves release {live}"
        )),
        "{}",
        status.stdout
    );
    // An up-to-date run publishes nothing again.
    let again = sandbox.reconcile(&repo).ok();
    assert!(!again.stdout.contains("publish"), "{}", again.stdout);

    // A build that leaves a link where the site is (`build -> /etc`) is
    // refused before the switch: root's rsync never follows it.
    let yaml = repo.read("deploy.yaml").replace(
        "      - cp VERSION build/version.txt\n",
        "      - cp VERSION build/version.txt\n      - rm -rf build && ln -s /etc build\n",
    );
    repo.write("deploy.yaml", &yaml).commit("a link for a site");
    sandbox
        .reconcile(&repo)
        .fails_with(5, "a link, or a path through one, is never published");
    assert_eq!(served(&target), format!("releases/{live}"));
    assert!(!target.join("current/passwd").exists());
}

#[test]
fn publishing_over_ssh_is_reported_when_it_fails_retried_and_follows_a_rollback() {
    let sshd = Sshd::start();
    let remote = TempDir::new().unwrap();
    let dir = remote.path().join("www/microblog");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let repo = hybrid_repo(&format!(
        "        - ssh: {user}@127.0.0.1:{}\n          port: {}\n          keep: 2\n",
        dir.display(),
        sshd.port
    ));
    // Pinned: a key that is not the server's. Allowed: another directory.
    sshd.host_config("other_key");
    let d = sshd.dir.path().display();
    let config = |allowed: &Path| {
        format!(
            "ssh: {{key_file: {d}/client_key, known_hosts: {d}/known_hosts}}\nallow_publish: [\"{user}@127.0.0.1:{}\"]\nmetrics_file: /var/lib/node_exporter/plumb.prom",
            allowed.display()
        )
    };
    let mut sandbox = Sandbox::executing(&config(&remote.path().join("elsewhere")));
    sandbox.hostname = "hybrid".into();
    // The deploy repo names the target; the host config decides whether
    // this host may reach it.
    version(&repo, "v0");
    sandbox
        .reconcile(&repo)
        .fails_with(5, "is not allowed on this host");
    let path = sandbox.config.clone().unwrap();
    let text = fs::read_to_string(&path).unwrap().replace(
        &remote.path().join("elsewhere").display().to_string(),
        &remote.path().join("www").display().to_string(),
    );
    fs::write(&path, text).unwrap();

    // Deployed and healthy, but not published: exit 13, no rollback.
    let first = version(&repo, "v1");
    sandbox
        .reconcile(&repo)
        .fails_with(13, "publishing its site failed");
    sandbox
        .reconcile(&repo)
        .fails_with(13, "publishing its site failed");
    let live = sandbox.current_release();
    assert!(
        live.ends_with(&first[..12]),
        "the host stays on the new release"
    );
    assert!(!dir.join("current").exists());
    let status = sandbox.plumb(&["status"]).ok();
    assert!(
        status.stdout.contains("publishing release"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("failed"), "{}", status.stdout);
    let metrics = || fs::read_to_string(sandbox.path("/var/lib/node_exporter/plumb.prom")).unwrap();
    let gauge = format!(
        "plumb_publish_ok{{app=\"microblog\",target=\"ssh://{user}@127.0.0.1:{}{}\"}}",
        sshd.port,
        dir.display()
    );
    assert!(metrics().contains(&format!("{gauge} 0")), "{}", metrics());

    // The host key pinned right: the next (up-to-date) run publishes.
    sshd.host_config("host_key");
    sandbox.reconcile(&repo).ok();
    assert!(metrics().contains(&format!("{gauge} 1")), "{}", metrics());
    assert_eq!(served(&dir), format!("releases/{live}"));
    assert_eq!(
        fs::read_to_string(dir.join("current/version.txt")).unwrap(),
        "v1\n"
    );

    version(&repo, "v2");
    sandbox.reconcile(&repo).ok();
    let second = sandbox.current_release();
    assert_eq!(served(&dir), format!("releases/{second}"));
    assert_eq!(versions(&dir), vec![live.clone(), second.clone()]);

    // A rollback of the host republishes the build it goes back to.
    sandbox.plumb(&["rollback"]).ok();
    assert_eq!(sandbox.current_release(), live);
    assert_eq!(served(&dir), format!("releases/{live}"));
    assert_eq!(
        fs::read_to_string(dir.join("current/version.txt")).unwrap(),
        "v1\n"
    );
}
