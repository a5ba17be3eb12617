//! OpenPGP commit signatures (`git commit -S` with gpg), verified with the
//! pgp crate against an armored keyring: the signing key (primary or a
//! signing subkey) must be in the keyring, bound by valid self-signatures,
//! not revoked, and not expired when the commit was signed.

use std::io::Cursor;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, Timestamp};

use super::signers::{Refused, Verified};

/// The OpenPGP certificates a host trusts.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<SignedPublicKey>,
}

/// The primary key of a certificate or one of its subkeys.
enum KeyRef<'a> {
    Primary(&'a pgp::packet::PublicKey),
    Sub(&'a pgp::packet::PublicSubkey),
}

/// A key that may have made a signature.
struct Candidate<'a> {
    key: KeyRef<'a>,
    fingerprint: String,
    key_id: String,
    created: u32,
    /// Seconds after `created` when it expires (binding self-signature).
    expires: Option<u32>,
    revoked: bool,
    owner: String,
}

/// Where each armored block of a keyring starts.
const BLOCK: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Parse an armored keyring: one or more public key blocks, each holding
/// one or more certificates (`gpg --armor --export` output, concatenated).
pub fn parse(text: &str) -> Result<Keyring, String> {
    let mut keys = Vec::new();
    for block in text.split(BLOCK).skip(1) {
        let block = format!("{BLOCK}{block}");
        let parsed = SignedPublicKey::from_armor_many(Cursor::new(block.into_bytes()))
            .map_err(|e| format!("cannot read the keyring: {e}"))?
            .0;
        keys.extend(parsed);
    }
    let mut certs = Vec::new();
    for key in keys {
        let key = key.map_err(|e| format!("cannot read a certificate: {e}"))?;
        key.verify_bindings().map_err(|e| {
            format!(
                "certificate {:X} has self-signatures that do not verify: {e}",
                key.primary_key.fingerprint()
            )
        })?;
        certs.push(key);
    }
    if certs.is_empty() {
        return Err("the keyring holds no public key".into());
    }
    Ok(Keyring { certs })
}

/// The newest signature of one of `kinds` among `sigs`.
fn newest<'a>(
    sigs: impl Iterator<Item = &'a Signature>,
    kinds: &[SignatureType],
) -> Option<&'a Signature> {
    sigs.filter(|s| s.typ().is_some_and(|t| kinds.contains(&t)))
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn expiry(sig: Option<&Signature>) -> Option<u32> {
    sig.and_then(|s| s.key_expiration_time())
        .map(|d| d.as_secs())
        .filter(|secs| *secs > 0)
}

impl Keyring {
    fn candidates(&self) -> Vec<Candidate<'_>> {
        let mut out = Vec::new();
        for cert in &self.certs {
            let owner = cert
                .details
                .users
                .first()
                .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
                .unwrap_or_else(|| format!("{:X}", cert.primary_key.fingerprint()));
            let certifications = [
                SignatureType::CertGeneric,
                SignatureType::CertPersona,
                SignatureType::CertCasual,
                SignatureType::CertPositive,
                SignatureType::Key,
            ];
            let primary_binding = newest(
                cert.details
                    .users
                    .iter()
                    .flat_map(|u| u.signatures.iter())
                    .chain(cert.details.direct_signatures.iter()),
                &certifications,
            );
            let primary_revoked = !cert.details.revocation_signatures.is_empty();
            let primary = &cert.primary_key;
            out.push(Candidate {
                key: KeyRef::Primary(primary),
                fingerprint: format!("{:X}", primary.fingerprint()),
                key_id: hex::encode_upper(primary.legacy_key_id()),
                created: primary.created_at().as_secs(),
                expires: expiry(primary_binding),
                revoked: primary_revoked,
                owner: owner.clone(),
            });
            for sub in &cert.public_subkeys {
                let binding = newest(sub.signatures.iter(), &[SignatureType::SubkeyBinding]);
                if !binding.is_some_and(|b| b.key_flags().sign()) {
                    continue;
                }
                let revoked = primary_revoked
                    || sub
                        .signatures
                        .iter()
                        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
                out.push(Candidate {
                    key: KeyRef::Sub(&sub.key),
                    fingerprint: format!("{:X}", sub.key.fingerprint()),
                    key_id: hex::encode_upper(sub.key.legacy_key_id()),
                    created: sub.key.created_at().as_secs(),
                    expires: expiry(binding),
                    revoked,
                    owner: owner.clone(),
                });
            }
        }
        out
    }
}

/// Verify an armored detached signature over `data` (a commit without its
/// signature) against `keyring`.
pub fn verify(keyring: &Keyring, armored: &str, data: &[u8]) -> Result<Verified, Refused> {
    let refuse = |fingerprint: Option<String>, reason: String| Refused {
        fingerprint,
        reason,
    };
    let (sig, _) = DetachedSignature::from_armor_single(Cursor::new(armored.trim().as_bytes()))
        .map_err(|e| refuse(None, format!("the OpenPGP signature cannot be read ({e})")))?;
    let sig = sig.signature;
    let issuers: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| format!("{f:X}"))
        .chain(sig.issuer_key_id().iter().map(hex::encode_upper))
        .collect();
    let named = issuers.first().cloned();
    let candidates = keyring.candidates();
    let matching: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            issuers.is_empty()
                || issuers.iter().any(|i| {
                    *i == c.fingerprint || c.fingerprint.ends_with(i.as_str()) || *i == c.key_id
                })
        })
        .collect();
    if matching.is_empty() {
        return Err(refuse(
            named,
            "signed by a key that is not in openpgp_certs".into(),
        ));
    }
    let signed_at = sig.created().map(|t: Timestamp| t.as_secs()).unwrap_or(0);
    let last = String::from("the signature does not match the commit's content");
    let mut last_fingerprint = named;
    for candidate in matching {
        let verified = match candidate.key {
            KeyRef::Primary(key) => sig.verify(key, data),
            KeyRef::Sub(key) => sig.verify(key, data),
        };
        if verified.is_err() {
            last_fingerprint = Some(candidate.fingerprint.clone());
            continue;
        }
        let fingerprint = Some(candidate.fingerprint.clone());
        if candidate.revoked {
            return Err(refuse(
                fingerprint,
                format!("{}'s key is revoked", candidate.owner),
            ));
        }
        if signed_at < candidate.created {
            return Err(refuse(
                fingerprint,
                "the signature is older than its key".into(),
            ));
        }
        if candidate
            .expires
            .is_some_and(|after| signed_at >= candidate.created.saturating_add(after))
        {
            return Err(refuse(
                fingerprint,
                format!(
                    "{}'s key had expired when the commit was signed",
                    candidate.owner
                ),
            ));
        }
        return Ok(Verified {
            signer: candidate.owner.clone(),
            fingerprint: candidate.fingerprint.clone(),
        });
    }
    Err(refuse(last_fingerprint, last))
}
