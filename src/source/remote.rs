//! Remotes: URLs, the pinned ssh host key check, and credentials read from
//! the files the host config names.

use std::path::PathBuf;

use git2::{Cred, CredentialType};

use crate::error::FetchError;
use crate::known_hosts::{self, Verdict};

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
            _ => self.url.clone(),
        }
    }
}

/// Local paths become absolute so the mirror does not depend on the cwd.
pub(super) fn normalize_url(url: &str) -> String {
    if url.contains("://") || is_scp_like(url) {
        return url.to_string();
    }
    std::fs::canonicalize(url)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| url.to_string())
}

/// `user@host:path`, git's short form of an ssh URL.
fn is_scp_like(url: &str) -> bool {
    match (url.find('@'), url.find(':')) {
        (Some(at), Some(colon)) => at < colon && !url.starts_with('/'),
        _ => false,
    }
}

/// Host and port of an ssh URL.
fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if is_scp_like(url) {
        let rest = &url[url.find('@')? + 1..];
        return Some((rest[..rest.find(':')?].to_string(), 22));
    }
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed
        .host_str()?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    Some((host, parsed.port().unwrap_or(22)))
}

/// Accept the server key only if known_hosts pins it for this host and port.
pub(super) fn check_host_key(
    remote: &Remote,
    url: &str,
    blob: &[u8],
    key_type: &str,
) -> Result<(), FetchError> {
    let (host, port) = ssh_host_port(url).ok_or_else(|| FetchError::Remote {
        remote: remote.shown(),
        message: "cannot tell the ssh host and port from the URL".into(),
    })?;
    let shown = if port == 22 {
        host.clone()
    } else {
        format!("[{host}]:{port}")
    };
    let fingerprint = known_hosts::fingerprint(blob);
    let reject = |reason: &str, path: PathBuf| FetchError::HostKey {
        host: shown.clone(),
        key_type: key_type.to_string(),
        fingerprint: fingerprint.clone(),
        reason: reason.to_string(),
        known_hosts: path,
    };
    let Some(path) = &remote.known_hosts else {
        return Err(reject(
            "and no known_hosts file is configured (ssh.known_hosts in the host config)",
            PathBuf::from("/etc/plumb/known_hosts"),
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|source| FetchError::Credential {
        path: path.clone(),
        source,
    })?;
    match known_hosts::check(&text, &host, port, blob) {
        Verdict::Trusted => Ok(()),
        Verdict::Mismatch => Err(reject(
            "which does NOT match the key pinned for this host (possible man-in-the-middle, or the server key changed)",
            path.clone(),
        )),
        Verdict::Unknown => Err(reject(
            "which is not in known_hosts (plumb never trusts on first use)",
            path.clone(),
        )),
        Verdict::Revoked => Err(reject("which is marked @revoked", path.clone())),
    }
}

/// Answer libgit2's request for credentials from the configured files.
pub(super) fn credentials(
    remote: &Remote,
    user: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(user.unwrap_or("git"));
    }
    if allowed.contains(CredentialType::SSH_KEY) {
        let key = remote.ssh_key.as_ref().ok_or_else(|| {
            git2::Error::from_str(
                "the server wants an ssh key: set ssh.key_file in the host config",
            )
        })?;
        return Cred::ssh_key(user.unwrap_or("git"), None, key, None);
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        if !remote.url.starts_with("https://") {
            return Err(git2::Error::from_str(
                "refusing to send the token over a transport other than https",
            ));
        }
        let file = remote.token_file.as_ref().ok_or_else(|| {
            git2::Error::from_str(
                "the server wants credentials: set https.token_file in the host config",
            )
        })?;
        let token = std::fs::read_to_string(file).map_err(|e| {
            git2::Error::from_str(&format!("cannot read token file {}: {e}", file.display()))
        })?;
        let user = remote.username.as_deref().unwrap_or("x-access-token");
        return Cred::userpass_plaintext(user, token.trim());
    }
    Err(git2::Error::from_str(
        "the server asked for an unsupported kind of credentials",
    ))
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
    }
}
