//! Deploy repo format, version 1: `deploy.yaml` plus an optional
//! `hosts/<hostname>.yaml` overlay, parsed into typed structs and merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::app::*;
use super::overlay::{HostFile, merge};
use super::tree::Tree;
use super::yaml;
use crate::error::InvalidError;

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
    /// Refuse to deploy a host without its own `hosts/<hostname>.yaml`
    /// (so a misspelt host name never gets the base configuration).
    #[serde(default, deserialize_with = "super::app::strict::bool")]
    pub require_overlay: bool,
}

/// One application and everything the host runs for it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// `false` removes the app from this host (useful in an overlay).
    #[serde(default, deserialize_with = "super::app::strict::option")]
    pub enabled: Option<bool>,
    /// The system user the app runs as.
    pub user: Option<String>,
    /// A directory of the deploy repo copied to `<current>/app/<name>/`.
    pub source: Option<String>,
    /// Or another git repository, pinned to a tag or a full commit id.
    pub git: Option<GitSource>,
    pub service: Option<Service>,
    /// Run the service as a container built from the app's source.
    pub container: Option<Container>,
    pub site: Option<Site>,
    pub backup: Option<Backup>,
    pub files: Option<Vec<FileSpec>>,
    /// Checks that must pass after every switch, or the deploy rolls back.
    pub health: Option<Vec<Health>>,
    /// Commands run in the app's release directory, as its user, when the
    /// app's source or steps changed; the release is only switched to if
    /// they all succeed.
    pub build: Option<Vec<String>>,
    /// Seconds each build step or hook may take.
    pub timeout: Option<u64>,
    /// Paths inside the app directory that live in the app's shared
    /// directory instead and survive every release (data, uploads).
    pub shared: Option<Vec<String>>,
    /// Commands run around the switch, as the app's user.
    pub hooks: Option<Hooks>,
    /// Secrets encrypted to the host (age), decrypted at deploy time.
    pub secrets: Option<Vec<Secret>>,
    /// Create `user` as a system user if it does not exist.
    #[serde(default, deserialize_with = "super::app::strict::option")]
    pub create_user: Option<bool>,
}

/// What a host should run: `deploy.yaml` with this host's overlay applied.
#[derive(Debug, Clone)]
pub struct DeployInput {
    pub hostname: String,
    /// The overlay applied (`hosts/<hostname>.yaml`), if there was one.
    pub overlay: Option<String>,
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
    check_size("deploy.yaml", &text)?;
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
    let (overlay, applied): (HostFile, _) = match tree.read_text(&overlay_name)? {
        Some(text) => {
            check_size(&overlay_name, &text)?;
            (yaml::parse(&overlay_name, &text)?, Some(overlay_name))
        }
        None if base.require_overlay => {
            return Err(InvalidError::NoOverlay {
                hostname: hostname.to_string(),
                file: overlay_name,
            });
        }
        None => (HostFile::default(), None),
    };
    let input = merge(base, overlay, hostname, applied);
    for (name, app) in &input.apps {
        check_app_name(name)?;
        super::validate::app(name, app)?;
    }
    Ok(input)
}

/// Largest `deploy.yaml` or overlay plumb reads.
pub const MAX_YAML_BYTES: usize = 1 << 20;

