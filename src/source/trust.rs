//! Whether a target commit may be deployed at all, decided from git alone
//! before anything is rendered: every commit from the deployed one
//! (exclusive) to the target (inclusive) carries a valid signature from a
//! key the host trusts (when the host config names any), and the target
//! descends from the deployed commit (no silent rewinds).

use git2::Oid;

use super::Mirror;
use super::openpgp::{self, Keyring};
use super::signers::{self, Refused, Signer, Verified};
use crate::plan::short;

/// Most commits one run verifies: a host that is this far behind is told so.
pub const MAX_COMMITS: usize = 100_000;

/// The keys the host trusts (`allowed_signers`, `openpgp_certs`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub ssh: Option<Vec<Signer>>,
    pub openpgp: Option<Keyring>,
}

impl Policy {
    /// Whether commits must be signed at all.
    pub fn enforced(&self) -> bool {
        self.ssh.is_some() || self.openpgp.is_some()
    }

    /// Check one commit's signature.
    fn check(&self, signature: Option<&str>, data: &[u8], time: i64) -> Result<Verified, Refused> {
        let Some(armored) = signature else {
            return Err(Refused {
                fingerprint: None,
                reason: "the commit is not signed".into(),
            });
        };
        if armored
            .trim_start()
            .starts_with("-----BEGIN SSH SIGNATURE-----")
        {
            return match &self.ssh {
                Some(signers) => signers::verify(signers, armored, data, time),
                None => Err(Refused {
                    fingerprint: None,
                    reason: "signed with an SSH key, but no allowed_signers file is configured"
                        .into(),
                }),
            };
        }
        if armored
            .trim_start()
            .starts_with("-----BEGIN PGP SIGNATURE-----")
        {
            return match &self.openpgp {
                Some(keyring) => openpgp::verify(keyring, armored, data),
                None => Err(Refused {
                    fingerprint: None,
                    reason: "signed with OpenPGP, but no openpgp_certs keyring is configured"
                        .into(),
                }),
            };
        }
        Err(Refused {
            fingerprint: None,
            reason: "the signature is neither SSH nor OpenPGP (x509 is not supported)".into(),
        })
    }
}

/// A commit that may not be deployed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// A commit in the range has no valid signature from a trusted key.
    Signature {
        commit: String,
        signer: Option<String>,
        reason: String,
    },
    /// The target does not descend from the deployed commit.
    Rewind { target: String, deployed: String },
    /// The range cannot be walked (too long, or an object is missing).
    Range { message: String },
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Untrusted::Signature {
                commit,
                signer,
                reason,
            } => {
                write!(f, "commit {commit} fails the signature policy: {reason}")?;
                if let Some(key) = signer {
                    write!(f, " (key {key})")?;
                }
                Ok(())
            }
            Untrusted::Rewind { target, deployed } => write!(
                f,
                "commit {target} does not descend from the deployed commit {deployed}: the branch was \
                 rewound or replaced (a force-push). Nothing was changed. If this is intended, run \
                 `plumb reconcile --once --allow-rewind` once, or `plumb rollback` to go back to a release"
            ),
            Untrusted::Range { message } => write!(f, "{message}"),
        }
    }
}

impl Mirror {
    /// Refuse `target` unless it descends from `deployed` (when known).
    pub fn check_ancestry(&self, deployed: &str, target: &str) -> Result<(), Untrusted> {
        let rewind = || Untrusted::Rewind {
            target: short(target).to_string(),
            deployed: short(deployed).to_string(),
        };
        if deployed == target {
            return Ok(());
        }
        let (Ok(deployed_oid), Ok(target_oid)) = (Oid::from_str(deployed), Oid::from_str(target))
        else {
            return Err(rewind());
        };
        // A deployed commit the mirror no longer has was rewritten away.
        match self.repo.graph_descendant_of(target_oid, deployed_oid) {
            Ok(true) => Ok(()),
            _ => Err(rewind()),
        }
    }

    /// Check the signature of every commit reachable from `target` and not
    /// from `deployed` (all of the target's own when nothing is deployed:
    /// then only the target itself). Returns who signed each, oldest first.
    pub fn verify_range(
        &self,
        deployed: Option<&str>,
        target: &str,
        policy: &Policy,
    ) -> Result<Vec<(String, Verified)>, Untrusted> {
        let range = |message: String| Untrusted::Range { message };
        let target_oid = Oid::from_str(target).map_err(|e| range(e.message().into()))?;
        let commits: Vec<Oid> = match deployed {
            None => vec![target_oid],
            Some(from) => {
                let mut walk = self.repo.revwalk().map_err(|e| range(e.message().into()))?;
                walk.push(target_oid)
                    .map_err(|e| range(e.message().into()))?;
                if let Ok(from) = Oid::from_str(from) {
                    // A missing deployed commit is a rewind, caught by check_ancestry.
                    let _ = walk.hide(from);
                }
                walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
                    .map_err(|e| range(e.message().into()))?;
                let mut commits = Vec::new();
                for oid in walk {
                    commits.push(oid.map_err(|e| range(e.message().into()))?);
                    if commits.len() > MAX_COMMITS {
                        return Err(range(format!(
                            "more than {MAX_COMMITS} commits to verify since the deployed one"
                        )));
                    }
                }
                commits
            }
        };
        let mut verified = Vec::new();
        for oid in commits {
            let commit = self
                .repo
                .find_commit(oid)
                .map_err(|e| range(e.message().into()))?;
            let time = commit.committer().when().seconds();
            let (signature, data) = match self.repo.extract_signature(&oid, None) {
                Ok((sig, data)) => (
                    Some(String::from_utf8_lossy(&sig).into_owned()),
                    data.to_vec(),
                ),
                Err(_) => (None, Vec::new()),
            };
            let who = policy
                .check(signature.as_deref(), &data, time)
                .map_err(|refused| Untrusted::Signature {
                    commit: short(&oid.to_string()).to_string(),
                    signer: refused.fingerprint,
                    reason: refused.reason,
                })?;
            verified.push((oid.to_string(), who));
        }
        Ok(verified)
    }
}
