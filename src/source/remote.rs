//! Remotes: URLs, the pinned ssh host key check, and credentials read from
//! the files the host config names.

use std::path::PathBuf;

use git2::{Cred, CredentialType};

use super::known_hosts::{self, Verdict};
use crate::error::FetchError;
use crate::spec::remote::{Remote, ssh_host_port};

/// The server part of a URL (`host:port`), for comparing where credentials go.
pub(super) fn host_of(url: &str) -> Option<String> {
    Remote {
        url: url.to_string(),
        ..Remote::default()
    }
    .host()
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
            "and there is no known_hosts file (/etc/plumb/known_hosts is read when it exists; ssh.known_hosts in the host config names another)",
            PathBuf::from(crate::spec::settings::KNOWN_HOSTS),
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
        if !key.exists() {
            return Err(git2::Error::from_str(&format!(
                "ssh key file {} does not exist (ssh.key_file in the host config)",
                key.display()
            )));
        }
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
