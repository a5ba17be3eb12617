//! Secrets: decrypted with the host's age identity onto tmpfs, per release
//! (`/run/plumb/secrets/<release>/<app>/<name>`), owned by whoever may read
//! them; the release holds only a `secrets` link there, so `current` flips
//! secrets with everything else and a rollback finds its own. Plaintext
//! never lands in a release, the journal, a log, `plan` or `status`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{ApplyError, Blame};
use crate::host::{Host, ProcessError};
use crate::render::desired::DesiredSecret;
use crate::spec::layout::Layout;

/// Where a release's secrets live (a host path; tmpfs on a real host).
pub const SECRETS_DIR: &str = "/run/plumb/secrets";

/// How plumb can read the secrets of this host.
pub enum Keys {
    /// The host's age identities.
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
    /// A sandbox without an identity: placeholders stand in (and say so).
    Placeholders,
}

impl Keys {
    /// Read the identity file's text (AGE-SECRET-KEY-1… lines).
    pub fn parse(text: &str) -> Result<Keys, String> {
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|e| format!("cannot read the age identity: {e}"))?;
        let identities = file
            .into_identities()
            .map_err(|e| format!("cannot read the age identity: {e}"))?;
        if identities.is_empty() {
            return Err("the age identity file holds no identity".into());
        }
        Ok(Keys::Identities(identities))
    }
}

/// The directory of one release's secrets.
pub fn release_dir(id: &str) -> PathBuf {
    Path::new(SECRETS_DIR).join(id)
}

fn failed(key: &str, message: String, blame: Blame) -> ApplyError {
    ApplyError::Step {
        step: format!("secret {key}"),
        blame,
        source: Box::new(ProcessError::User {
            user: "(secret)".into(),
            problem: message,
        }),
    }
}

/// Decrypt `ciphertext` (binary or armored age) with `keys`.
fn decrypt(keys: &Keys, key: &str, ciphertext: &[u8]) -> Result<Vec<u8>, ApplyError> {
    let identities = match keys {
        Keys::Identities(identities) => identities,
        Keys::Placeholders => {
            return Ok(
                format!("placeholder for secret {key}: this sandbox has no age identity\n")
                    .into_bytes(),
            );
        }
    };
    let commit = |e: String| {
        failed(
            key,
            format!(
                "cannot be decrypted with this host's age identity ({e}); encrypt it to this host's public key"
            ),
            Blame::Commit,
        )
    };
    let reader = age::armor::ArmoredReader::new(ciphertext);
    let decryptor = age::Decryptor::new(reader).map_err(|e| commit(e.to_string()))?;
    let mut plain = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| commit(e.to_string()))?;
    let mut out = Vec::new();
    plain
        .read_to_end(&mut out)
        .map_err(|e| commit(e.to_string()))?;
    Ok(out)
}

/// Write the secrets of release `id` where its `secrets` link points, each
/// owned by its reader with its mode; files already there are kept (a
/// release's secrets never change).
pub fn materialize(
    host: &dyn Host,
    id: &str,
    secrets: &BTreeMap<String, DesiredSecret>,
    keys: &Keys,
) -> Result<(), ApplyError> {
    let files = host.files();
    let root = release_dir(id);
    for dir in [Path::new(SECRETS_DIR), root.as_path()] {
        files
            .create_dir_all(dir)
            .and_then(|_| files.set_mode(dir, 0o711))
            .map_err(ApplyError::io("create", dir))?;
    }
    for (key, secret) in secrets {
        let dir = root.join(&secret.app);
        files
            .create_dir_all(&dir)
            .and_then(|_| files.set_mode(&dir, 0o711))
            .map_err(ApplyError::io("create", &dir))?;
        let path = dir.join(&secret.name);
        if files.stat(&path).is_ok() {
            continue;
        }
        let owner = host
            .users()
            .account_for(Some(&secret.owner))
            .map_err(|e| failed(key, format!("its owner cannot be used: {e}"), Blame::Host))?;
        let plain = decrypt(keys, key, &secret.ciphertext)?;
        // Written under a temporary name, given to its reader, then renamed:
        // never readable by anyone else, never half-written.
        let tmp = dir.join(format!(".{}.tmp", secret.name));
        let _ = files.remove_file(&tmp);
        files
            .write_new(&tmp, &plain, secret.mode)
            .and_then(|_| files.chown(&tmp, &owner, false, false))
            .and_then(|_| files.rename(&tmp, &path))
            .map_err(ApplyError::io("write", &path))?;
    }
    Ok(())
}

/// Whether every secret of release `id` is in place (after a reboot, /run
/// is empty).
pub fn present(
    host: &dyn Host,
    id: &str,
    secrets: &BTreeMap<String, crate::plan::release::SecretEntry>,
) -> bool {
    let root = release_dir(id);
    secrets
        .keys()
        .all(|key| host.files().stat(&root.join(key)).is_ok())
}

/// The `secrets` link inside a release directory being written.
pub fn link_into(host: &dyn Host, release_tmp: &Path, id: &str) -> Result<(), ApplyError> {
    let files = host.files();
    let link = release_tmp.join("secrets");
    files
        .symlink(&files.real(&release_dir(id)), &link)
        .map_err(ApplyError::io("symlink", &link))
}

/// Remove the secrets of releases that no longer exist.
pub fn prune(host: &dyn Host, layout: &Layout) {
    let files = host.files();
    let Ok(ids) = files.list_dir(Path::new(SECRETS_DIR)) else {
        return;
    };
    let releases = super::release::list(host, layout).unwrap_or_default();
    for id in ids {
        if !releases.contains(&id) {
            let _ = files.remove_dir_all(&release_dir(&id));
        }
    }
}
