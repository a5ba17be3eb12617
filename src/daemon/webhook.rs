//! The push webhook of `plumb run`: an HTTP listener that turns an
//! authenticated push notification into a reconcile trigger. GitHub's
//! `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature` (HMAC-SHA256 of the
//! body) and GitLab's `X-Gitlab-Token` are accepted; anything else is 401 and
//! triggers nothing. A burst of pushes is one reconcile.
//!
//! Slow or idle clients cannot hold it: headers must arrive within
//! `HEADER_TIMEOUT` and a whole request within `REQUEST_TIMEOUT`; bodies are
//! capped at `MAX_BODY`; connections are capped at `MAX_CONNECTIONS` (plumb
//! raises its open-file limit to hold them), and one request is served per
//! connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::daemon::Trigger;

/// Largest body accepted; forges send far less for a push.
pub const MAX_BODY: usize = 1 << 20;
/// Longest a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole request may take, body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections held open at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 4096;

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
    raise_open_files(MAX_CONNECTIONS as u64 + 256);
    let shared = Arc::new(Shared { secret, triggers });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (or a client that left): pause, go on.
                tracing::warn!("webhook: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream); // full: the newest is turned away, not the server
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(hook(&shared, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, connection).await;
        });
    }
}

/// Raise the soft limit of open files towards `want` (within the hard limit).
fn raise_open_files(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < want
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    }
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

async fn hook(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE),
    };
    if !authentic(&parts.headers, &body, &shared.secret) {
        tracing::warn!("webhook: missing or wrong signature; ignored");
        return reply(StatusCode::UNAUTHORIZED);
    }
    // A full channel means a reconcile is already pending: the burst coalesces.
    let _ = shared.triggers.try_send(Trigger::Webhook);
    reply(StatusCode::ACCEPTED)
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
            header.parse::<hyper::header::HeaderName>().unwrap(),
            value.parse().unwrap(),
        );
        headers
    }

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// POST `body` signed with `secret` to `port`; the status code.
    async fn push(port: u16, secret: &[u8], body: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!(
            "POST /hook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256={}\r\nContent-Length: {}\r\n\r\n{body}",
            sign(secret, body.as_bytes()),
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn a_signed_push_gets_through_a_thousand_idle_and_slow_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (triggers, mut received) = mpsc::channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, b"s3cret".to_vec(), triggers, async {
            let _ = stopped.await;
        }));
        // A slowloris: 1 000 connections, each sends half a header and waits.
        let mut idle = Vec::new();
        for _ in 0..1000 {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            idle.push(s);
        }
        let sent = std::time::Instant::now();
        assert_eq!(push(port, b"s3cret", "{}").await, 202);
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(received.try_recv().ok(), Some(Trigger::Webhook));
        assert_eq!(push(port, b"wrong", "{}").await, 401);
        // The slow clients are dropped once their headers are overdue.
        let mut first = idle.swap_remove(0);
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(HEADER_TIMEOUT * 3, first.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
            "an idle connection was still open after {:?}",
            HEADER_TIMEOUT * 3
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
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
