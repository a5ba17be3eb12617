//! Test helpers: a git repo in a temp dir, a sandbox root, and running plumb.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// The example deploy repo shipped with plumb.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy-repo-example")
}

/// Run a command and insist it succeeds.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git repository in a temp dir, on branch `main`.
pub struct GitRepo {
    pub dir: TempDir,
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = TempDir::new().unwrap();
        sh(Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(dir.path()));
        let repo = GitRepo { dir };
        repo.git(&["config", "user.email", "test@example.org"]);
        repo.git(&["config", "user.name", "plumb test"]);
        repo
    }

    /// A repo holding a copy of `deploy-repo-example/`, committed.
    pub fn example() -> Self {
        let repo = GitRepo::new();
        copy_tree(&example_dir(), repo.path());
        repo.commit("example");
        repo
    }

    /// The example without what needs a real machine: no user creation (it
    /// builds as `nobody`), no pre-switch hook, no HTTP health check on port
    /// 8000, no secret (nor the dashboard's basic auth that uses it).
    pub fn example_minimal() -> Self {
        let repo = GitRepo::example();
        let yaml = repo
            .read("deploy.yaml")
            .replace("    create_user: true\n", "")
            .replace("    user: microblog\n", "    user: nobody\n");
        let cut = |yaml: &str, from: &str, to: &str| {
            let start = yaml.find(from).unwrap();
            let end = start + yaml[start..].find(to).unwrap();
            format!("{}{}", &yaml[..start], &yaml[end..])
        };
        let yaml = cut(&yaml, "    hooks:\n", "    service:\n");
        let yaml = cut(
            &yaml,
            "          # The dashboard is the author's",
            "    backup:\n",
        );
        let staging = repo.read("hosts/staging.yaml");
        let staging = cut(&staging, "          basic_auth:\n", "    # Staging data");
        repo.write("hosts/staging.yaml", &staging);
        repo.write("deploy.yaml", &yaml).commit("minimal");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Override the built-in nginx site template with one carrying a
    /// directive nginx does not know (not committed).
    pub fn break_site_template(&self) {
        let template =
            fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/site.j2"))
                .unwrap();
        let broken = template.replace(
            "    server_name {{ names }};",
            "    server_name {{ names }};\n    bogus_directive on;",
        );
        assert_ne!(broken, template);
        self.write("templates/site.j2", &broken);
    }

    pub fn url(&self) -> String {
        self.path().display().to_string()
    }

    pub fn git(&self, args: &[&str]) -> String {
        sh(Command::new("git").arg("-C").arg(self.path()).args(args))
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path().join(rel)).unwrap()
    }

    /// Stage everything and commit; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Commit the example's `restart_sec` changed from `from` to `to`: a
    /// unit change and nothing else. Returns the new commit id.
    pub fn restart_sec(&self, from: u32, to: u32) -> String {
        let yaml = self.read("deploy.yaml").replace(
            &format!("restart_sec: {from}"),
            &format!("restart_sec: {to}"),
        );
        self.write("deploy.yaml", &yaml)
            .commit(&format!("restart_sec {to}"))
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&dst).unwrap();
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The result of one plumb run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "plumb failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails_with(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "unexpected exit:\n{}\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// A sandbox root plumb deploys into.
pub struct Sandbox {
    pub root: TempDir,
    pub hostname: String,
    /// A host config passed with --config, if set.
    pub config: Option<PathBuf>,
}

