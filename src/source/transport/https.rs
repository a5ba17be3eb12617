//! git's smart HTTP protocol over rustls: `GET …/info/refs` lists the refs,
//! `POST …/git-upload-pack` brings the pack. Certificates are checked
//! against the system's CA bundle (or `SSL_CERT_FILE`); the token goes to
//! the configured server only, as basic auth; redirects are refused.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream};
use ureq::Agent;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::{Context, fetch_only};
use crate::host::stream::escape_controls;

/// The most a request of plumb's may hold (the wants and haves of a fetch).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

pub(super) struct Https {
    context: Arc<Context>,
    agent: OnceLock<Agent>,
}

impl Https {
    pub(super) fn new(context: Arc<Context>) -> Https {
        Https {
            context,
            agent: OnceLock::new(),
        }
    }
}

impl SmartSubtransport for Https {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        fetch_only(action)?;
        let agent = self.agent.get_or_init(agent).clone();
        let mut parsed = url::Url::parse(url).map_err(|e| git2::Error::from_str(&e.to_string()))?;
        let authorization =
            authorization(&self.context, &parsed).map_err(|e| git2::Error::from_str(&e))?;
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let base = parsed.as_str().trim_end_matches('/').to_string();
        let (url, post) = match action {
            Service::UploadPackLs => (format!("{base}/info/refs?service=git-upload-pack"), false),
            _ => (format!("{base}/git-upload-pack"), true),
        };
        Ok(Box::new(HttpsStream {
            agent,
            url,
            post,
            authorization,
            request: Vec::new(),
            response: None,
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// An agent that trusts the system's CAs, follows no redirect and never
/// waits without bound.
fn agent() -> Agent {
    let found = rustls_native_certs::load_native_certs();
    let roots: Vec<Certificate<'static>> = found
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        tracing::warn!("no CA certificate found to check https servers against{why}");
    }
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build();
    Agent::config_builder()
        .tls_config(tls)
        .max_redirects(0)
        // As libgit2 did: no proxy from the environment, direct to the server.
        .proxy(None)
        .http_status_as_error(false)
        .user_agent(concat!("git/2.0 (plumb ", env!("CARGO_PKG_VERSION"), ")"))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(300)))
        .build()
        .new_agent()
}

/// One request: what libgit2 writes is its body, what it reads the answer.
struct HttpsStream {
    agent: Agent,
    url: String,
    post: bool,
    authorization: Option<String>,
    request: Vec<u8>,
    response: Option<ureq::BodyReader<'static>>,
}

impl HttpsStream {
    fn send(&mut self) -> Result<ureq::BodyReader<'static>, String> {
        let authorization = &self.authorization;
        let result = if self.post {
            let mut request = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/x-git-upload-pack-request")
                .header("Accept", "application/x-git-upload-pack-result");
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            request.send(&self.request[..])
        } else {
            let mut request = self.agent.get(&self.url);
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            request.call()
        };
        let response = result.map_err(|e| {
            let text = e.to_string();
            if text.contains("certificate") {
                format!(
                    "{text} (the server's certificate must chain to a CA in the system's bundle, \
                     or in SSL_CERT_FILE)"
                )
            } else {
                text
            }
        })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        match status {
            200 => {}
            300..=399 => {
                return Err(format!(
                    "the server answered with a redirect (HTTP {status}) to {:?}: plumb follows \
                     no redirect; set the repo URL to where the repository is",
                    header("Location")
                ));
            }
            401 | 403 if authorization.is_none() => {
                return Err(format!(
                    "the server wants credentials (HTTP {status}): set https.token_file in the host config"
                ));
            }
            401 | 403 => {
                return Err(format!(
                    "authentication failed: the server refused the credentials (HTTP {status})"
                ));
            }
            _ => return Err(format!("the server answered HTTP {status}")),
        }
        let wanted = if self.post {
            "application/x-git-upload-pack-result"
        } else {
            "application/x-git-upload-pack-advertisement"
        };
        let content_type = header("Content-Type");
        if !content_type.starts_with(wanted) {
            return Err(format!(
                "the server answered {content_type:?}, not {wanted:?}: plumb speaks git's smart HTTP only"
            ));
        }
        Ok(response.into_body().into_reader())
    }
}

/// `Basic` credentials for `url`: the token file's, or the password the
/// URL holds; none for a server other than the configured one.
fn authorization(context: &Context, url: &url::Url) -> Result<Option<String>, String> {
    let remote = &context.remote;
    let configured = url::Url::parse(&remote.url).ok();
    let same_server = configured.as_ref().is_some_and(|c| {
        c.scheme() == "https"
            && c.host_str() == url.host_str()
            && c.port_or_known_default() == url.port_or_known_default()
    });
    if !same_server {
        return Ok(None);
    }
    let from_url = (!url.username().is_empty()).then(|| url.username().to_string());
    let pair = match (&remote.token_file, url.password()) {
        (Some(file), _) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read token file {}: {e}", file.display()))?;
            let user = remote
                .username
                .clone()
                .or(from_url)
                .unwrap_or_else(|| "x-access-token".into());
            format!("{user}:{}", token.trim())
        }
        (None, Some(password)) => format!("{}:{password}", from_url.unwrap_or_default()),
        (None, None) => return Ok(None),
    };
    Ok(Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )))
}

impl Read for HttpsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            // What the server (or its certificate) said reaches libgit2's C
            // strings: escaped.
            let sent = self
                .send()
                .map_err(|e| io::Error::other(escape_controls(&e)))?;
            self.response = Some(sent);
        }
        self.response.as_mut().expect("sent above").read(buf)
    }
}

impl Write for HttpsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.response.is_some() || self.request.len() + buf.len() > MAX_REQUEST {
            return Err(io::Error::other(
                "the request is too large, or already sent",
            ));
        }
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
