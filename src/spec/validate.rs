//! Every field of `deploy.yaml` that lands in a unit file, an nginx
//! configuration or a shell script is checked here, at parse time, with an
//! error naming the field: no control characters anywhere; names, paths,
//! addresses and ports in the shape their target accepts. The templates then
//! render each value through the escaping of its target (`render::escape`).
//! Validation and escaping are two walls, not one: a repo's own template
//! that forgets a filter still gets only values of a safe shape.

use std::net::IpAddr;

use super::app::{Backup, Container, Health, Publish, Service, Site};
use super::deploy::App;
use super::paths::normalize;
use crate::error::InvalidError;

/// Characters allowed in a path that lands in a unit, an nginx config or a
/// script: no whitespace, quotes, `$`, `%`, `\`, `;`, braces or globs.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '@' | '+' | ',' | '=' | ':')
}

/// Longest a build step or hook may be given (`timeout:`), in seconds.
pub const MAX_STEP_SECS: u64 = 6 * 3600;
/// Longest a health check may keep failing (`health[].timeout`), in seconds.
pub const MAX_HEALTH_SECS: u64 = 3600;

/// A field's error, naming it as `apps.<app>.<field>`.
struct Field<'a> {
    app: &'a str,
}

impl Field<'_> {
    fn fail(&self, field: &str, message: String) -> InvalidError {
        InvalidError::Repo {
            file: "deploy.yaml".into(),
            message: format!("apps.{}.{field}: {message}", self.app),
        }
    }

    /// No control characters (newlines included) in `value`.
    fn line(&self, field: &str, value: &str) -> Result<(), InvalidError> {
        match value.chars().find(|c| c.is_control()) {
            Some(c) => Err(self.fail(
                field,
                format!(
                    "{value:?} contains the control character {c:?}; it must be one plain line"
                ),
            )),
            None => Ok(()),
        }
    }

    /// An absolute path of plain characters (see `path_char`).
    fn path(&self, field: &str, value: &str) -> Result<(), InvalidError> {
        self.line(field, value)?;
        normalize(value).map_err(|why| self.fail(field, format!("{value:?} {why}")))?;
        if let Some(c) = value.chars().find(|c| !path_char(*c)) {
            return Err(self.fail(
                field,
                format!(
                    "{value:?} contains {c:?}; paths may use letters, digits and / . _ - @ + , = : only"
                ),
            ));
        }
        Ok(())
    }

    fn port(&self, field: &str, port: u16) -> Result<(), InvalidError> {
        if port == 0 {
            return Err(self.fail(field, "0 is not a port; use 1-65535".into()));
        }
        Ok(())
    }
}

/// An environment variable or build argument name.
fn variable_name(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The shape of a POSIX user or group name.
fn posix_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// A POSIX user or group name a system account can have, never root.
pub fn account_name(name: &str) -> Result<(), String> {
    if !posix_name(name) {
        return Err(format!(
            "{name:?} is not a valid user or group name (a-z, 0-9, _ and -, starting with a letter or _, at most 32)"
        ));
    }
    if name == "root" {
        return Err("root is refused: apps never run as root".into());
    }
    Ok(())
}

/// A systemd unit name (`network.target`, `postgresql@15-main.service`).
fn unit_name(name: &str) -> bool {
    const KINDS: &[&str] = &[
        ".service",
        ".socket",
        ".target",
        ".device",
        ".mount",
        ".automount",
        ".swap",
        ".timer",
        ".path",
        ".slice",
        ".scope",
    ];
    name.len() <= 255
        && KINDS
            .iter()
            .any(|k| name.ends_with(k) && name.len() > k.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '@' | '\\'))
}

/// An nginx `server_name`: a host name, `*.` or `.` wildcard prefix, or `_`.
fn server_name(name: &str) -> bool {
    if name == "_" {
        return true;
    }
    let host = name
        .strip_prefix("*.")
        .or_else(|| name.strip_prefix('.'))
        .unwrap_or(name);
    host_name(host)
}

/// A DNS host name (letters, digits, hyphens, dots).
fn host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A URL path prefix for an nginx `location` (`/dashboard`, `/assets/`).
fn location(prefix: &str) -> bool {
    prefix.starts_with('/') && prefix.chars().all(|c| path_char(c) || c == '~')
}

