//! The rendered nginx site, checked and served by the real nginx binary on
//! 127.0.0.1 ports with a self-signed certificate made by the test.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, free_port, self_signed, sh};

/// nginx from a private prefix; stopped on drop.
struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops the workers too; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn nginx_conf(dir: &Path, include: &Path) -> std::path::PathBuf {
    let d = dir.display();
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {};\n}}\n",
        include.display()
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).unwrap();
    path
}

/// A backend that answers every request with the request's own headers.
fn echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let mut stream = stream.unwrap();
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                head.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

/// `nginx -t` on `conf`; returns stderr, asserting success.
/// `nginx -c CONF -p PREFIX -e PREFIX/error.log`, plus what the caller adds.
fn nginx(conf: &Path, prefix: &Path) -> Command {
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(prefix)
        .arg("-e")
        .arg(prefix.join("error.log"));
    cmd
}

fn nginx_t(conf: &Path, prefix: &Path) -> String {
    let check = nginx(conf, prefix)
        .arg("-t")
        .output()
        .expect("nginx runs (apt-get install nginx)");
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(check.status.success(), "nginx -t failed:\n{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
    stderr
}

#[test]
fn the_production_and_staging_sites_as_rendered_pass_nginx_t() {
    let repo = GitRepo::example();
    // Production with its certificate, before it is issued (HTTP only, the
    // ACME location), and staging (no TLS).
    for (host, issued) in [("blog1", true), ("blog1", false), ("staging", false)] {
        let tmp = TempDir::new().unwrap();
        let t = tmp.path();
        self_signed(t, "blog.test");
        let mut sandbox = Sandbox::new();
        sandbox.hostname = host.into();
        if issued {
            let live = sandbox.path("/etc/letsencrypt/live/blog.example.com");
            fs::create_dir_all(&live).unwrap();
            fs::copy(t.join("cert.pem"), live.join("fullchain.pem")).unwrap();
            fs::copy(t.join("key.pem"), live.join("privkey.pem")).unwrap();
        }
        sandbox.reconcile(&repo).ok();
        // Only what needs root or the network changes: certificate paths and ports.
        let site = fs::read_to_string(sandbox.path("/etc/nginx/conf.d/microblog.conf")).unwrap();
        assert_eq!(site.contains("ssl_certificate"), issued, "{site}");
        assert_eq!(
            site.contains("location ^~ /.well-known/acme-challenge/"),
            host == "blog1",
            "{site}"
        );
        let site = site
            .replace(
                "/etc/letsencrypt/live/blog.example.com/fullchain.pem",
                &t.join("cert.pem").display().to_string(),
            )
            .replace(
                "/etc/letsencrypt/live/blog.example.com/privkey.pem",
                &t.join("key.pem").display().to_string(),
            )
            .replace("listen 80;", &format!("listen 127.0.0.1:{};", free_port()))
            .replace(
                "listen 443 ssl http2;",
                &format!("listen 127.0.0.1:{} ssl http2;", free_port()),
            )
            .replace("listen [::]:80;", "")
            .replace("listen [::]:443 ssl http2;", "");
        assert!(
            !site.contains("listen [::]") && !site.contains(" 80;"),
            "{site}"
        );
        fs::write(t.join("site.conf"), site).unwrap();
        let conf = nginx_conf(t, &t.join("site.conf"));
        nginx_t(&conf, t);
    }
}

fn curl(args: &[&str]) -> String {
    sh(Command::new("curl")
        .args(["-sk", "--max-time", "5"])
        .args(args))
}

#[test]
fn the_rendered_site_passes_nginx_t_and_serves_with_the_right_headers() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    self_signed(t, "blog.test");
    let www = t.join("www");
    fs::create_dir_all(www.join("assets")).unwrap();
    fs::write(www.join("index.html"), "<h1>MicroBlog</h1>\n").unwrap();
    fs::write(www.join("assets/style.5b7bfccb.css"), "body{}\n").unwrap();
    let (http, https, backend) = (free_port(), free_port(), echo_backend());

    let repo = GitRepo::example();
    repo.write(
        "hosts/web.yaml",
        &format!(
            "apps:\n  microblog:\n    site:\n      server_name: [blog.test]\n      tls:\n        certificate: {t}/cert.pem\n        key: {t}/key.pem\n      listen: {{address: 127.0.0.1, http: {http}, https: {https}}}\n      root: {www}\n      immutable: [/assets/]\n      proxy:\n        - location: /dashboard\n          port: {backend}\n          basic_auth: {{realm: Dashboard, secret: dashboard-htpasswd}}\n",
            t = t.display(),
            www = www.display()
        ),
    )
    .commit("web host");
    let mut sandbox = Sandbox::new();
    sandbox.hostname = "web".into();
    // The certificate is where the host config says, for plumb (under the
    // sandbox root) and for this nginx (the machine's path).
    let issued = sandbox.path(&t.display().to_string());
    fs::create_dir_all(&issued).unwrap();
    for file in ["cert.pem", "key.pem"] {
        fs::copy(t.join(file), issued.join(file)).unwrap();
    }
    // The example's htpasswd secret, decrypted with its test identity.
    let key = crate::secrets::identity(t);
    let config = t.join("plumb.yaml");
    fs::write(&config, format!("age_identity: {}\n", key.display())).unwrap();
    sandbox.config = Some(config);
    sandbox.reconcile(&repo).ok();

    let conf = nginx_conf(t, &sandbox.path("/etc/nginx/conf.d/*.conf"));
    nginx_t(&conf, t);

    // nginx reads the secret where a real host has it (/var/lib/plumb/…):
    // in a mount namespace of its own, /var/lib is a directory whose `plumb`
    // is the sandbox's state; the machine's /var/lib is not touched.
    let var_lib = t.join("var-lib");
    fs::create_dir_all(&var_lib).unwrap();
    std::os::unix::fs::symlink(sandbox.state_dir(), var_lib.join("plumb")).unwrap();
    let start = format!(
        "mount --bind {} /var/lib && exec nginx -c {} -p {} -e {} -g 'daemon off;'",
        var_lib.display(),
        conf.display(),
        t.display(),
        t.join("error.log").display()
    );
    let _nginx = Nginx {
        child: Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &start])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let host = ["-H", "Host: blog.test"];
    let redirect = curl(
        &[
            &host[..],
            &["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"],
            &[&format!("http://127.0.0.1:{http}/x")],
        ]
        .concat(),
    );
    assert_eq!(redirect, "301 https://blog.test/x");

    let page = curl(&[&host[..], &["-i", &format!("https://127.0.0.1:{https}/")]].concat())
        .to_ascii_lowercase();
    // curl negotiates HTTP/2 over TLS (ALPN) when nginx offers it.
    assert!(page.starts_with("http/2 200"), "{page}");
    assert!(
        page.contains("cache-control: no-cache"),
        "HTML must be revalidated:\n{page}"
    );
    assert!(!page.contains("immutable"), "{page}");
    assert!(
        page.contains("strict-transport-security: max-age=31536000"),
        "HSTS on pages:\n{page}"
    );
    let asset = curl(
        &[
            &host[..],
            &[
                "-i",
                &format!("https://127.0.0.1:{https}/assets/style.5b7bfccb.css"),
            ],
        ]
        .concat(),
    )
    .to_ascii_lowercase();
    assert!(
        asset.contains("cache-control: public, max-age=31536000, immutable"),
        "{asset}"
    );
    assert!(
        asset.contains("strict-transport-security"),
        "HSTS on assets:\n{asset}"
    );

    let dashboard = format!("https://127.0.0.1:{https}/dashboard");
    let denied = curl(
        &[
            &host[..],
            &["-o", "/dev/null", "-w", "%{http_code}", &dashboard],
        ]
        .concat(),
    );
    assert_eq!(denied, "401", "the dashboard needs the password");
    let wrong = curl(
        &[
            &host[..],
            &[
                "-u",
                "author:guess",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &dashboard,
            ],
        ]
        .concat(),
    );
    assert_eq!(wrong, "401");
    let echoed = curl(&[&host[..], &["-u", "author:microblog", &dashboard]].concat());
    for header in [
        "host: blog.test",
        "x-real-ip: 127.0.0.1",
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-proto: https",
    ] {
        assert!(
            echoed.contains(header),
            "backend did not get {header:?}:\n{echoed}"
        );
    }
}
