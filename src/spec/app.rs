//! The typed sections of an app in `deploy.yaml`: service, site, backup,
//! health checks, hooks and extra files, with their defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A systemd service unit for the app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// What runs. For a `container` app, the command inside the container
    /// (optional: the image's `CMD` otherwise).
    pub command: Option<String>,
    pub description: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub working_directory: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default = "defaults::restart")]
    pub restart: String,
    #[serde(default = "defaults::restart_sec")]
    pub restart_sec: u32,
    /// Paths the service may write despite `ProtectSystem=strict`.
    #[serde(default)]
    pub writable_paths: Vec<String>,
    /// Sandboxing directives (NoNewPrivileges, ProtectSystem=strict, …).
    #[serde(default = "defaults::yes", deserialize_with = "strict::bool")]
    pub hardening: bool,
    #[serde(default = "defaults::after")]
    pub after: Vec<String>,
    /// `ExecReload=`: when only the app's config files changed, plumb reloads
    /// the service with this instead of restarting it.
    pub reload: Option<String>,
}

/// The app runs as a container: an image built on the host with podman
/// from a Containerfile in the app's source, tagged with the hash of its
/// build context, run by the app's systemd unit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// The Containerfile, relative to the app's source directory.
    #[serde(default = "defaults::containerfile")]
    pub file: String,
    /// `--build-arg NAME=value` for the image build.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// Whether the build's `RUN` steps may reach the network (default: no).
    #[serde(default, deserialize_with = "strict::bool")]
    pub build_network: bool,
    /// Ports published on 127.0.0.1 only.
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// Host files or directories mounted read-only at the same path inside
    /// (e.g. the app's rendered config). The app's shared directory is
    /// always mounted read-write.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Memory limit in MiB.
    #[serde(default = "defaults::memory_mib")]
    pub memory_mib: u32,
    /// Most processes the container may have.
    #[serde(default = "defaults::pids")]
    pub pids: u32,
}

/// `127.0.0.1:<host>` on the host to `<container>` inside.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedPort {
    pub host: u16,
    pub container: u16,
}

/// An nginx server for the app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub server_name: Vec<String>,
    pub tls: Option<Tls>,
    /// With TLS: answer plain HTTP with a redirect to HTTPS.
    #[serde(default = "defaults::yes", deserialize_with = "strict::bool")]
    pub redirect_http: bool,
    #[serde(default)]
    pub listen: Listen,
    /// Directory served as static files (`try_files`).
    pub root: Option<String>,
    #[serde(default)]
    pub proxy: Vec<Proxy>,
    /// Location prefixes of fingerprinted assets, cached for a year as immutable.
    #[serde(default)]
    pub immutable: Vec<String>,
    /// Where the static files under `root` are published after each
    /// successful deploy (a CDN origin, a static file server).
    #[serde(default)]
    pub publish: Vec<Publish>,
}

/// One publish target: exactly one of `dir` or `ssh`. The target serves
/// `<path>/current`, a link swapped atomically to `<path>/releases/<id>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// A directory on this host (e.g. a CDN origin mount); must be inside
    /// the host config's `allow_paths`.
    pub dir: Option<String>,
    /// `user@host:/path` over ssh, with the host config's ssh key and its
    /// host key pinned in known_hosts (as for git).
    pub ssh: Option<String>,
    #[serde(default = "defaults::ssh_port")]
    pub port: u16,
    /// Published versions kept on the target (the served one included).
    #[serde(default = "defaults::publish_keep")]
    pub keep: u32,
    /// Seconds one publish may take.
    #[serde(default = "defaults::publish_timeout")]
    pub timeout: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub certificate: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Address to bind, e.g. `127.0.0.1`; empty means all addresses.
    #[serde(default)]
    pub address: String,
    #[serde(default = "defaults::http")]
    pub http: u16,
    #[serde(default = "defaults::https")]
    pub https: u16,
    /// With no `address`: listen on IPv6 (`[::]`) as well as IPv4.
    #[serde(default = "defaults::yes", deserialize_with = "strict::bool")]
    pub ipv6: bool,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            address: String::new(),
            http: defaults::http(),
            https: defaults::https(),
            ipv6: true,
        }
    }
}

/// A location passed to a local backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub location: String,
    pub port: u16,
    #[serde(default = "defaults::localhost")]
    pub host: String,
    /// HTTP basic authentication in front of it.
    pub basic_auth: Option<BasicAuth>,
}

/// HTTP basic authentication: a realm, and an htpasswd file that is one of
/// the app's secrets (readable by nginx's worker user only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub realm: String,
    /// The `name` of one of the app's `secrets`.
    pub secret: String,
}

