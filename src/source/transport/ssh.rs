//! git over ssh with the system's OpenSSH client: `ssh … git-upload-pack
//! '<path>'`, as git itself does, with the host config's key and the host
//! keys pinned in its known_hosts (ssh checks them; plumb never trusts on
//! first use). A refused host key becomes an error naming the key offered.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};

use super::{Context, fetch_only};
use crate::error::FetchError;
use crate::host::process::{Proc, ProcessError};
use crate::host::stream::Stream;
use crate::spec::remote::{SshUrl, ssh_command, without_password};
use crate::spec::settings::KNOWN_HOSTS;

/// The longest the server may stay silent during a fetch.
const SILENCE: Duration = Duration::from_secs(300);

pub(super) struct Ssh {
    context: Arc<Context>,
}

impl Ssh {
    pub(super) fn new(context: Arc<Context>) -> Ssh {
        Ssh { context }
    }
}

impl SmartSubtransport for Ssh {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        fetch_only(action)?;
        let target = Target::parse(url).map_err(|e| git2::Error::from_str(&e))?;
        let argv = argv(&self.context, &target).map_err(|e| git2::Error::from_str(&e))?;
        let stream = Proc::new(&argv)
            .timeout(SILENCE)
            .stream()
            .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        Ok(Box::new(SshStream {
            stream,
            context: self.context.clone(),
            target,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Where an ssh URL points: `ssh://[user@]host[:port]/path` or git's short
/// form `[user@]host:path`.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    user: String,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        // A password in the URL never reaches a message.
        let invalid = |why: &str| {
            format!(
                "{:?} is not an ssh URL plumb can use: {why}",
                without_password(url)
            )
        };
        let SshUrl {
            user,
            host,
            port,
            path,
        } = SshUrl::parse(url).map_err(invalid)?;
        let port = port.unwrap_or(22);
        let path = path.to_string();
        let user = user.unwrap_or("git");
        for (what, value) in [("user", user), ("host", host)] {
            if value.is_empty()
                || value.starts_with('-')
                || value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "@/'\"\\`$;&|<>".contains(c))
                || (what == "user" && value.contains(':'))
            {
                // The user part may hold a password: only the host is shown.
                let shown = if what == "host" {
                    format!(" {value:?}")
                } else {
                    String::new()
                };
                return Err(invalid(&format!("a bad {what}{shown}")));
            }
        }
        if path.is_empty() || path.starts_with('-') || path.chars().any(char::is_control) {
            return Err(invalid(
                "no path, a path starting with `-`, or control characters in it",
            ));
        }
        Ok(Target {
            user: user.to_string(),
            host: host.to_string(),
            port,
            path,
        })
    }

    /// How ssh and known_hosts name the server.
    fn shown(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// The ssh command line for `target`. Without a known_hosts file every
/// key is unknown: ssh still connects far enough to name the key offered.
fn argv(context: &Context, target: &Target) -> Result<Vec<String>, String> {
    let remote = &context.remote;
    let key = remote
        .ssh_key
        .as_ref()
        .ok_or("fetching over ssh needs a key: set ssh.key_file in the host config")?;
    if !key.exists() {
        return Err(format!(
            "ssh key file {} does not exist (ssh.key_file in the host config)",
            key.display()
        ));
    }
    let known_hosts = remote
        .known_hosts
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/null"));
    let mut argv = ssh_command(key, &known_hosts, target.port)?;
    // debug1 names the server's host key, for the error if it is refused.
    argv.extend(["-o".into(), "LogLevel=DEBUG1".into()]);
    argv.extend([
        "-l".into(),
        target.user.clone(),
        "--".into(),
        target.host.clone(),
        // Quoted as git quotes it: `'` and `!` (for csh) outside the quotes.
        format!(
            "git-upload-pack '{}'",
            target.path.replace('\'', r"'\''").replace('!', r"'\!'")
        ),
    ]);
    Ok(argv)
}

/// The conversation with `ssh`; when it ends badly, the error says why.
struct SshStream {
    stream: Stream,
    context: Arc<Context>,
    target: Target,
}

impl SshStream {
    fn failed(&mut self, error: ProcessError) -> io::Error {
        let stderr = match &error {
            ProcessError::Exit { output, .. }
            | ProcessError::Signal { output, .. }
            | ProcessError::Timeout { output, .. } => output.clone(),
            _ => String::new(),
        };
        // ssh's own failures exit 255; anything else is what the server said.
        // When its start was cut, what is left may all be the server's.
        let refused = match &error {
            ProcessError::Exit { code: 255, .. } if !self.stream.stderr_cut() => {
                refused_host_key(&stderr)
            }
            _ => None,
        };
        let message = match refused {
            Some((key_type, fingerprint, reason)) => {
                let reason = match &self.context.remote.known_hosts {
                    None => NO_KNOWN_HOSTS,
                    Some(_) => reason,
                };
                self.context.reject(FetchError::HostKey {
                    host: self.target.shown(),
                    key_type,
                    fingerprint,
                    reason: reason.to_string(),
                    known_hosts: self
                        .context
                        .remote
                        .known_hosts
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(KNOWN_HOSTS)),
                })
            }
            None => match said(&stderr) {
                said if said.is_empty() => error.to_string(),
                said => format!("ssh: {said}"),
            },
        };
        io::Error::other(message)
    }
}

impl Read for SshStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.read(buf)? {
            0 => match self.stream.finish() {
                Ok(()) => Ok(0),
                Err(error) => Err(self.failed(error)),
            },
            n => Ok(n),
        }
    }
}