impl Sandbox {
    pub fn new() -> Self {
        let root = TempDir::new().unwrap();
        // App builds run as an unprivileged user, who must reach the release.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox {
            root,
            hostname: "blog1".into(),
            config: None,
        }
    }

    /// A sandbox whose host commands really run: `systemctl`, nginx and
    /// `systemd-analyze` are shell stand-ins that append to `services.log`
    /// (systemd is not PID 1 here), so health checks run for real. Extra
    /// host config lines (e.g. `commands.nginx_test`) may be appended.
    /// `{root}` in `extra` stands for the sandbox root.
    pub fn executing(extra: &str) -> Self {
        let mut sandbox = Sandbox::new();
        let extra = &extra.replace("{root}", &sandbox.root.path().display().to_string());
        let log = sandbox.root.path().join("services.log");
        let inactive = sandbox.root.path().join("inactive");
        let log = log.display();
        let mut config = format!(
            "host_commands: execute\ncommands:\n  systemd_verify: [sh, -c, 'echo \"verify $*\" >> {log}', sh]\n"
        );
        if !extra.contains("  systemctl:") {
            config.push_str(&format!(
                "  systemctl: [sh, -c, 'echo \"systemctl $*\" >> {log}; if [ \"$1\" = is-active ]; then shift; for u; do if grep -qx \"$u\" {inactive} 2>/dev/null; then echo inactive; else echo active; fi; done; fi', sh]\n",
                inactive = inactive.display()
            ));
        }
        // `extra` may add `commands.*` lines (indented) or top-level keys.
        let (nested, top): (Vec<&str>, Vec<&str>) =
            extra.lines().partition(|l| l.starts_with("  "));
        for line in &nested {
            config.push_str(&format!("{line}\n"));
        }
        if !extra.contains("nginx_test") {
            config.push_str(&format!(
                "  nginx_test: [sh, -c, 'echo \"nginx -t\" >> {log}']\n"
            ));
        }
        if !extra.contains("nginx_reload") {
            config.push_str(&format!(
                "  nginx_reload: [sh, -c, 'echo \"nginx reload\" >> {log}']\n"
            ));
        }
        for line in &top {
            config.push_str(&format!("{line}\n"));
        }
        // What runs for real decrypts the example's secret for real.
        if !extra.contains("age_identity") {
            let key = crate::secrets::identity(sandbox.root.path());
            config.push_str(&format!("age_identity: {}\n", key.display()));
        }
        let path = sandbox.root.path().join("plumb.yaml");
        fs::write(&path, config).unwrap();
        sandbox.config = Some(path);
        sandbox
    }

    /// What the stand-in service manager was asked, without is-active queries.
    pub fn services(&self) -> Vec<String> {
        let log = fs::read_to_string(self.root.path().join("services.log")).unwrap_or_default();
        let root = self.root.path().display().to_string();
        log.lines()
            .filter(|l| !l.starts_with("systemctl is-active"))
            .map(|l| l.replace(&root, ""))
            .collect()
    }

    pub fn clear_services(&self) {
        let _ = fs::remove_file(self.root.path().join("services.log"));
    }

    /// Make the stand-in `systemctl is-active` report `unit` as inactive.
    pub fn stop_unit(&self, unit: &str) {
        fs::write(self.root.path().join("inactive"), format!("{unit}\n")).unwrap();
    }

    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.path().join(host_path.trim_start_matches('/'))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("/var/lib/plumb")
    }

    /// `plumb <args> --root <sandbox> --hostname <h>`.
    pub fn plumb(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumb"));
        cmd.args(args)
            .arg("--root")
            .arg(self.root.path())
            .args(["--hostname", &self.hostname]);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd
    }

    /// `plumb reconcile --once --repo <repo>`.
    pub fn reconcile(&self, repo: &GitRepo) -> Run {
        self.plumb(&["reconcile", "--once", "--repo", &repo.url()])
    }

    pub fn current_release(&self) -> String {
        let target = fs::read_link(self.state_dir().join("current")).unwrap();
        target.file_name().unwrap().to_string_lossy().into_owned()
    }

    pub fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.state_dir().join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.state_dir().join("state.json")).unwrap()).unwrap()
    }

    /// The host calls a sandbox run recorded, with the sandbox root removed.
    pub fn calls(&self) -> Vec<String> {
        let log = fs::read_to_string(self.state_dir().join("host-calls.log")).unwrap_or_default();
        let root = self.root.path().display().to_string();
        log.lines().map(|l| l.replace(&root, "")).collect()
    }

    /// Forget the recorded host calls.
    pub fn clear_calls(&self) {
        let _ = fs::remove_file(self.state_dir().join("host-calls.log"));
    }

    /// Owned paths recorded in state.json.
    pub fn owned(&self) -> Vec<String> {
        self.state()["owned"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Contents and link targets of the deployed host paths and releases,
    /// without timestamps, state.json or plumb's logs.
    pub fn content(&self) -> BTreeMap<PathBuf, String> {
        self.snapshot()
            .into_iter()
            .filter(|(p, _)| {
                let name = p.file_name().unwrap().to_string_lossy();
                !["state.json", "services.log", "host-calls.log", "inactive"]
                    .contains(&name.as_ref())
            })
            .map(|(p, v)| {
                (
                    p,
                    v.rsplit_once(' ')
                        .map(|(a, _)| a.to_string())
                        .unwrap_or_default(),
                )
            })
            .filter(|(_, v)| !v.starts_with("dir"))
            .collect()
    }

    /// Every file, dir and link under the root with its content, target,
    /// mode and mtime, except the git mirror and /run (the lock, the last
    /// run's record), which a fetch and every run may legitimately touch.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let skip = [self.state_dir().join("repo.git"), self.path("/run")];
        walk(self.root.path(), &skip, &mut out);
        out
    }
}

