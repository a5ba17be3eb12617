//! A deploy repo's remote as the host config names it: the URL and the
//! credential files, and what can be read off a URL (host, port, whether it
//! is a local path). Pure data; `source` does the fetching.

use std::path::{Path, PathBuf};

/// Where to fetch from and with which credentials.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// A local path, `file://`, `ssh://` (or `user@host:path`) or `https://` URL.
    pub url: String,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// User name for https with a token (`x-access-token` if unset).
    pub username: Option<String>,
}

impl Remote {
    /// The server this remote is on (`None` for local paths).
    pub fn host(&self) -> Option<String> {
        if is_scp_like(&self.url) || self.url.starts_with("ssh://") {
            return ssh_host_port(&self.url).map(|(host, port)| format!("{host}:{port}"));
        }
        let url = url::Url::parse(&self.url).ok()?;
        Some(format!(
            "{}:{}",
            url.host_str()?,
            url.port_or_known_default().unwrap_or(0)
        ))
    }

    /// The URL without any `user:password@`, for messages and logs.
    pub fn shown(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(None);
                let _ = url.set_username("");
                url.to_string()
            }
            _ => without_password(&self.url),
        }
    }
}

/// Local paths become absolute so the mirror does not depend on the cwd.
pub fn normalize_url(url: &str) -> String {
    if url.contains("://") || is_scp_like(url) {
        return url.to_string();
    }
    std::fs::canonicalize(url)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| url.to_string())
}

/// `user@host:path`, git's short form of an ssh URL.
pub fn is_scp_like(url: &str) -> bool {
    match (url.find('@'), url.find(':')) {
        (Some(at), Some(colon)) => at < colon && !url.starts_with('/'),
        _ => false,
    }
}

/// `url` with the `user:password@` of a `scheme://` URL shown as `…@`
/// (even one the URL parser refuses); a user without a password stays.
pub fn without_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && authority[..at].contains(':')
        {
            return format!("{scheme}://…@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// An ssh URL taken apart as git does: `ssh://[user@]host[:port]/path`
/// (or `git+ssh://`, `ssh+git://`; `/~user/…` is a path in a home) or
/// the short form `[user@]host:path`, with `[…]` around an IPv6 host.
/// Nothing is checked here but the shape.
#[derive(Debug, PartialEq, Eq)]
pub struct SshUrl<'a> {
    pub user: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub path: &'a str,
}

impl<'a> SshUrl<'a> {
    pub fn parse(url: &'a str) -> Result<SshUrl<'a>, &'static str> {
        let Some((_, rest)) = url.split_once("://") else {
            // The host starts after the last `@` before the first `:` or `[`.
            let end = url.find([':', '[']).ok_or("no host")?;
            let (user, rest) = match url[..end].rfind('@') {
                Some(at) => (Some(&url[..at]), &url[at + 1..]),
                None => (None, url),
            };
            let (host, path) = match rest.strip_prefix('[') {
                Some(inner) => {
                    let (host, after) = inner.split_once(']').ok_or("an unclosed `[`")?;
                    (
                        host,
                        after.strip_prefix(':').ok_or("no `:` after the host")?,
                    )
                }
                None => rest.split_once(':').ok_or("no host")?,
            };
            return Ok(SshUrl {
                user,
                host,
                port: None,
                path,
            });
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = match path.strip_prefix('/') {
            Some(home) if home.starts_with('~') => home,
            _ => path,
        };
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, authority),
        };
        let (host, port) = match host_port.strip_prefix('[') {
            Some(inner) => {
                let (host, after) = inner.split_once(']').ok_or("an unclosed `[`")?;
                match after {
                    "" => (host, None),
                    after => (host, Some(after.strip_prefix(':').ok_or("junk after `]`")?)),
                }
            }
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| "a bad port"))
            .transpose()?;
        Ok(SshUrl {
            user,
            host,
            port,
            path,
        })
    }
}

/// Host and port of an ssh URL.
pub fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    let parts = SshUrl::parse(url).ok()?;
    Some((parts.host.to_string(), parts.port.unwrap_or(22)))
}

