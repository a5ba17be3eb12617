//! A health check, validated: what plumb runs after a switch until it
//! passes or its deadline expires.

use serde::{Deserialize, Serialize};

/// One health check of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub app: String,
    pub probe: Probe,
    /// How long the check may keep failing before the deploy fails.
    pub timeout_ms: u64,
    /// Pause between attempts.
    pub interval_ms: u64,
    /// Command checks run as the app's user, like its hooks.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// GET this URL; the answer must have `status`.
    Http { url: String, status: u16 },
    /// Connect to `host:port`.
    Tcp { address: String },
    /// Run argv; exit 0 passes.
    Command { argv: Vec<String> },
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Probe::Http { url, status } => write!(f, "GET {url} answers {status}"),
            Probe::Tcp { address } => write!(f, "TCP connect to {address}"),
            Probe::Command { argv } => write!(f, "`{}` exits 0", argv.join(" ")),
        }
    }
}