/// Check every field of `app` whose value lands in a rendered file.
pub fn app(name: &str, app: &App) -> Result<(), InvalidError> {
    let f = Field { app: name };
    if let Some(user) = &app.user {
        account_name(user).map_err(|m| f.fail("user", m))?;
    }
    if let Some(t) = app.timeout
        && !(1..=MAX_STEP_SECS).contains(&t)
    {
        return Err(f.fail(
            "timeout",
            format!("{t} seconds is out of range: 1 to {MAX_STEP_SECS} (6 hours)"),
        ));
    }
    for (i, step) in app.build.iter().flatten().enumerate() {
        f.line(&format!("build[{i}]"), step)?;
    }
    if let Some(hooks) = &app.hooks {
        for (i, c) in hooks.pre_switch.iter().enumerate() {
            f.line(&format!("hooks.pre_switch[{i}]"), c)?;
        }
        for (i, c) in hooks.post_switch.iter().enumerate() {
            f.line(&format!("hooks.post_switch[{i}]"), c)?;
        }
    }
    let runs = app.source.is_some()
        || app.git.is_some()
        || app.build.as_ref().is_some_and(|b| !b.is_empty())
        || app
            .hooks
            .as_ref()
            .is_some_and(|h| !h.pre_switch.is_empty() || !h.post_switch.is_empty());
    if app.user.is_none() && runs {
        return Err(f.fail(
            "user",
            "is missing: an app with `source:`, `git:`, `build:` or `hooks:` names the user its files belong to and its steps run as (never root)".into(),
        ));
    }
    if let Some(service) = &app.service {
        check_service(&f, service, app.container.is_some())?;
    }
    if let Some(container) = &app.container {
        check_container(&f, app, container)?;
    }
    if let Some(site) = &app.site {
        let secrets: Vec<&str> = app
            .secrets
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect();
        check_site(&f, site, &secrets)?;
    }
    if let Some(backup) = &app.backup {
        check_backup(&f, backup)?;
    }
    for (i, check) in app.health.iter().flatten().enumerate() {
        check_health(&f, &format!("health[{i}]"), check)?;
    }
    for (i, file) in app.files.iter().flatten().enumerate() {
        f.path(&format!("files[{i}].path"), &file.path)?;
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, secret) in app.secrets.iter().flatten().enumerate() {
        let field = format!("secrets[{i}]");
        let plain = !secret.name.is_empty()
            && !secret.name.starts_with('.')
            && secret.name.len() <= 64
            && secret
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain {
            return Err(f.fail(
                &format!("{field}.name"),
                format!(
                    "{:?} must be a plain file name (letters, digits, . _ -)",
                    secret.name
                ),
            ));
        }
        if !names.insert(secret.name.as_str()) {
            return Err(f.fail(
                &format!("{field}.name"),
                format!("{:?} is declared twice", secret.name),
            ));
        }
        f.line(&format!("{field}.source"), &secret.source)?;
        if let Some(owner) = &secret.owner {
            account_name(owner).map_err(|m| f.fail(&format!("{field}.owner"), m))?;
        }
        if app.user.is_none() && secret.owner.is_none() {
            return Err(f.fail(
                &format!("{field}.owner"),
                "is needed when the app has no `user`: a secret is never left to root".into(),
            ));
        }
    }
    Ok(())
}

