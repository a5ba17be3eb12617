//! Host overlays: `hosts/<hostname>.yaml` merged over `deploy.yaml`, with
//! one rule per field. Every section of an app can be kept (absent),
//! replaced (given) or removed (`null`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::app::{Backup, Container, FileSpec, GitSource, Health, Hooks, Secret, Service, Site};
use super::deploy::{App, DeployFile, DeployInput};

/// A section of an overlay: `None` when absent (the base's is kept),
/// `Some(None)` for `null` (removed), `Some(Some(v))` to replace it.
pub type Patch<T> = Option<Option<T>>;

/// `hosts/<hostname>.yaml`: merged over `deploy.yaml` for that host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// Merged deeply into the base's; a `null` value removes the key.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Per app: sections to replace or remove; `null` removes the app.
    #[serde(default)]
    pub apps: BTreeMap<String, Option<HostApp>>,
    /// Added; an entry with the path of a base entry replaces it.
    #[serde(default)]
    pub files: Vec<FileSpec>,
}

/// An app in an overlay: the fields of [`App`], each a [`Patch`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostApp {
    #[serde(default, deserialize_with = "strict_bool")]
    pub enabled: Patch<bool>,
    #[serde(default, deserialize_with = "patch")]
    pub user: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub source: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub git: Patch<GitSource>,
    #[serde(default, deserialize_with = "patch")]
    pub service: Patch<Service>,
    #[serde(default, deserialize_with = "patch")]
    pub container: Patch<Container>,
    #[serde(default, deserialize_with = "patch")]
    pub site: Patch<Site>,
    #[serde(default, deserialize_with = "patch")]
    pub backup: Patch<Backup>,
    #[serde(default, deserialize_with = "patch")]
    pub files: Patch<Vec<FileSpec>>,
    #[serde(default, deserialize_with = "patch")]
    pub health: Patch<Vec<Health>>,
    #[serde(default, deserialize_with = "patch")]
    pub build: Patch<Vec<String>>,
    #[serde(default, deserialize_with = "patch")]
    pub timeout: Patch<u64>,
    #[serde(default, deserialize_with = "patch")]
    pub shared: Patch<Vec<String>>,
    #[serde(default, deserialize_with = "patch")]
    pub hooks: Patch<Hooks>,
    #[serde(default, deserialize_with = "patch")]
    pub secrets: Patch<Vec<Secret>>,
    #[serde(default, deserialize_with = "strict_bool")]
    pub create_user: Patch<bool>,
}

/// A present field: `null` or a value.
fn patch<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Patch<T>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A present boolean field: `null`, `true` or `false` (never `"false"`).
fn strict_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Patch<bool>, D::Error> {
    use serde::de::{self, Visitor};
    struct Strict;
    impl<'de> Visitor<'de> for Strict {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("true, false (unquoted) or null")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<bool>, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<bool>, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Strict).map(Some)
}

/// `deploy.yaml` with the host's overlay (if any) applied; disabled and
/// removed apps are gone.
pub fn merge(
    base: DeployFile,
    host: HostFile,
    hostname: &str,
    overlay: Option<String>,
) -> DeployInput {
    let mut vars = base.vars;
    for (key, value) in host.vars {
        set_value(&mut vars, key, value);
    }
    let mut apps = base.apps;
    for (name, over) in host.apps {
        match over {
            None => {
                apps.remove(&name);
            }
            Some(over) => apply(apps.entry(name).or_default(), over),
        }
    }
    apps.retain(|_, app| app.enabled != Some(false));
    let mut files = base.files;
    for file in host.files {
        files.retain(|f| f.path != file.path);
        files.push(file);
    }
    DeployInput {
        hostname: hostname.to_string(),
        overlay,
        vars,
        apps,
        files,
    }
}

/// Every field of the overlay's app over the base's (destructured, so a
/// field added to `HostApp` cannot be forgotten here).
fn apply(app: &mut App, over: HostApp) {
    fn set<T>(field: &mut Option<T>, patch: Patch<T>) {
        if let Some(value) = patch {
            *field = value;
        }
    }
    let HostApp {
        enabled,
        user,
        source,
        git,
        service,
        container,
        site,
        backup,
        files,
        health,
        build,
        timeout,
        shared,
        hooks,
        secrets,
        create_user,
    } = over;
    set(&mut app.enabled, enabled);
    set(&mut app.user, user);
    set(&mut app.source, source);
    set(&mut app.git, git);
    set(&mut app.service, service);
    set(&mut app.container, container);
    set(&mut app.site, site);
    set(&mut app.backup, backup);
    set(&mut app.files, files);
    set(&mut app.health, health);
    set(&mut app.build, build);
    set(&mut app.timeout, timeout);
    set(&mut app.shared, shared);
    set(&mut app.hooks, hooks);
    set(&mut app.secrets, secrets);
    set(&mut app.create_user, create_user);
}

