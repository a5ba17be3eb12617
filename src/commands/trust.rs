//! The host's trust material, loaded once per run: the files the host
//! config names are checked (root's, not writable by others) before they
//! are believed, and the signature policy is built from them.

use std::path::Path;

use crate::error::{ConfigError, Error};
use crate::source::trust::Policy;
use crate::source::{openpgp, signers};
use crate::spec::settings::{Settings, check_trusted_file};

/// Check every file the host config names that holds keys or credentials.
pub fn check_files(settings: &Settings) -> Result<(), ConfigError> {
    let remote = settings.remote.as_ref();
    let files = [
        remote.and_then(|r| r.ssh_key.as_deref()),
        remote.and_then(|r| r.known_hosts.as_deref()),
        remote.and_then(|r| r.token_file.as_deref()),
        settings.trust.allowed_signers.as_deref(),
        settings.trust.openpgp_certs.as_deref(),
        settings.webhook.as_ref().map(|w| w.secret_file.as_path()),
    ];
    for path in files.into_iter().flatten() {
        // A missing file is reported where it is needed, with its purpose.
        if path.exists() {
            check_trusted_file(path)?;
        }
    }
    let identity = &settings.trust.age_identity;
    if identity.exists() {
        check_trusted_file(identity)?;
    }
    Ok(())
}

fn read(path: &Path, what: &str) -> Result<String, ConfigError> {
    check_trusted_file(path)?;
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("{what} {}: {e}", path.display())))
}

/// The signature policy the host config asks for.
pub fn policy(settings: &Settings) -> Result<Policy, Error> {
    let mut policy = Policy::default();
    if let Some(path) = &settings.trust.allowed_signers {
        let text = read(path, "allowed_signers")?;
        let parsed = signers::parse(&text).map_err(|e| {
            ConfigError::Invalid(format!("allowed_signers {}: {e}", path.display()))
        })?;
        policy.ssh = Some(parsed);
    }
    if let Some(path) = &settings.trust.openpgp_certs {
        let text = read(path, "openpgp_certs")?;
        let parsed = openpgp::parse(&text)
            .map_err(|e| ConfigError::Invalid(format!("openpgp_certs {}: {e}", path.display())))?;
        policy.openpgp = Some(parsed);
    }
    Ok(policy)
}