fn check_service(f: &Field, s: &Service, container: bool) -> Result<(), InvalidError> {
    match &s.command {
        Some(command) => {
            f.line("service.command", command)?;
            if command.trim().is_empty() {
                return Err(f.fail("service.command", "is empty".into()));
            }
        }
        None if !container => {
            return Err(f.fail(
                "service.command",
                "is missing: a service needs the command it runs (or a `container:` whose image has a CMD)".into(),
            ));
        }
        None => {}
    }
    if let Some(reload) = &s.reload {
        f.line("service.reload", reload)?;
    }
    if let Some(d) = &s.description {
        f.line("service.description", d)?;
    }
    for (field, value) in [("service.user", &s.user), ("service.group", &s.group)] {
        if let Some(name) = value {
            account_name(name).map_err(|m| f.fail(field, m))?;
        }
    }
    if let Some(dir) = &s.working_directory {
        f.path("service.working_directory", dir)?;
    }
    for (key, value) in &s.environment {
        if !variable_name(key) {
            return Err(f.fail(
                "service.environment",
                format!("{key:?} is not a variable name (letters, digits and _, not starting with a digit)"),
            ));
        }
        f.line(&format!("service.environment.{key}"), value)?;
    }
    const RESTART: &[&str] = &[
        "no",
        "always",
        "on-success",
        "on-failure",
        "on-abnormal",
        "on-abort",
        "on-watchdog",
    ];
    if !RESTART.contains(&s.restart.as_str()) {
        return Err(f.fail(
            "service.restart",
            format!("{:?} is not one of {}", s.restart, RESTART.join(", ")),
        ));
    }
    for (i, path) in s.writable_paths.iter().enumerate() {
        f.path(&format!("service.writable_paths[{i}]"), path)?;
    }
    for (i, unit) in s.after.iter().enumerate() {
        if !unit_name(unit) {
            return Err(f.fail(
                &format!("service.after[{i}]"),
                format!("{unit:?} is not a systemd unit name (like network-online.target)"),
            ));
        }
    }
    Ok(())
}

/// `user@host:/path` of an ssh publish target, checked.
pub fn ssh_target(text: &str) -> Result<(String, String, String), String> {
    let (user, rest) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?} is not user@host:/path"))?;
    let (host, path) = rest
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not user@host:/path"))?;
    if !posix_name(user) {
        return Err(format!("{user:?} is not a user name"));
    }
    if !host_name(host) && host.parse::<IpAddr>().is_err() {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let plain = path.starts_with('/') && path.chars().all(path_char) && !path.contains(':');
    if !plain || normalize(path).is_err() || path == "/" {
        return Err(format!(
            "{path:?} must be an absolute path (not /) of letters, digits and / . _ - @ + , ="
        ));
    }
    Ok((user.to_string(), host.to_string(), path.to_string()))
}

fn check_publish(f: &Field, field: &str, p: &Publish) -> Result<(), InvalidError> {
    match (&p.dir, &p.ssh) {
        (Some(dir), None) => f.path(&format!("{field}.dir"), dir)?,
        (None, Some(ssh)) => {
            f.line(&format!("{field}.ssh"), ssh)?;
            ssh_target(ssh).map_err(|m| f.fail(&format!("{field}.ssh"), m))?;
            f.port(&format!("{field}.port"), p.port)?;
        }
        _ => {
            return Err(f.fail(
                field,
                "needs exactly one of `dir:` (a directory here) or `ssh:` (user@host:/path)".into(),
            ));
        }
    }
    if !(2..=100).contains(&p.keep) {
        return Err(f.fail(
            &format!("{field}.keep"),
            format!(
                "{} is out of range: 2 to 100 (the served version and at least one to go back to)",
                p.keep
            ),
        ));
    }
    if !(1..=MAX_STEP_SECS).contains(&p.timeout) {
        return Err(f.fail(
            &format!("{field}.timeout"),
            format!(
                "{} seconds is out of range: 1 to {MAX_STEP_SECS}",
                p.timeout
            ),
        ));
    }
    Ok(())
}

