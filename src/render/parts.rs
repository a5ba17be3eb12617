//! Pieces of an app's desired state that need checking or hashing: shared
//! paths, the build key, image tags, health checks.

use std::path::Path;

use super::desired::SourceFile;
use crate::error::InvalidError;
use crate::spec::deploy::{App, Container, Health};
use crate::spec::health::{HealthCheck, Probe};
use crate::spec::paths::AllowedRoots;

/// Shared paths are plain relative paths inside the app directory.
pub(super) fn shared_paths(origin: &str, app: &App) -> Result<Vec<String>, InvalidError> {
    let mut out = Vec::new();
    for path in app.shared.iter().flatten() {
        // One plain name: nested paths would make root create directories
        // inside a tree the app user controls.
        let plain = !path.is_empty()
            && !path.contains('/')
            && Path::new(path)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(InvalidError::Repo {
                file: origin.to_string(),
                message: format!(
                    "shared path {path:?} must be one plain name inside the app directory (like `content`)"
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
        // The content's id (git's object id, or a SHA-256): no need to
        // read a source to know whether it changed.
        hash.update(file.blob.id().as_bytes());
    }
    let extra = format!("{:?} {:?} {:?}", app.build, app.user, app.shared);
    hash.update(extra.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// The image an app's container runs: `localhost/plumb-<app>:<hash>`, the
/// hash taken over its build context (the build key: source, steps, user)
/// and how the image is built (Containerfile, build args, network).
pub(super) fn image_tag(app: &str, build_key: &str, container: &Container) -> String {
    use sha2::{Digest, Sha256};
    let recipe = format!(
        "{build_key} {:?} {:?} {}",
        container.file, container.build_args, container.build_network
    );
    let hash = hex::encode(&Sha256::digest(recipe.as_bytes())[..8]);
    format!("localhost/plumb-{app}:{hash}")
}

pub(super) fn health_check(
    origin: &str,
    app: &str,
    user: Option<&str>,
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
        user: user.map(str::to_string),
        probe,
        timeout_ms: check.timeout * 1000,
        interval_ms: check.interval_ms,
    })
}

/// A backup section the rendered scripts can run safely: at least one
/// backup kept, distinct database names, sources the app may have backed up
/// (its shared data, or an allowed root), a destination where plumb may
/// write (below /var/backups, or an allowed root), and the two apart.
pub(super) fn check_backup(
    origin: &str,
    app: &str,
    backup: &crate::spec::deploy::Backup,
    roots: &AllowedRoots,
) -> Result<(), InvalidError> {
    let fail = |message: String| {
        Err(InvalidError::Repo {
            file: origin.to_string(),
            message: format!("backup: {message}"),
        })
    };
    if backup.keep == 0 {
        return fail("`keep` must be at least 1".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for db in &backup.sqlite {
        let path = roots.check_backup_source(&format!("{origin}: backup.sqlite"), db, app)?;
        if !names.insert(path.file_name().map(|n| n.to_os_string())) {
            return fail(format!(
                "two databases are named {:?}; their copies would collide",
                path.file_name().unwrap_or_default()
            ));
        }
    }
    let destination = roots.check_backup_destination(
        &format!("{origin}: backup.destination"),
        &backup.destination,
    )?;
    for p in &backup.paths {
        let path = roots.check_backup_source(&format!("{origin}: backup.paths"), p, app)?;
        if destination.starts_with(&path) || path.starts_with(&destination) {
            return fail(format!(
                "the destination {} and the backed-up path {} overlap",
                destination.display(),
                path.display()
            ));
        }
    }
    Ok(())
}