/// `ssh` as plumb runs it, to fetch or to publish: the host config's key
/// only, host keys pinned in `known_hosts` (never learned, never updated),
/// no user or system configuration, no agent, no forwarding, never a
/// prompt, bounded waits. The destination and command follow.
///
/// ssh splits option values at whitespace and expands `%` and `~` in file
/// names, so each path must be absolute and free of those (and of quotes).
pub fn ssh_command(key: &Path, known_hosts: &Path, port: u16) -> Result<Vec<String>, String> {
    for path in [key, known_hosts] {
        let text = path.display().to_string();
        if !path.is_absolute()
            || text.contains(['\'', '"', '\\', '%', '~'])
            || text.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{text:?}: a file ssh reads must be an absolute path without spaces, quotes, `%` or `~`"
            ));
        }
    }
    let mut argv = vec![
        "ssh".to_string(),
        "-F".into(),
        "/dev/null".into(),
        "-p".into(),
        port.to_string(),
    ];
    for option in [
        format!("IdentityFile={}", key.display()),
        "IdentitiesOnly=yes".into(),
        "IdentityAgent=none".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "StrictHostKeyChecking=yes".into(),
        "UpdateHostKeys=no".into(),
        "CheckHostIP=no".into(),
        "BatchMode=yes".into(),
        "ForwardAgent=no".into(),
        "ForwardX11=no".into(),
        "ClearAllForwardings=yes".into(),
        "PermitLocalCommand=no".into(),
        "ControlMaster=no".into(),
        "ControlPath=none".into(),
        "ConnectTimeout=15".into(),
        "ServerAliveInterval=15".into(),
        "ServerAliveCountMax=4".into(),
    ] {
        argv.extend(["-o".to_string(), option]);
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_ssh_urls() {
        assert_eq!(
            ssh_host_port("ssh://git@127.0.0.1:2222/srv/r.git"),
            Some(("127.0.0.1".into(), 2222))
        );
        assert_eq!(
            ssh_host_port("git@example.org:ops/deploy.git"),
            Some(("example.org".into(), 22))
        );
        assert_eq!(
            ssh_host_port("ssh://[::1]:2200/r"),
            Some(("::1".into(), 2200))
        );
        // Two IPv6 hosts in the short form are two hosts (credentials
        // follow the host).
        assert_eq!(
            ssh_host_port("git@[2001:db8::1]:r"),
            Some(("2001:db8::1".into(), 22))
        );
        assert_ne!(
            ssh_host_port("git@[2001:db8::1]:r"),
            ssh_host_port("git@[2001:db8::bad]:r")
        );
        assert_eq!(
            ssh_host_port("git@host:foo]:bar"),
            Some(("host".into(), 22))
        );
    }

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        for (url, shown) in [
            ("ssh://deploy:secret@host:99999/r", "ssh://…@host:99999/r"),
            ("ssh://u:p@ss@host/r", "ssh://host/r"),
            ("ssh://u:p@ss@host:99999/r", "ssh://…@host:99999/r"),
            (
                "https://x:tok@git.example.org/r.git",
                "https://git.example.org/r.git",
            ),
            ("ssh://git@host/r", "ssh://git@host/r"),
        ] {
            let remote = Remote {
                url: url.into(),
                ..Remote::default()
            };
            assert_eq!(remote.shown(), shown, "{url}");
        }
    }

    #[test]
    fn ssh_gets_only_files_it_cannot_split_or_expand() {
        let key = Path::new("/etc/plumb/id_ed25519");
        let argv = ssh_command(key, Path::new("/etc/plumb/known_hosts"), 2222).unwrap();
        assert_eq!(argv[..5], ["ssh", "-F", "/dev/null", "-p", "2222"]);
        for option in [
            "IdentityFile=/etc/plumb/id_ed25519",
            "UserKnownHostsFile=/etc/plumb/known_hosts",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "IdentityAgent=none",
        ] {
            assert!(argv.iter().any(|a| a == option), "{option} in {argv:?}");
        }
        for bad in [
            "/etc/plumb/my key",
            "/etc/plumb/%h",
            "~/.ssh/id",
            "relative/key",
            "/etc/plumb/a'b",
            "/etc/plumb/a\nb",
        ] {
            let error = ssh_command(Path::new(bad), Path::new("/etc/plumb/known_hosts"), 22);
            assert!(error.is_err(), "{bad:?} is refused");
        }
    }
}