impl Write for SshStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// What ssh (or the server's git) said, without ssh's debug output.
fn said(stderr: &str) -> String {
    const CHATTER: [&str; 5] = [
        "debug1:",
        "OpenSSH_",
        "Authenticated to ",
        "Transferred: ",
        "Bytes per second: ",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !CHATTER.iter().any(|c| l.starts_with(c)))
        .collect();
    lines[lines.len().saturating_sub(6)..].join("; ")
}

const NO_KNOWN_HOSTS: &str = "and there is no known_hosts file (/etc/plumb/known_hosts is read when it exists; ssh.known_hosts in the host config names another)";

/// The key ssh refused and why, from its stderr at LogLevel DEBUG1: only
/// what ssh printed before the server could print anything.
fn refused_host_key(stderr: &str) -> Option<(String, String, &'static str)> {
    let stderr = stderr.split("\nAuthenticated to ").next().unwrap_or(stderr);
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    // ssh's fatal message is the last thing it prints.
    if lines.iter().rev().find(|l| !l.is_empty()) != Some(&"Host key verification failed.") {
        return None;
    }
    // Matched at the start of ssh's own lines: the server's version string
    // (printed before the key) sits inside a `debug1:` line.
    let said = |test: &dyn Fn(&str) -> bool| lines.iter().any(|l| test(l));
    let reason = if said(&|l| {
        (l.starts_with('@') && l.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"))
            || (l.starts_with("Host key for ") && l.contains(" has changed "))
    }) {
        "which does NOT match the key pinned for this host (possible man-in-the-middle, or the server key changed)"
    } else if said(&|l| {
        (l.starts_with('@') && l.contains("REVOKED HOST KEY DETECTED"))
            || (l.starts_with("The ") && l.ends_with(" is marked as revoked."))
    }) {
        "which is marked @revoked"
    } else if said(&|l| l.starts_with("No ") && l.contains(" host key is known for ")) {
        "which is not in known_hosts (plumb never trusts on first use)"
    } else {
        "which ssh refused"
    };
    let offered = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("debug1: Server host key: ")
                .or_else(|| l.strip_prefix("debug1: Server host certificate: "))
        })
        .unwrap_or("an unknown key");
    // A certificate's line goes on with its serial, ID and CA.
    let offered = offered.split(',').next().unwrap_or(offered);
    let (key_type, fingerprint) = offered.split_once(' ').unwrap_or((offered, ""));
    Some((key_type.to_string(), fingerprint.trim().to_string(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: &str, host: &str, port: u16, path: &str) -> Target {
        Target {
            user: user.into(),
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn ssh_urls_name_a_user_host_port_and_path_as_git_reads_them() {
        let cases = [
            (
                "ssh://deploy@127.0.0.1:2222/srv/r.git",
                target("deploy", "127.0.0.1", 2222, "/srv/r.git"),
            ),
            (
                "ssh://example.org/srv/r.git",
                target("git", "example.org", 22, "/srv/r.git"),
            ),
            ("ssh://git@[::1]:2200/r", target("git", "::1", 2200, "/r")),
            (
                "ssh://git@example.org/~/ops/r.git",
                target("git", "example.org", 22, "~/ops/r.git"),
            ),
            ("git+ssh://me@h/~me/r", target("me", "h", 22, "~me/r")),
            (
                "git@example.org:ops/deploy.git",
                target("git", "example.org", 22, "ops/deploy.git"),
            ),
            ("git@[::1]:ops/r.git", target("git", "::1", 22, "ops/r.git")),
        ];
        for (url, want) in cases {
            assert_eq!(Target::parse(url), Ok(want), "{url}");
        }
        assert_eq!(target("git", "::1", 2200, "/r").shown(), "[::1]:2200");
        assert_eq!(target("git", "h", 22, "/r").shown(), "h");
    }

    #[test]
    fn an_ssh_url_cannot_smuggle_options_or_commands() {
        for url in [
            "ssh://-oProxyCommand=touch%20x/r",
            "ssh://git@-oProxyCommand=x:22/r",
            "ssh://-l@host/r",
            "ssh://us;er@host/r",
            "ssh://git@ho st/r",
            "ssh://git@host/r\nrm -rf /",
            "ssh://git@host:99999/r",
            "ssh://git@host",
            "ssh://git:secret@host/r",
            "git@host:-oops",
            "-oProxyCommand=x:r",
        ] {
            assert!(Target::parse(url).is_err(), "{url:?} is refused");
            assert!(!Target::parse(url).unwrap_err().contains("secret"));
        }
        // A quote in the path stays inside the quoted argument.
        let context = Context {
            remote: crate::spec::remote::Remote {
                url: String::new(),
                ssh_key: Some("/dev/null".into()),
                ..Default::default()
            },
            rejection: Default::default(),
        };
        let argv = argv(&context, &target("git", "h", 22, "/r/it's!.git")).unwrap();
        assert_eq!(
            argv[argv.len() - 3..],
            ["--", "h", r"git-upload-pack '/r/it'\''s'\!'.git'"]
        );
        assert!(argv.contains(&"UserKnownHostsFile=/dev/null".to_string()));
    }

    #[test]
    fn a_refused_host_key_is_named_with_the_reason_ssh_gave() {
        let unknown = "OpenSSH_9.2p1\ndebug1: Connecting to 127.0.0.1 port 2222.\n\
            debug1: Server host key: ssh-ed25519 SHA256:abcDEF123\n\
            No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n\
            Host key verification failed.\n";
        let (key_type, fingerprint, reason) = refused_host_key(unknown).unwrap();
        assert_eq!(
            (key_type.as_str(), fingerprint.as_str()),
            ("ssh-ed25519", "SHA256:abcDEF123")
        );
        assert!(reason.contains("not in known_hosts"));
        let changed = "debug1: Server host key: ssh-ed25519 SHA256:xyz\n\
            @@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
            Host key verification failed.\n";
        assert!(
            refused_host_key(changed)
                .unwrap()
                .2
                .contains("does NOT match")
        );
        let revoked = "debug1: Server host key: ssh-ed25519 SHA256:xyz\n\
            @@@@@@@@@@@\n@       WARNING: REVOKED HOST KEY DETECTED!       @\n\
            The ED25519 host key for [h]:22 is marked as revoked.\n\
            Host key verification failed.\n";
        assert!(refused_host_key(revoked).unwrap().2.contains("@revoked"));
        let denied = "debug1: Server host key: ssh-ed25519 SHA256:xyz\n\
            debug1: Authentications that can continue: publickey\n\
            git@127.0.0.1: Permission denied (publickey).\n";
        assert_eq!(refused_host_key(denied), None);
        // What the server prints after the login is not ssh's verdict.
        let hook = "debug1: Server host key: ssh-ed25519 SHA256:xyz\n\
            Authenticated to h ([h]:22) using \"publickey\".\n\
            Host key verification failed.\n";
        assert_eq!(refused_host_key(hook), None);
        // Nor can its version string (printed before the key) name one.
        let version = "debug1: Remote protocol version 2.0, remote software version \
            x debug1: Server host key: ssh-ed25519 SHA256:FAKE\n\
            debug1: Server host key: ssh-ed25519 SHA256:real\n\
            No ED25519 host key is known for h and you have requested strict checking.\n\
            Host key verification failed.\n";
        assert_eq!(refused_host_key(version).unwrap().1, "SHA256:real");
        // Nor its banner, when the key was accepted and the login was not.
        let banner = "debug1: Server host key: ssh-ed25519 SHA256:real\n\
            Host key verification failed.\n\
            git@h: Permission denied (publickey).\n";
        assert_eq!(refused_host_key(banner), None);
        let certificate = "debug1: Server host certificate: ssh-ed25519-cert-v01@openssh.com \
            SHA256:cert, serial 1 ID \"h\" CA ssh-ed25519 SHA256:ca valid forever\n\
            No ED25519-CERT host key is known for h and you have requested strict checking.\n\
            Host key verification failed.\n";
        let (key_type, fingerprint, _) = refused_host_key(certificate).unwrap();
        assert_eq!(
            (key_type.as_str(), fingerprint.as_str()),
            ("ssh-ed25519-cert-v01@openssh.com", "SHA256:cert")
        );
        assert_eq!(
            said(denied),
            "git@127.0.0.1: Permission denied (publickey)."
        );
    }
}