fn check_container(f: &Field, app: &App, c: &Container) -> Result<(), InvalidError> {
    if app.service.is_none() {
        return Err(f.fail(
            "container",
            "needs a `service:` (its description, environment and restart policy) to run it".into(),
        ));
    }
    if app.source.is_none() && app.git.is_none() {
        return Err(f.fail(
            "container",
            "needs a `source:` or `git:`: the image is built from the app's source".into(),
        ));
    }
    if let Some(service) = &app.service {
        let unsupported = [
            ("reload", service.reload.is_some()),
            ("user", service.user.is_some()),
            ("group", service.group.is_some()),
            ("working_directory", service.working_directory.is_some()),
            ("writable_paths", !service.writable_paths.is_empty()),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(f.fail(
                &format!("service.{field}"),
                "does not apply to a container app (it runs as the app's user, with its own confinement and the image's working directory); remove it".into(),
            ));
        }
    }
    let relative = !c.file.is_empty()
        && !c.file.starts_with('/')
        && c.file
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && c.file.chars().all(path_char);
    if !relative {
        return Err(f.fail(
            "container.file",
            format!("{:?} must be a plain path inside the app's source (like Containerfile or docker/Dockerfile)", c.file),
        ));
    }
    for (key, value) in &c.build_args {
        if !variable_name(key) {
            return Err(f.fail(
                "container.build_args",
                format!("{key:?} is not a build argument name (letters, digits and _)"),
            ));
        }
        f.line(&format!("container.build_args.{key}"), value)?;
    }
    let mut hosts = std::collections::BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        f.port(&format!("container.ports[{i}].host"), port.host)?;
        f.port(&format!("container.ports[{i}].container"), port.container)?;
        if !hosts.insert(port.host) {
            return Err(f.fail(
                &format!("container.ports[{i}].host"),
                format!("{} is published twice", port.host),
            ));
        }
    }
    for (i, mount) in c.mounts.iter().enumerate() {
        f.path(&format!("container.mounts[{i}]"), mount)?;
        if mount.contains(':') || mount.contains(',') {
            return Err(f.fail(
                &format!("container.mounts[{i}]"),
                format!("{mount:?} contains `:` or `,`, which podman would read as mount options"),
            ));
        }
    }
    if !(16..=1 << 20).contains(&c.memory_mib) {
        return Err(f.fail(
            "container.memory_mib",
            format!("{} is out of range: 16 to 1048576", c.memory_mib),
        ));
    }
    if !(1..=1 << 20).contains(&c.pids) {
        return Err(f.fail(
            "container.pids",
            format!("{} is out of range: 1 to 1048576", c.pids),
        ));
    }
    Ok(())
}

fn check_site(f: &Field, site: &Site, secrets: &[&str]) -> Result<(), InvalidError> {
    for (i, publish) in site.publish.iter().enumerate() {
        check_publish(f, &format!("site.publish[{i}]"), publish)?;
    }
    if !site.publish.is_empty() && site.root.is_none() {
        return Err(f.fail(
            "site.publish",
            "needs `site.root`: the directory of the release that is published".into(),
        ));
    }
    if site.server_name.is_empty() {
        return Err(f.fail("site.server_name", "needs at least one name".into()));
    }
    for (i, name) in site.server_name.iter().enumerate() {
        if !server_name(name) {
            return Err(f.fail(
                &format!("site.server_name[{i}]"),
                format!("{name:?} is not a host name (or *.example.com, or _)"),
            ));
        }
    }
    if let Some(tls) = &site.tls {
        f.path("site.tls.certificate", &tls.certificate)?;
        f.path("site.tls.key", &tls.key)?;
    }
    if !site.listen.address.is_empty() && site.listen.address.parse::<IpAddr>().is_err() {
        return Err(f.fail(
            "site.listen.address",
            format!("{:?} is not an IP address", site.listen.address),
        ));
    }
    f.port("site.listen.http", site.listen.http)?;
    f.port("site.listen.https", site.listen.https)?;
    if let Some(root) = &site.root {
        f.path("site.root", root)?;
    }
    for (i, p) in site.proxy.iter().enumerate() {
        if !location(&p.location) {
            return Err(f.fail(
                &format!("site.proxy[{i}].location"),
                format!("{:?} is not a URL path prefix like /dashboard", p.location),
            ));
        }
        f.port(&format!("site.proxy[{i}].port"), p.port)?;
        if let Some(auth) = &p.basic_auth {
            f.line(&format!("site.proxy[{i}].basic_auth.realm"), &auth.realm)?;
            if !secrets.contains(&auth.secret.as_str()) {
                return Err(f.fail(
                    &format!("site.proxy[{i}].basic_auth.secret"),
                    format!("{:?} is not one of the app's `secrets`", auth.secret),
                ));
            }
        }
        if p.host.parse::<IpAddr>().is_err() && !host_name(&p.host) {
            return Err(f.fail(
                &format!("site.proxy[{i}].host"),
                format!("{:?} is not a host name or an IP address", p.host),
            ));
        }
    }
    for (i, prefix) in site.immutable.iter().enumerate() {
        if !location(prefix) {
            return Err(f.fail(
                &format!("site.immutable[{i}]"),
                format!("{prefix:?} is not a URL path prefix like /assets/"),
            ));
        }
    }
    Ok(())
}

