//! Fetching over https with a token: a real git smart-HTTP server
//! (`git http-backend` behind a small TLS server written in Python's
//! standard library) that demands the token as basic-auth password.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, free_port, self_signed, sh};

const SERVER: &str = r#"
import base64, http.server, os, ssl, subprocess, sys
root, port, cert, key, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
class Git(http.server.BaseHTTPRequestHandler):
    def handle_git(self):
        if self.path.startswith("/moved/"):
            self.send_response(301)
            self.send_header("Location", "https://localhost:%d/%s" % (port, self.path[len("/moved/"):]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic ") or base64.b64decode(auth[6:]).decode().split(":", 1)[-1] != token:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), REMOTE_USER="plumb")
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)
    do_GET = do_POST = handle_git
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Git)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The example as `deploy.git` in `t`, served over https with the
/// certificate in `t` and the token `s3cret-token`; ready when returned.
fn serve(t: &Path) -> (Server, u16) {
    let repo = GitRepo::example_minimal();
    sh(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(repo.path())
        .arg(t.join("deploy.git")));
    let port = free_port();
    let server = Server(
        Command::new("python3")
            .arg("-c")
            .arg(SERVER)
            .arg(t)
            .arg(port.to_string())
            .arg(t.join("cert.pem"))
            .arg(t.join("key.pem"))
            .arg("s3cret-token")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the https server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn fetches_over_https_with_a_token_and_refuses_a_wrong_one_or_an_untrusted_certificate() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    self_signed(t, "127.0.0.1");
    let (_server, port) = serve(t);
    let config = |token: &str| {
        fs::write(t.join("token"), format!("{token}\n")).unwrap();
        let path = t.join("plumb.yaml");
        fs::write(
            &path,
            format!("https:\n  token_file: {}\n", t.join("token").display()),
        )
        .unwrap();
        path
    };
    let url = format!("https://127.0.0.1:{port}/deploy.git");
    let run = |config: &Path, ca: &Path| {
        let sandbox = Sandbox::new();
        let mut cmd = sandbox.command(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ]);
        // The machine-wide GIT_SSL_CAINFO is git's: plumb (rustls) reads SSL_CERT_FILE.
        cmd.env("SSL_CERT_FILE", ca).env_remove("GIT_SSL_CAINFO");
        let out = cmd.output().unwrap();
        (
            sandbox,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (sandbox, code, stderr) = run(&config("s3cret-token"), &t.join("cert.pem"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );

    let (_, code, stderr) = run(&config("wrong"), &t.join("cert.pem"));
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("fetch from {url} failed")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the token is never printed: {stderr}"
    );
    assert!(
        stderr.contains("authentication") || stderr.contains("401"),
        "{stderr}"
    );

    let (_, code, stderr) = run(&config("s3cret-token"), Path::new("/dev/null"));
    assert_eq!(
        code,
        Some(4),
        "an untrusted certificate is refused: {stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
fn an_https_server_cannot_redirect_the_fetch_and_its_token_elsewhere() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    // A certificate good for both names: only the redirect policy refuses.
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(t.join("key.pem"))
        .arg("-out")
        .arg(t.join("cert.pem"))
        .stderr(Stdio::null()));
    let (_server, port) = serve(t);
    fs::write(t.join("token"), "s3cret-token\n").unwrap();
    let config = t.join("plumb.yaml");
    fs::write(
        &config,
        format!("https:\n  token_file: {}\n", t.join("token").display()),
    )
    .unwrap();
    let sandbox = Sandbox::new();
    let url = format!("https://127.0.0.1:{port}/moved/deploy.git");
    let out = sandbox
        .command(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
        .env("SSL_CERT_FILE", t.join("cert.pem"))
        .env_remove("GIT_SSL_CAINFO")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("redirect"), "{stderr}");
    assert!(!sandbox.state_dir().join("current").exists());
}
