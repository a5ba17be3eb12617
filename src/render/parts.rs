//! Pieces of an app's desired state that need checking or hashing: shared
//! paths, the build key, health checks.

use std::path::Path;

use crate::desired::{HealthCheck, Probe, SourceFile};
use crate::error::InvalidError;
use crate::repo::{App, Health};

/// Shared paths are plain relative paths inside the app directory.
pub(super) fn shared_paths(origin: &str, app: &App) -> Result<Vec<String>, InvalidError> {
    let mut out = Vec::new();
    for path in app.shared.iter().flatten() {
        let plain = !path.is_empty()
            && !path.starts_with('/')
            && Path::new(path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: format!(
                    "shared path {path:?} must be relative, inside the app directory, without `..`"
                ),
            });
        }
        out.push(path.trim_end_matches('/').to_string());
    }
    Ok(out)
}

/// What a build depends on, hashed.
pub(super) fn build_key(files: &[SourceFile], app: &App) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.path.to_string_lossy().as_bytes());
        hash.update([0, file.executable as u8]);
        hash.update(Sha256::digest(&file.bytes));
    }
    let extra = format!("{:?} {:?} {:?}", app.build, app.user, app.shared);
    hash.update(extra.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

pub(super) fn health_check(
    origin: &str,
    app: &str,
    check: &Health,
) -> Result<HealthCheck, InvalidError> {
    let probe = match (&check.http, &check.tcp, &check.command) {
        (Some(url), None, None) => Probe::Http {
            url: url.clone(),
            status: check.status,
        },
        (None, Some(address), None) => Probe::Tcp {
            address: address.clone(),
        },
        (None, None, Some(argv)) if !argv.is_empty() => Probe::Command { argv: argv.clone() },
        _ => {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: "each health check needs exactly one of `http`, `tcp` or `command`".into(),
            });
        }
    };
    Ok(HealthCheck {
        app: app.to_string(),
        probe,
        timeout_ms: check.timeout * 1000,
        interval_ms: check.interval_ms,
    })
}
