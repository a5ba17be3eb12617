//! End to end with the real nginx: plumb switches a sandbox host whose nginx
//! (private prefix, 127.0.0.1 port) serves the release through `current` and
//! proxies /api to a backend; a load generator on loopback must see every
//! request succeed across 50 switches.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, free_port};
use crate::serve::{Nginx, get, load};

/// A backend answering "pong" until `stop`.
fn backend(stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npong",
            );
        }
    });
    port
}

fn set_version(repo: &GitRepo, version: &str, reload_site: bool) -> String {
    repo.write("app/VERSION", &format!("{version}\n"));
    if reload_site {
        // Change the nginx site too, so this switch reloads nginx.
        let host = repo.read("hosts/blog1.yaml");
        let host = if host.contains("/img/") {
            host.replace(", /img/]", "]")
        } else {
            host.replace("[/assets/]", "[/assets/, /img/]")
        };
        repo.write("hosts/blog1.yaml", &host);
    }
    repo.commit(version)
}

#[test]
fn fifty_switches_under_load_with_zero_failed_requests_then_refusal_and_rollback() {
    let prefix = TempDir::new().unwrap();
    let p = prefix.path();
    let conf = p.join("nginx.conf");
    let nginx = |extra: &[&str]| -> Vec<String> {
        let mut argv: Vec<String> = vec!["nginx".into()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.extend([
            "-c".into(),
            conf.display().to_string(),
            "-p".into(),
            p.display().to_string(),
            "-e".into(),
            p.join("error.log").display().to_string(),
        ]);
        argv
    };
    let yaml_list = |argv: Vec<String>| format!("[{}]", argv.join(", "));
    let sandbox = Sandbox::executing(&format!(
        "  nginx_test: {}\n  nginx_reload: {}\n",
        yaml_list(nginx(&["-t", "-q"])),
        yaml_list(nginx(&["-s", "reload"]))
    ));
    let root = sandbox.root.path().display().to_string();
    fs::write(
        &conf,
        format!(
            "user root;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fcgi;\n\
               uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  server {{ listen 127.0.0.1:{idle}; return 204; }}\n  include {root}/etc/nginx/conf.d/*.conf;\n}}\n",
            p = p.display(),
            idle = free_port()
        ),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (http, api) = (free_port(), backend(stop.clone()));
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml").replace(
        "      - python3 bin/microblog build --content content --out build --static static\n",
        "      - python3 bin/microblog build --content content --out build --static static\n      - cp VERSION build/version.txt\n",
    );
    repo.write("deploy.yaml", &yaml);
    repo.write(
        "hosts/blog1.yaml",
        &format!(
            "apps:\n  microblog:\n    site:\n      server_name: [e2e.test]\n      listen: {{address: 127.0.0.1, http: {http}}}\n      root: {root}/var/lib/plumb/current/app/microblog/build\n      immutable: [/assets/]\n      proxy:\n        - location: /api/\n          port: {api}\n    health:\n      - http: http://127.0.0.1:{http}/version.txt\n        timeout: 5\n"
        ),
    );
    // nginx runs before the first deploy, as on a real host.
    let _nginx = Nginx(
        Command::new(&nginx(&[])[0])
            .args(&nginx(&[])[1..])
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (apt-get install nginx)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(p.join("nginx.pid"))
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "nginx wrote no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
    set_version(&repo, "v1", false);
    sandbox.reconcile(&repo).ok();

    let deadline = Instant::now() + Duration::from_secs(10);
    while get(http, "/version.txt").is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        get(http, "/version.txt").unwrap(),
        (200, "v1\n".into()),
        "v1 deployed, v1 served"
    );
    set_version(&repo, "v2", true);
    sandbox.reconcile(&repo).ok();
    assert_eq!(
        get(http, "/version.txt").unwrap(),
        (200, "v2\n".into()),
        "v2 pushed, v2 served"
    );

    // 50 switches while two clients hammer nginx; every other one reloads it.
    let traffic = load(http, &["/version.txt", "/api/ping"]);
    let started = Instant::now();
    for i in 0..50 {
        set_version(&repo, &format!("v2.{i}"), i % 2 == 0);
        sandbox.reconcile(&repo).ok();
        assert_eq!(get(http, "/version.txt").unwrap().1, format!("v2.{i}\n"));
    }
    let (total, failed) = traffic.finish();
    println!(
        "e2e: 50 switches in {:.1}s, {total} requests, {} failed",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(total > 200, "the load generator ran ({total} requests)");
    let served = get(http, "/version.txt").unwrap().1;

    // A broken directive: refused by nginx -t before the switch; still served.
    repo.break_site_template();
    repo.commit("broken nginx directive");
    sandbox
        .reconcile(&repo)
        .fails_with(5, "unknown directive \"bogus_directive\"");
    assert_eq!(get(http, "/version.txt").unwrap(), (200, served.clone()));

    // A health check that never passes: switched, then rolled back, exit 7.
    fs::remove_file(repo.path().join("templates/site.j2")).unwrap();
    let host = repo.read("hosts/blog1.yaml").replace(
        "/version.txt\n        timeout: 5",
        "/missing.txt\n        timeout: 2",
    );
    repo.write("hosts/blog1.yaml", &host);
    set_version(&repo, "v3", false);
    let run = sandbox.reconcile(&repo).fails_with(7, "rolled back");
    assert!(
        run.stderr.contains("health check microblog: ") && run.stderr.contains(": no success in"),
        "{}",
        run.stderr
    );
    assert_eq!(
        get(http, "/version.txt").unwrap(),
        (200, served),
        "the previous release is served again"
    );
    assert_eq!(get(http, "/api/ping").unwrap(), (200, "pong".into()));
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(("127.0.0.1", api));
}
