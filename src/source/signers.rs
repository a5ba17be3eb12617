//! SSH commit signatures (`git -c gpg.format=ssh commit -S`): git's
//! `gpg.ssh.allowedSignersFile` format, and SSHSIG verification with the
//! ssh-key crate — ed25519, ECDSA (P-256, P-384, P-521) and RSA keys.

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// One line of an allowed signers file.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Who the key belongs to (`alice@example.org`, comma-separated patterns).
    pub principals: String,
    /// Namespaces the key may sign for (`None`: any).
    pub namespaces: Option<Vec<String>>,
    /// Unix times the key is valid from and before.
    pub valid_after: Option<i64>,
    pub valid_before: Option<i64>,
    pub key: PublicKey,
}

/// A signature that verified, and whose it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub signer: String,
    pub fingerprint: String,
}

/// Why a signature was refused, and the key it named (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub fingerprint: Option<String>,
    pub reason: String,
}

/// Parse an allowed signers file. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<Signer>, String> {
    let mut signers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let signer = parse_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        signers.push(signer);
    }
    Ok(signers)
}

/// Split off the next whitespace-separated field, keeping quoted runs whole.
fn field(rest: &str) -> (&str, &str) {
    let rest = rest.trim_start();
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&rest[..i], &rest[i..]),
            _ => {}
        }
    }
    (rest, "")
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-")
}

fn parse_line(line: &str) -> Result<Signer, String> {
    let (principals, rest) = field(line);
    let (next, mut rest) = field(rest);
    let mut signer_options = None;
    let key_type = if is_key_type(next) {
        next
    } else {
        signer_options = Some(next);
        let (key_type, after) = field(rest);
        rest = after;
        key_type
    };
    let (blob, _comment) = field(rest);
    if !is_key_type(key_type) || blob.is_empty() {
        return Err("expected: principals [options] key-type base64-key".into());
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {blob}"))
        .map_err(|e| format!("cannot read the {key_type} key: {e}"))?;
    let mut signer = Signer {
        principals: principals.trim_matches('"').to_string(),
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key,
    };
    for option in split_options(signer_options.unwrap_or_default()) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let value = value.trim_matches('"');
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                signer.namespaces = Some(value.split(',').map(str::to_string).collect());
            }
            "valid-after" => signer.valid_after = Some(timestamp(value)?),
            "valid-before" => signer.valid_before = Some(timestamp(value)?),
            "cert-authority" => {
                return Err(
                    "cert-authority entries are not supported; list the signing keys themselves"
                        .into(),
                );
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(signer)
}

/// Options are comma-separated, with commas allowed inside quotes.
fn split_options(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// `YYYYMMDD[HHMM[SS]][Z]`, as ssh-keygen reads it; taken as UTC.
fn timestamp(text: &str) -> Result<i64, String> {
    let digits = text.trim_end_matches(['Z', 'z']);
    let bad = || format!("{text:?} is not a time like 20260101 or 202601011200Z");
    let date =
        NaiveDate::parse_from_str(digits.get(..8).ok_or_else(bad)?, "%Y%m%d").map_err(|_| bad())?;
    let time = match &digits[8..] {
        "" => date.and_hms_opt(0, 0, 0),
        hm if hm.len() == 4 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M").ok(),
        hms if hms.len() == 6 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Utc.from_utc_datetime(&time).timestamp())
}

/// Verify an SSHSIG over `data` (a commit without its signature), made at
/// `time` (the commit's committer time), against `signers`, as git does:
/// namespace `git`, a listed key, within its validity window.
pub fn verify(
    signers: &[Signer],
    armored: &str,
    data: &[u8],
    time: i64,
) -> Result<Verified, Refused> {
    let refuse = |fingerprint: Option<String>, reason: String| Refused {
        fingerprint,
        reason,
    };
    let sig = SshSig::from_pem(armored.trim())
        .map_err(|e| refuse(None, format!("the SSH signature cannot be read ({e})")))?;
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let known: Vec<&Signer> = signers
        .iter()
        .filter(|s| s.key.key_data() == sig.public_key())
        .collect();
    if known.is_empty() {
        return Err(refuse(
            Some(fingerprint),
            "signed by a key that is not in allowed_signers".into(),
        ));
    }
    let mut last = String::new();
    for signer in known {
        if signer
            .namespaces
            .as_ref()
            .is_some_and(|n| !n.iter().any(|n| n == "git"))
        {
            last = format!(
                "{}'s key may not sign git commits (namespaces)",
                signer.principals
            );
            continue;
        }
        if signer.valid_after.is_some_and(|after| time < after) {
            last = format!(
                "{}'s key was not valid yet when the commit was made",
                signer.principals
            );
            continue;
        }
        if signer.valid_before.is_some_and(|before| time >= before) {
            last = format!(
                "{}'s key had expired when the commit was made",
                signer.principals
            );
            continue;
        }
        return match signer.key.verify("git", data, &sig) {
            Ok(()) => Ok(Verified {
                signer: signer.principals.clone(),
                fingerprint,
            }),
            Err(ssh_key::Error::Namespace) => Err(refuse(
                Some(fingerprint),
                format!(
                    "the signature is for namespace {:?}, not git",
                    sig.namespace()
                ),
            )),
            Err(_) => Err(refuse(
                Some(fingerprint),
                "the signature does not match the commit's content".into(),
            )),
        };
    }
    Err(refuse(Some(fingerprint), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn reads_git_allowed_signers_lines() {
        let text = format!(
            "# release managers\nalice@example.org {KEY} laptop\n\
             \"bob@example.org,carol@example.org\" namespaces=\"git,file\",valid-after=\"20260101\",valid-before=\"202701011200Z\" {KEY}\n"
        );
        let signers = parse(&text).unwrap();
        assert_eq!(signers.len(), 2);
        assert_eq!(signers[0].principals, "alice@example.org");
        assert_eq!(signers[1].principals, "bob@example.org,carol@example.org");
        assert_eq!(
            signers[1].namespaces,
            Some(vec!["git".to_string(), "file".to_string()])
        );
        assert_eq!(signers[1].valid_after, Some(1_767_225_600));
        assert_eq!(signers[1].valid_before, Some(1_798_804_800));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for bad in [
            format!("ops cert-authority {KEY}"),
            format!("ops valid-after=\"tomorrow\" {KEY}"),
            "ops ssh-ed25519 notbase64".to_string(),
            "just-a-name".to_string(),
        ] {
            let err = parse(&bad).unwrap_err();
            assert!(err.starts_with("line 1:"), "{bad}: {err}");
        }
    }
}
