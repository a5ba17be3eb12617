//! Fetching the deploy repo: local path, file://, and ssh:// from a real sshd
//! with a pinned host key.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, free_port, sh};

#[test]
fn fetches_from_a_file_url() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let url = format!("file://{}", repo.path().display());
    sandbox.plumb(&["reconcile", "--once", "--repo", &url]).ok();
    assert!(
        sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );
}

#[test]
fn fetches_a_sub_path_and_a_branch_from_a_bare_remote() {
    let work = GitRepo::new();
    work.write("README", "monorepo\n");
    let sub = work.path().join("ops/blog");
    fs::create_dir_all(&sub).unwrap();
    sh(Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", crate::harness::example_dir().display()))
        .arg(&sub));
    work.commit("ops");
    work.git(&["branch", "-m", "main", "production"]);
    let bare = TempDir::new().unwrap();
    sh(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(work.path())
        .arg(bare.path()));

    let sandbox = Sandbox::new();
    let url = bare.path().display().to_string();
    sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--branch",
            "production",
            "--path",
            "ops/blog",
        ])
        .ok();
    assert!(sandbox.path("/etc/nginx/conf.d/microblog.conf").exists());
    sandbox
        .plumb(&["reconcile", "--once", "--repo", &url, "--branch", "nope"])
        .fails_with(4, "branch \"nope\" not found");
}

#[test]
fn an_unreachable_remote_is_a_fetch_error_naming_it() {
    let sandbox = Sandbox::new();
    sandbox
        .plumb(&["reconcile", "--once", "--repo", "/nonexistent/deploy.git"])
        .fails_with(
            4,
            "fetch from /nonexistent/deploy.git failed: /nonexistent/deploy.git does not exist",
        );
}

/// A real sshd on 127.0.0.1 serving git over ssh, stopped on drop.
struct Sshd {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key", "other_key"] {
            sh(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(d.join(key)));
        }
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nLogLevel ERROR\n",
            d = d.display()
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts (apt-get install openssh-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, dir, port }
    }

    /// A host config for fetching over ssh with `pinned` in known_hosts.
    fn host_config(&self, pinned_key: &str) -> std::path::PathBuf {
        let d = self.dir.path();
        let public = fs::read_to_string(d.join(format!("{pinned_key}.pub"))).unwrap();
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{} {kind} {key}\n", self.port),
        )
        .unwrap();
        let config = d.join("plumb.yaml");
        fs::write(
            &config,
            format!(
                "ssh:\n  key_file: {d}/client_key\n  known_hosts: {d}/known_hosts\n",
                d = d.display()
            ),
        )
        .unwrap();
        config
    }

    fn url(&self, repo: &Path) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, repo.display())
    }

    fn host_key_fingerprint(&self) -> String {
        let out = sh(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub")));
        out.split_whitespace().nth(1).unwrap().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn fetches_over_ssh_with_the_pinned_host_key() {
    let sshd = Sshd::start();
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let config = sshd.host_config("host_key");
    let url = sshd.url(repo.path());
    let args = [
        "reconcile",
        "--once",
        "--repo",
        &url,
        "--config",
        config.to_str().unwrap(),
    ];
    sandbox.plumb(&args).ok();
    assert!(
        sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );

    repo.write("templates/extra.txt", "x\n").commit("second");
    let run = sandbox.plumb(&args).ok();
    assert!(run.stdout.contains("deployed"), "{}", run.stdout);
}

#[test]
fn refuses_an_ssh_server_whose_key_is_not_the_pinned_one() {
    let sshd = Sshd::start();
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let config = sshd.host_config("other_key");
    let url = sshd.url(repo.path());
    let run = sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
        .fails_with(4, "does NOT match the key pinned");
    let port = sshd.port;
    assert!(
        run.stderr.contains(&format!("[127.0.0.1]:{port}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&sshd.host_key_fingerprint()),
        "{}",
        run.stderr
    );
    assert!(!sandbox.state_dir().join("current").exists());

    // An empty known_hosts: no trust on first use.
    fs::write(sshd.dir.path().join("known_hosts"), "").unwrap();
    sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
        .fails_with(4, "not in known_hosts");
}

#[test]
fn the_default_known_hosts_is_read_and_a_missing_key_file_is_named() {
    let sshd = Sshd::start();
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    // The pinned key in the default place, /etc/plumb/known_hosts (here
    // under the sandbox root); the host config does not name it.
    sshd.host_config("host_key");
    let d = sshd.dir.path();
    fs::create_dir_all(sandbox.path("/etc/plumb")).unwrap();
    fs::copy(
        d.join("known_hosts"),
        sandbox.path("/etc/plumb/known_hosts"),
    )
    .unwrap();
    let config = d.join("default-known-hosts.yaml");
    let url = sshd.url(repo.path());
    let run = |key: &str| {
        fs::write(
            &config,
            format!("ssh:\n  key_file: {}\n", d.join(key).display()),
        )
        .unwrap();
        sandbox.plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
    };
    let missing = d.join("no_such_key");
    run("no_such_key").fails_with(
        4,
        &format!("ssh key file {} does not exist", missing.display()),
    );
    run("client_key").ok();
}

#[test]
fn the_mirror_is_repacked_as_deploys_pile_up_packs() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    let packs = |s: &Sandbox| {
        fs::read_dir(s.state_dir().join("repo.git/objects/pack"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "pack")
            })
            .count()
    };
    sandbox.reconcile(&repo).ok();
    // The first fetch's pack holds the whole history: it is never rewritten.
    let first: Vec<_> = fs::read_dir(sandbox.state_dir().join("repo.git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    let mut most = 0;
    for n in 0..24 {
        let yaml = repo.read("deploy.yaml");
        let start = yaml.find("app_version: ").unwrap();
        let end = start + yaml[start..].find('\n').unwrap();
        let yaml = format!("{}app_version: \"{n}\"{}", &yaml[..start], &yaml[end..]);
        repo.write("deploy.yaml", &yaml).commit(&n.to_string());
        sandbox.reconcile(&repo).ok();
        most = most.max(packs(&sandbox));
    }
    assert!(most <= 17, "{most} packs at most");
    assert!(packs(&sandbox) < 17, "merged");
    assert!(first[0].exists(), "the largest pack was left as it was");
    // Everything is still there: history, trees, the next run.
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    sandbox.plumb(&["rollback", "--wait"]).ok();
}