fn walk(dir: &Path, skip: &[PathBuf], out: &mut BTreeMap<PathBuf, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if skip.contains(&path) {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let stamp = format!("{:o} {}.{}", meta.mode(), meta.mtime(), meta.mtime_nsec());
        if meta.file_type().is_symlink() {
            out.insert(
                path.clone(),
                format!("link {:?} {stamp}", fs::read_link(&path).unwrap()),
            );
        } else if meta.is_dir() {
            out.insert(path.clone(), format!("dir {stamp}"));
            walk(&path, skip, out);
        } else {
            let bytes = fs::read(&path).unwrap();
            out.insert(
                path.clone(),
                format!("file {} {stamp}", String::from_utf8_lossy(&bytes)),
            );
        }
    }
}

/// A TCP port on 127.0.0.1 for a server a test starts, this test's alone.
///
/// Asking the kernel for port 0 and closing it races with every other test
/// process doing the same. Instead: ports below the kernel's ephemeral range
/// (so no port-0 bind elsewhere gets them), each reserved with a lock file
/// held until this test process exits (so no other test process does).
pub fn free_port() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use std::hash::{BuildHasher, RandomState};
    static HELD: std::sync::Mutex<Vec<Flock<fs::File>>> = std::sync::Mutex::new(Vec::new());
    let dir = Path::new("/tmp/plumb-test-ports");
    fs::create_dir_all(dir).unwrap();
    let seed = RandomState::new();
    for attempt in 0u32..2000 {
        let port = 20_000 + (seed.hash_one(attempt) % 10_000) as u16;
        let Ok(file) = fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap().push(lock);
            return port;
        }
    }
    panic!("no free port in 20000-29999");
}

/// A self-signed certificate for `name` (a host name or an IP address) in
/// `dir`: cert.pem and key.pem.
pub fn self_signed(dir: &Path, name: &str) {
    let san = if name.parse::<std::net::IpAddr>().is_ok() {
        format!("IP:{name}")
    } else {
        format!("DNS:{name}")
    };
    sh(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName={san}"),
            // A server's own certificate, not a CA's: rustls (like browsers)
            // refuses a CA certificate presented as a server's.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(std::process::Stdio::null()));
}

/// A file's content id in the scheme of a manifest entry `like`: git's blob
/// id (`git:<sha1>`) for app sources written from git, a SHA-256 otherwise.
pub fn content_id(bytes: &[u8], like: &str) -> String {
    use sha2::Digest as _;
    if like.starts_with("git:") {
        let mut hash = sha1::Sha1::new();
        hash.update(format!("blob {}\0", bytes.len()).as_bytes());
        hash.update(bytes);
        format!("git:{}", hex::encode(hash.finalize()))
    } else {
        hex::encode(sha2::Sha256::digest(bytes))
    }
}