/// Nightly (or any crontab schedule) backups of the app's data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// A crontab(5) schedule, e.g. `0 3 * * *`.
    pub schedule: String,
    /// SQLite databases, copied online with sqlite3's backup API.
    #[serde(default)]
    pub sqlite: Vec<String>,
    /// Files and directories archived with tar.
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default = "defaults::keep")]
    pub keep: u32,
    pub destination: String,
}

/// A file rendered from a template (or copied from the repo) to a host path.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    /// A template name, looked up in `templates/` then the built-ins.
    pub template: Option<String>,
    /// A file of the deploy repo copied as it is.
    pub source: Option<String>,
    /// Octal permission bits, e.g. `0644` (the default) or `0600`.
    #[serde(default)]
    pub mode: Mode,
}

/// A secret of the deploy repo, encrypted to the host with age: decrypted
/// at deploy time onto tmpfs (`/run/plumb/secrets/…`), never into a
/// release, and reached by the app as
/// `<state_dir>/current/secrets/<app>/<name>`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// The file's name (`htpasswd`, `db-password`).
    pub name: String,
    /// The `.age` file in the deploy repo.
    pub source: String,
    /// Who may read it (default: the app's user).
    pub owner: Option<String>,
    /// Octal permission bits (default `0400`).
    #[serde(default = "defaults::secret_mode")]
    pub mode: Mode,
}

/// Permission bits, written in YAML as an octal string such as `0640`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Mode(pub u32);

impl Default for Mode {
    fn default() -> Self {
        Mode(0o644)
    }
}

impl From<Mode> for String {
    fn from(mode: Mode) -> String {
        format!("{:04o}", mode.0)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if bits & 0o7022 != 0 && bits <= 0o7777 => {
                Err(serde::de::Error::custom(format!(
                    "mode {text:?} is refused: no setuid/setgid/sticky bits and no group or world write (use e.g. 0644, 0640, 0755)"
                )))
            }
            Ok(bits) if bits <= 0o7777 && (3..=4).contains(&digits.len()) => Ok(Mode(bits)),
            _ => Err(serde::de::Error::custom(format!(
                "mode {text:?} is not an octal permission such as 0644"
            ))),
        }
    }
}

mod defaults {
    pub fn restart() -> String {
        "on-failure".into()
    }
    pub fn restart_sec() -> u32 {
        5
    }
    pub fn yes() -> bool {
        true
    }
    pub fn after() -> Vec<String> {
        vec!["network.target".into()]
    }
    pub fn http() -> u16 {
        80
    }
    pub fn https() -> u16 {
        443
    }
    pub fn localhost() -> String {
        "127.0.0.1".into()
    }
    pub fn secret_mode() -> super::Mode {
        super::Mode(0o400)
    }
    pub fn keep() -> u32 {
        7
    }
    pub fn ssh_port() -> u16 {
        22
    }
    pub fn publish_keep() -> u32 {
        3
    }
    pub fn publish_timeout() -> u64 {
        600
    }
    pub fn containerfile() -> String {
        "Containerfile".into()
    }
    pub fn memory_mib() -> u32 {
        512
    }
    pub fn pids() -> u32 {
        256
    }
    pub fn status() -> u16 {
        200
    }
    pub fn health_timeout() -> u64 {
        30
    }
    pub fn health_interval() -> u64 {
        500
    }
}

/// One health check: exactly one of `http`, `tcp` or `command`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// URL to GET, e.g. `http://127.0.0.1:8000/health`.
    pub http: Option<String>,
    /// Expected HTTP status.
    #[serde(default = "defaults::status")]
    pub status: u16,
    /// `host:port` to connect to.
    pub tcp: Option<String>,
    /// argv to run; exit status 0 passes.
    pub command: Option<Vec<String>>,
    /// Seconds the check may keep failing before the deploy is rolled back.
    #[serde(default = "defaults::health_timeout")]
    pub timeout: u64,
    /// Milliseconds between attempts.
    #[serde(default = "defaults::health_interval")]
    pub interval_ms: u64,
}

/// An app's source in another git repository.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    /// Where to fetch it (same transports and credentials as the deploy repo).
    pub url: String,
    /// A tag or a full 40-character commit id. Branches are refused: a
    /// release must be reproducible.
    pub rev: String,
}

/// Commands run around the switch.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// After a backup of the shared data, before the switch (e.g. database
    /// migrations). A failure means no switch.
    #[serde(default)]
    pub pre_switch: Vec<String>,
    /// After the switch and restarts, before health checks. A failure rolls back.
    #[serde(default)]
    pub post_switch: Vec<String>,
}

/// Booleans are `true` or `false`, unquoted: `"false"` is a string, and a
/// string where a switch is expected is an error, never a silent `true`.
pub mod strict {
    use serde::Deserializer;
    use serde::de::{self, Visitor};

    struct Strict;

    impl<'de> Visitor<'de> for Strict {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("true or false (unquoted)")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Strict)
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        bool(d).map(Some)
    }
}
