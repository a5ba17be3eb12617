//! The push webhook of `plumb run`: an HTTP listener that turns an
//! authenticated push notification into a reconcile trigger. GitHub's
//! `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature` (HMAC-SHA256 of the
//! body) and GitLab's `X-Gitlab-Token` are accepted; anything else is 401 and
//! triggers nothing. Bodies are bounded; a burst of pushes is one reconcile.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::daemon::Trigger;

/// Largest body accepted; forges send far less for a push.
pub const MAX_BODY: usize = 1 << 20;

struct Shared {
    secret: Vec<u8>,
    triggers: mpsc::Sender<Trigger>,
}

/// Serve on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    secret: Vec<u8>,
    triggers: mpsc::Sender<Trigger>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared { secret, triggers });
    let app = Router::new()
        .fallback(hook)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    if !authentic(&headers, &body, &shared.secret) {
        tracing::warn!("webhook: missing or wrong signature; ignored");
        return StatusCode::UNAUTHORIZED;
    }
    // A full channel means a reconcile is already pending: the burst coalesces.
    let _ = shared.triggers.try_send(Trigger::Webhook);
    StatusCode::ACCEPTED
}

/// Whether the request carries a valid signature (or token) for `secret`.
pub fn authentic(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(signature) = header("x-hub-signature-256") {
        return signature
            .strip_prefix("sha256=")
            .is_some_and(|hex| hmac_matches(secret, body, hex));
    }
    if let Some(signature) = header("x-gitea-signature").or_else(|| header("x-forgejo-signature")) {
        return hmac_matches(secret, body, signature);
    }
    if let Some(token) = header("x-gitlab-token") {
        return constant_time_eq(token.as_bytes(), secret);
    }
    false
}

fn hmac_matches(secret: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(header: &str, value: String) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header.parse::<axum::http::HeaderName>().unwrap(),
            value.parse().unwrap(),
        );
        headers
    }

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn github_gitea_and_gitlab_are_accepted_and_nothing_else() {
        let (secret, body) = (
            b"s3cret".as_slice(),
            br#"{"ref":"refs/heads/main"}"#.as_slice(),
        );
        assert!(authentic(
            &signed(
                "x-hub-signature-256",
                format!("sha256={}", sign(secret, body))
            ),
            body,
            secret
        ));
        assert!(authentic(
            &signed("x-gitea-signature", sign(secret, body)),
            body,
            secret
        ));
        assert!(authentic(
            &signed("x-gitlab-token", "s3cret".into()),
            body,
            secret
        ));

        assert!(!authentic(&HeaderMap::new(), body, secret), "no signature");
        assert!(!authentic(
            &signed(
                "x-hub-signature-256",
                format!("sha256={}", sign(b"other", body))
            ),
            body,
            secret
        ));
        assert!(
            !authentic(
                &signed("x-hub-signature-256", sign(secret, body)),
                body,
                secret
            ),
            "sha256= prefix required"
        );
        assert!(!authentic(
            &signed("x-gitea-signature", sign(secret, b"tampered")),
            body,
            secret
        ));
        assert!(!authentic(
            &signed("x-gitlab-token", "s3cre".into()),
            body,
            secret
        ));
    }
}
