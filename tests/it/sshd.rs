//! A real sshd on loopback with its own host key and a client key, for
//! fetching over ssh and publishing sites over ssh.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{free_port, sh};

/// A real sshd on 127.0.0.1 (git over ssh, publishing), stopped on drop.
pub struct Sshd {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
}

impl Sshd {
    pub fn start() -> Sshd {
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
    pub fn host_config(&self, pinned_key: &str) -> std::path::PathBuf {
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

    pub fn url(&self, repo: &Path) -> String {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, repo.display())
    }

    pub fn host_key_fingerprint(&self) -> String {
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
