//! OpenSSH `known_hosts` files: which keys are pinned for a host.
//! Plain, wildcard (`*`, `?`, `!`) and hashed (`|1|salt|hash`) host
//! patterns are understood; `@revoked` keys are refused; there is no
//! trust-on-first-use.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The verdict on a host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// The host has pinned keys, and this is not one of them.
    Mismatch,
    /// The host has no entry at all.
    Unknown,
    /// The key is marked `@revoked`.
    Revoked,
}

/// OpenSSH's fingerprint of a key blob: `SHA256:<base64>`.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// Judge `blob` (the raw key the server offered) for `host` and `port`
/// against the text of a known_hosts file.
pub fn check(known_hosts: &str, host: &str, port: u16, blob: &[u8]) -> Verdict {
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut pinned = false;
    let mut trusted = false;
    for line in known_hosts.lines() {
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        if first.starts_with('#') {
            continue;
        }
        let marker = first.strip_prefix('@');
        if marker.is_some() {
            match fields.next() {
                Some(next) => first = next,
                None => continue,
            }
        }
        let (Some(_key_type), Some(key)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(first, &name) {
            continue;
        }
        let Ok(key) = STANDARD.decode(key) else {
            continue;
        };
        match marker {
            Some("revoked") if key == blob => return Verdict::Revoked,
            Some(_) => {}
            None => {
                pinned = true;
                trusted |= key == blob;
            }
        }
    }
    match (trusted, pinned) {
        (true, _) => Verdict::Trusted,
        (false, true) => Verdict::Mismatch,
        (false, false) => Verdict::Unknown,
    }
}

/// Whether a comma-separated pattern list (or a hashed name) matches `name`.
fn hosts_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, name) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, name),
        }
    }
    matched
}

fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, case-insensitive as in OpenSSH.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn blob() -> Vec<u8> {
        STANDARD.decode(KEY).unwrap()
    }

    #[test]
    fn plain_and_bracketed_entries() {
        let file = format!(
            "[127.0.0.1]:2222 ssh-ed25519 {KEY}\nexample.org,*.example.net ssh-ed25519 {KEY}\n"
        );
        assert_eq!(check(&file, "127.0.0.1", 2222, &blob()), Verdict::Trusted);
        assert_eq!(check(&file, "127.0.0.1", 22, &blob()), Verdict::Unknown);
        assert_eq!(
            check(&file, "git.example.net", 22, &blob()),
            Verdict::Trusted
        );
        assert_eq!(check(&file, "example.org", 22, b"other"), Verdict::Mismatch);
    }

    #[test]
    fn hashed_entries() {
        // `ssh-keygen -H` form of "[127.0.0.1]:2222" with a fixed salt.
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY}",
            STANDARD.encode(salt),
            STANDARD.encode(hash)
        );
        assert_eq!(check(&line, "127.0.0.1", 2222, &blob()), Verdict::Trusted);
        assert_eq!(check(&line, "127.0.0.2", 2222, &blob()), Verdict::Unknown);
    }

    #[test]
    fn revoked_and_negated() {
        let file = format!("@revoked * ssh-ed25519 {KEY}\nhost ssh-ed25519 {KEY}\n");
        assert_eq!(check(&file, "host", 22, &blob()), Verdict::Revoked);
        let file = format!("*,!bad ssh-ed25519 {KEY}\n");
        assert_eq!(check(&file, "bad", 22, &blob()), Verdict::Unknown);
    }

    #[test]
    fn fingerprint_is_openssh_style() {
        assert!(fingerprint(&blob()).starts_with("SHA256:"));
        assert!(!fingerprint(&blob()).ends_with('='));
    }
}