/// Deep merge of one var: objects merge key by key, `null` removes.
fn set_value(
    into: &mut BTreeMap<String, serde_json::Value>,
    key: String,
    value: serde_json::Value,
) {
    if value.is_null() {
        into.remove(&key);
    } else {
        merge_value(into.entry(key).or_insert(serde_json::Value::Null), value);
    }
}

fn merge_value(into: &mut serde_json::Value, from: serde_json::Value) {
    use serde_json::Value;
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                if value.is_null() {
                    into.remove(&key);
                } else {
                    merge_value(into.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (into, from) => *into = from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::spec::deploy::load;
    use crate::spec::tree::Tree;

    fn tree(files: &[(&str, &str)]) -> Tree {
        let mut t = Tree::default();
        for (path, text) in files {
            t.insert_bytes(path, text.as_bytes());
        }
        t
    }

    const BASE: &str = "version: 1
vars: {a: {x: 1, y: 2}, gone: 1}
apps:
  web:
    user: web
    source: app
    git: {url: /srv/app.git, rev: v1}
    backup: {schedule: '@daily', paths: [/var/lib/web], destination: /var/backups/web}
    build: [make]
  old: {user: o}
";

    #[test]
    fn an_overlay_keeps_replaces_or_removes_each_section() {
        let t = tree(&[
            ("deploy.yaml", BASE),
            (
                "hosts/h1.yaml",
                "vars: {a: {y: 3, x: null}, gone: null}
apps:
  web: {user: www, git: {url: /srv/app.git, rev: v2}, backup: null, build: ~}
  old: null
",
            ),
        ]);
        let input = load(&t, "h1").unwrap();
        assert_eq!(input.overlay.as_deref(), Some("hosts/h1.yaml"));
        assert_eq!(input.vars["a"], serde_json::json!({"y": 3}));
        assert!(!input.vars.contains_key("gone"));
        let web = &input.apps["web"];
        assert_eq!(web.user.as_deref(), Some("www"), "replaced");
        assert_eq!(web.source.as_deref(), Some("app"), "kept");
        assert_eq!(web.git.as_ref().unwrap().rev, "v2", "a pinned version wins");
        assert!(web.backup.is_none(), "removed");
        assert!(web.build.is_none(), "removed with ~");
        assert!(!input.apps.contains_key("old"), "a null app is gone");
        // Without an overlay: the base as it is, and said so.
        let input = load(&t, "h2").unwrap();
        assert_eq!(input.overlay, None);
        assert!(input.apps["web"].backup.is_some());
    }

    #[test]
    fn a_repo_can_require_an_overlay_per_host() {
        let base = format!("require_overlay: true\n{BASE}");
        let t = tree(&[("deploy.yaml", &base), ("hosts/h1.yaml", "vars: {}\n")]);
        assert!(load(&t, "h1").is_ok());
        let err = load(&t, "h1-typo").unwrap_err();
        assert!(
            !err.is_the_commits(),
            "a host's name is not the commit's fault"
        );
        assert!(
            err.to_string().starts_with("hosts/h1-typo.yaml not found"),
            "{err}"
        );
    }

    #[test]
    fn an_overlay_boolean_is_strict_and_nullable() {
        let t = tree(&[
            ("deploy.yaml", BASE),
            ("hosts/h1.yaml", "apps:\n  web: {enabled: \"false\"}\n"),
        ]);
        assert!(
            load(&t, "h1")
                .unwrap_err()
                .to_string()
                .contains("true, false")
        );
        let t = tree(&[
            ("deploy.yaml", BASE),
            ("hosts/h1.yaml", "apps:\n  web: {enabled: false}\n"),
        ]);
        assert!(!load(&t, "h1").unwrap().apps.contains_key("web"));
    }

    #[test]
    fn the_overlay_has_a_rule_for_every_field_of_an_app() {
        let keys = |v: serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            keys(serde_json::to_value(App::default()).unwrap()),
            keys(serde_json::to_value(HostApp::default()).unwrap()),
            "App and HostApp must have the same fields"
        );
    }
}
