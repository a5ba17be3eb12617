//! git's ssh and https transports, given to libgit2 in place of its own so
//! that no C TLS or SSH code runs inside plumb: ssh is the system's OpenSSH
//! client in a process of its own ([`ssh`]), https is git's smart HTTP
//! protocol over rustls ([`https`]). Local paths and `file://` stay
//! libgit2's.
//!
//! libgit2 builds a transport from the URL alone, so the remote's settings
//! (key, pinned host keys, token) reach it through the fetch now running
//! ([`activate`]); fetches in one process run one at a time.

mod https;
mod ssh;

use std::sync::{Arc, Mutex, Once};

use git2::transport::{Service, Transport};

use crate::error::FetchError;
use crate::spec::remote::Remote;

/// The fetch a transport serves: its remote, and a refusal to report as is.
struct Context {
    remote: Remote,
    rejection: Mutex<Option<FetchError>>,
}

impl Context {
    /// Keep `error` to report it whole, and give libgit2 its message.
    fn reject(&self, error: FetchError) -> String {
        let message = error.to_string();
        *self.rejection.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        message
    }
}

static ACTIVE: Mutex<Option<Arc<Context>>> = Mutex::new(None);

/// The transports' view of one fetch; dropping it ends the fetch.
pub(super) struct Active(Arc<Context>);

/// Make `remote` the one the transports serve until the result is dropped.
pub(super) fn activate(remote: &Remote) -> Active {
    register();
    let context = Arc::new(Context {
        remote: remote.clone(),
        rejection: Mutex::new(None),
    });
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(context.clone());
    Active(context)
}

impl Active {
    /// A refusal a transport made, with everything it knew (the host key
    /// it was offered, say), rather than libgit2's one-line message.
    pub(super) fn rejection(&self) -> Option<FetchError> {
        self.0
            .rejection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        if active.as_ref().is_some_and(|a| Arc::ptr_eq(a, &self.0)) {
            *active = None;
        }
    }
}

fn active() -> Result<Arc<Context>, git2::Error> {
    ACTIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| git2::Error::from_str("no fetch is running to use this transport"))
}

/// Only fetching is supported: plumb never pushes.
fn fetch_only(action: Service) -> Result<(), git2::Error> {
    match action {
        Service::UploadPackLs | Service::UploadPack => Ok(()),
        _ => Err(git2::Error::from_str("plumb only fetches")),
    }
}

fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for scheme in ["ssh", "ssh+git", "git+ssh"] {
            // SAFETY: registration runs once, before the first fetch of
            // this process creates a transport.
            let done = unsafe {
                git2::transport::register(scheme, |remote| {
                    Transport::smart(remote, false, ssh::Ssh::new(active()?))
                })
            };
            if let Err(e) = done {
                tracing::error!("cannot register the ssh transport: {}", e.message());
            }
        }
        // SAFETY: as above.
        let done = unsafe {
            git2::transport::register("https", |remote| {
                Transport::smart(remote, true, https::Https::new(active()?))
            })
        };
        if let Err(e) = done {
            tracing::error!("cannot register the https transport: {}", e.message());
        }
    });
}
