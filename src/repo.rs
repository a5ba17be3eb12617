//! Deploy repo format, version 1: `deploy.yaml` plus an optional
//! `hosts/<hostname>.yaml` overlay, parsed into typed structs and merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::InvalidError;
use crate::tree::Tree;
use crate::yaml;

/// The only format version this plumb understands.
pub const VERSION: u32 = 1;

/// `deploy.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployFile {
    /// Format version; must be 1.
    pub version: u32,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub apps: BTreeMap<String, App>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// `hosts/<hostname>.yaml`: merged over `deploy.yaml` for that host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub apps: BTreeMap<String, App>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// One application and everything the host runs for it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// `false` removes the app from this host (useful in an overlay).
    pub enabled: Option<bool>,
    /// The system user the app runs as.
    pub user: Option<String>,
    /// A directory of the deploy repo copied to `<current>/app/<name>/`.
    pub source: Option<String>,
    pub service: Option<Service>,
    pub site: Option<Site>,
    pub backup: Option<Backup>,
    pub files: Option<Vec<FileSpec>>,
    /// Checks that must pass after every switch, or the deploy rolls back.
    pub health: Option<Vec<Health>>,
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

/// A systemd service unit for the app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub command: String,
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
    #[serde(default = "defaults::yes")]
    pub hardening: bool,
    #[serde(default = "defaults::after")]
    pub after: Vec<String>,
    /// `ExecReload=`: when only the app's config files changed, plumb reloads
    /// the service with this instead of restarting it.
    pub reload: Option<String>,
}

/// An nginx server for the app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub server_name: Vec<String>,
    pub tls: Option<Tls>,
    /// With TLS: answer plain HTTP with a redirect to HTTPS.
    #[serde(default = "defaults::yes")]
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
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            address: String::new(),
            http: defaults::http(),
            https: defaults::https(),
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
    pub fn keep() -> u32 {
        7
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

/// What a host should run: `deploy.yaml` with this host's overlay applied.
#[derive(Debug, Clone)]
pub struct DeployInput {
    pub hostname: String,
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Enabled apps only.
    pub apps: BTreeMap<String, App>,
    pub files: Vec<FileSpec>,
}

/// Read `deploy.yaml` and `hosts/<hostname>.yaml` from `tree` and merge them.
pub fn load(tree: &Tree, hostname: &str) -> Result<DeployInput, InvalidError> {
    let text = tree
        .read_text("deploy.yaml")?
        .ok_or_else(|| InvalidError::Repo {
            file: "deploy.yaml".into(),
            message: "not found at the top of the deploy repo (check --path / `path:`)".into(),
        })?;
    let base: DeployFile = yaml::parse("deploy.yaml", &text)?;
    if base.version != VERSION {
        return Err(InvalidError::Repo {
            file: "deploy.yaml".into(),
            message: format!(
                "version {} is not supported; this plumb reads version {VERSION}",
                base.version
            ),
        });
    }
    let overlay_name = format!("hosts/{hostname}.yaml");
    let overlay: HostFile = match tree.read_text(&overlay_name)? {
        Some(text) => yaml::parse(&overlay_name, &text)?,
        None => HostFile::default(),
    };
    let input = merge(base, overlay, hostname);
    for name in input.apps.keys() {
        check_app_name(name)?;
    }
    Ok(input)
}

/// Overlay rules: `vars` merge deeply (the host wins), an app's sections
/// (`service`, `site`, `backup`, `files`, …) replace the base's one by one, and
/// `files` are added, replacing base entries with the same path.
fn merge(base: DeployFile, host: HostFile, hostname: &str) -> DeployInput {
    let mut vars = base.vars;
    for (key, value) in host.vars {
        merge_value(vars.entry(key).or_insert(serde_json::Value::Null), value);
    }
    let mut apps = base.apps;
    for (name, over) in host.apps {
        let app = apps.entry(name).or_default();
        macro_rules! take {
            ($($field:ident),*) => { $( if over.$field.is_some() { app.$field = over.$field; } )* };
        }
        take!(enabled, user, source, service, site, backup, files, health);
    }
    apps.retain(|_, app| app.enabled != Some(false));
    let mut files = base.files;
    for file in host.files {
        files.retain(|f| f.path != file.path);
        files.push(file);
    }
    DeployInput {
        hostname: hostname.to_string(),
        vars,
        apps,
        files,
    }
}

fn merge_value(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(into), serde_json::Value::Object(from)) => {
            for (key, value) in from {
                merge_value(into.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

/// App names become unit names and paths: keep them plain.
fn check_app_name(name: &str) -> Result<(), InvalidError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(InvalidError::Repo {
            file: "deploy.yaml".into(),
            message: format!(
                "app name {name:?} must start with a-z and contain only a-z, 0-9, - and _"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    fn tree(files: &[(&str, &str)]) -> Tree {
        let mut t = Tree::default();
        for (path, text) in files {
            t.insert(
                (*path).into(),
                Entry::File {
                    bytes: text.as_bytes().to_vec(),
                    executable: false,
                },
            );
        }
        t
    }

    #[test]
    fn modes_and_no_are_kept_as_written() {
        let t = tree(&[(
            "deploy.yaml",
            "version: 1\nvars:\n  answer: no\nfiles:\n  - path: /etc/nginx/x\n    source: x\n    mode: 0640\n",
        )]);
        let input = load(&t, "h").unwrap();
        assert_eq!(input.files[0].mode, Mode(0o640));
        assert_eq!(input.vars["answer"], serde_json::json!("no"));
    }

    #[test]
    fn overlay_merges_vars_and_replaces_sections() {
        let t = tree(&[
            (
                "deploy.yaml",
                "version: 1\nvars: {a: {x: 1, y: 2}}\napps:\n  web: {user: web, source: app}\n  old: {user: o}\n",
            ),
            (
                "hosts/h1.yaml",
                "vars: {a: {y: 3}}\napps:\n  web: {user: www}\n  old: {enabled: false}\n",
            ),
        ]);
        let input = load(&t, "h1").unwrap();
        assert_eq!(input.vars["a"], serde_json::json!({"x": 1, "y": 3}));
        assert_eq!(input.apps["web"].user.as_deref(), Some("www"));
        assert_eq!(input.apps["web"].source.as_deref(), Some("app"));
        assert!(!input.apps.contains_key("old"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let t = tree(&[("deploy.yaml", "version: 1\napps:\n  web:\n    usr: x\n")]);
        let err = load(&t, "h").unwrap_err().to_string();
        assert!(err.starts_with("deploy.yaml:4:"), "{err}");
        let t = tree(&[("deploy.yaml", "version: 1\nfiles: [\n")]);
        assert!(
            load(&t, "h")
                .unwrap_err()
                .to_string()
                .starts_with("deploy.yaml:")
        );
    }
}