fn check_size(file: &str, text: &str) -> Result<(), InvalidError> {
    if text.len() > MAX_YAML_BYTES {
        return Err(InvalidError::Repo {
            file: file.to_string(),
            message: format!("is larger than {MAX_YAML_BYTES} bytes"),
        });
    }
    Ok(())
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

    fn tree(files: &[(&str, &str)]) -> Tree {
        let mut t = Tree::default();
        for (path, text) in files {
            t.insert_bytes(path, text.as_bytes());
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
    fn a_quoted_boolean_is_an_error_not_true() {
        for (field, yaml) in [
            (
                "enabled",
                "version: 1\napps:\n  web: {enabled: \"false\"}\n",
            ),
            (
                "create_user",
                "version: 1\napps:\n  web: {user: w, create_user: \"yes\"}\n",
            ),
            (
                "hardening",
                "version: 1\napps:\n  web: {service: {command: x, hardening: \"no\"}}\n",
            ),
        ] {
            let err = load(&tree(&[("deploy.yaml", yaml)]), "h")
                .unwrap_err()
                .to_string();
            assert!(err.contains("true or false"), "{field}: {err}");
        }
        let t = tree(&[(
            "deploy.yaml",
            "version: 1\napps:\n  web: {enabled: false}\n",
        )]);
        assert!(load(&t, "h").unwrap().apps.is_empty());
    }

    #[test]
    fn every_field_that_lands_in_a_file_is_checked_and_named() {
        let app = |body: &str| format!("version: 1\napps:\n  web:\n{body}");
        for (body, needle) in [
            (
                "    service: {command: \"/bin/x\\nExecStartPre=/bin/evil\"}\n",
                "apps.web.service.command",
            ),
            ("    user: root\n", "apps.web.user: root is refused"),
            ("    user: \"-rf\"\n", "apps.web.user"),
            (
                "    service: {command: x, environment: {\"A B\": x}}\n",
                "apps.web.service.environment",
            ),
            (
                "    service: {command: x, restart: sometimes}\n",
                "apps.web.service.restart",
            ),
            (
                "    service: {command: x, after: [\"a;b\"]}\n",
                "apps.web.service.after[0]",
            ),
            (
                "    service: {command: x, writable_paths: [\"/var/x y\"]}\n",
                "apps.web.service.writable_paths[0]",
            ),
            (
                "    site: {server_name: [\"a.com; include /etc/shadow\"]}\n",
                "apps.web.site.server_name[0]",
            ),
            (
                "    site: {server_name: [a.com], root: \"/srv/$x\"}\n",
                "apps.web.site.root",
            ),
            (
                "    site: {server_name: [a.com], listen: {address: \"0.0.0.0; evil\"}}\n",
                "apps.web.site.listen.address",
            ),
            (
                "    site: {server_name: [a.com], proxy: [{location: \"/x {\", port: 80}]}\n",
                "apps.web.site.proxy[0].location",
            ),
            (
                "    site: {server_name: [a.com], proxy: [{location: /x, port: 0}]}\n",
                "apps.web.site.proxy[0].port",
            ),
            (
                "    site: {server_name: [a.com], tls: {certificate: \"/c\\\"\", key: /k}}\n",
                "apps.web.site.tls.certificate",
            ),
            (
                "    backup: {schedule: \"@daily\", paths: [\"/var/$(reboot)\"], destination: /var/backups/web}\n",
                "apps.web.backup.paths[0]",
            ),
            (
                "    health: [{http: \"https://127.0.0.1/\"}]\n",
                "apps.web.health[0].http",
            ),
            (
                "    health: [{tcp: \"127.0.0.1:0\"}]\n",
                "apps.web.health[0].tcp",
            ),
            (
                "    health: [{tcp: \"127.0.0.1:80\", timeout: 99999999999999999}]\n",
                "apps.web.health[0].timeout",
            ),
            ("    timeout: 99999999999999999\n", "apps.web.timeout"),
            (
                "    hooks: {pre_switch: [\"a\\nb\"]}\n",
                "apps.web.hooks.pre_switch[0]",
            ),
            ("    service: {}\n", "apps.web.service.command: is missing"),
            (
                "    user: w\n    source: app\n    service: {}\n    container: {file: ../Containerfile}\n",
                "apps.web.container.file",
            ),
            (
                "    user: w\n    source: app\n    service: {}\n    container: {mounts: [\"/etc/x:/etc/shadow\"]}\n",
                "apps.web.container.mounts[0]",
            ),
            (
                "    user: w\n    source: app\n    service: {}\n    container: {build_args: {B: \"a\\nRUN evil\"}}\n",
                "apps.web.container.build_args.B",
            ),
            (
                "    user: w\n    source: app\n    service: {}\n    container: {ports: [{host: 80, container: 1}, {host: 80, container: 2}]}\n",
                "apps.web.container.ports[1].host",
            ),
            (
                "    user: w\n    service: {}\n    container: {}\n",
                "apps.web.container: needs a `source:`",
            ),
            (
                "    user: w\n    source: app\n    service: {reload: x}\n    container: {}\n",
                "apps.web.service.reload: does not apply to a container app",
            ),
            (
                "    site: {server_name: [a.com], root: /x, publish: [{dir: /srv/a, ssh: \"u@h:/p\"}]}\n",
                "apps.web.site.publish[0]: needs exactly one of",
            ),
            (
                "    site: {server_name: [a.com], root: /x, publish: [{ssh: \"u@h:/p;reboot\"}]}\n",
                "apps.web.site.publish[0].ssh",
            ),
            (
                "    site: {server_name: [a.com], root: /x, publish: [{ssh: \"u@h -oProxyCommand=x:/p\"}]}\n",
                "apps.web.site.publish[0].ssh",
            ),
            (
                "    site: {server_name: [a.com], root: /x, publish: [{dir: /srv/a, keep: 1}]}\n",
                "apps.web.site.publish[0].keep",
            ),
            (
                "    site: {server_name: [a.com], publish: [{dir: /srv/a}]}\n",
                "apps.web.site.publish: needs `site.root`",
            ),
        ] {
            let err = load(&tree(&[("deploy.yaml", &app(body))]), "h")
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
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