fn check_backup(f: &Field, b: &Backup) -> Result<(), InvalidError> {
    f.line("backup.schedule", &b.schedule)?;
    for (i, db) in b.sqlite.iter().enumerate() {
        f.path(&format!("backup.sqlite[{i}]"), db)?;
    }
    for (i, p) in b.paths.iter().enumerate() {
        f.path(&format!("backup.paths[{i}]"), p)?;
    }
    f.path("backup.destination", &b.destination)?;
    Ok(())
}

fn check_health(f: &Field, field: &str, h: &Health) -> Result<(), InvalidError> {
    if h.timeout > MAX_HEALTH_SECS {
        return Err(f.fail(
            &format!("{field}.timeout"),
            format!(
                "{} seconds is out of range: 0 to {MAX_HEALTH_SECS}",
                h.timeout
            ),
        ));
    }
    if !(10..=60_000).contains(&h.interval_ms) {
        return Err(f.fail(
            &format!("{field}.interval_ms"),
            format!("{} is out of range: 10 to 60000", h.interval_ms),
        ));
    }
    if let Some(url) = &h.http {
        f.line(&format!("{field}.http"), url)?;
        let parsed = url::Url::parse(url)
            .map_err(|e| f.fail(&format!("{field}.http"), format!("{url:?}: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(f.fail(
                &format!("{field}.http"),
                format!(
                    "{url:?}: health checks speak plain HTTP to the app's own port (http://127.0.0.1:PORT/…); \
                     for HTTPS use a `command:` check such as [curl, -fsS, URL]"
                ),
            ));
        }
        if parsed.host_str().is_none() || parsed.port() == Some(0) {
            return Err(f.fail(
                &format!("{field}.http"),
                format!("{url:?} needs a host and a port in 1-65535"),
            ));
        }
    }
    if let Some(address) = &h.tcp {
        f.line(&format!("{field}.tcp"), address)?;
        let port = address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .filter(|p| *p != 0);
        if port.is_none() {
            return Err(f.fail(
                &format!("{field}.tcp"),
                format!("{address:?} is not host:port with a port in 1-65535"),
            ));
        }
    }
    for (i, arg) in h.command.iter().flatten().enumerate() {
        f.line(&format!("{field}.command[{i}]"), arg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_addresses_in_the_shape_their_target_accepts() {
        assert!(account_name("microblog").is_ok());
        for bad in ["root", "-rf", "Web", "a b", "", "x\ny", "ab$c"] {
            assert!(account_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(unit_name("network-online.target") && unit_name("pg@15-main.service"));
        assert!(!unit_name("x.service\nExecStart=/bin/sh") && !unit_name(".service"));
        assert!(
            server_name("blog.example.com") && server_name("*.example.com") && server_name("_")
        );
        for bad in ["a;b", "a b", "x}", "-a.com", "a..b"] {
            assert!(!server_name(bad), "{bad:?} accepted");
        }
        assert!(location("/dashboard") && location("/assets/"));
        for bad in ["dashboard", "/a b", "/a;b", "/{x}", "/\"x"] {
            assert!(!location(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_app_that_runs_steps_or_owns_a_source_names_its_user() {
        let app = |yaml: &str| -> App { serde_saphyr::from_str(yaml).unwrap() };
        for yaml in [
            "source: app",
            "build: [make]",
            "hooks: {post_switch: [true]}",
        ] {
            let err = super::app("web", &app(yaml)).unwrap_err().to_string();
            assert!(err.contains("apps.web.user: is missing"), "{yaml}: {err}");
            super::app("web", &app(&format!("{{user: web, {yaml}}}"))).unwrap();
        }
        super::app("web", &app("service: {command: /bin/true}")).unwrap();
    }
}
