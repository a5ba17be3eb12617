//! Settings: the host config file, flags and defaults resolved in one place,
//! before any work starts. Commands only ever see `Settings`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::layout::Layout;
use super::paths::{self, AllowedRoots};
use super::remote::Remote;
use super::yaml;
use crate::error::ConfigError;

/// Default location of the host config (under `--root`).
pub const CONFIG_PATH: &str = "/etc/plumb/plumb.yaml";
const STATE_DIR: &str = "/var/lib/plumb";
const LOCK_PATH: &str = "/run/plumb/lock";

/// `/etc/plumb/plumb.yaml`: the host's trust root. Never read from the repo.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub path: Option<String>,
    pub hostname: Option<String>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub ssh: SshConfig,
    #[serde(default)]
    pub https: HttpsConfig,
    /// More roots the deploy repo may write below (opt-in; the deny list
    /// still wins). `allowed_roots` is the old name.
    #[serde(default, alias = "allowed_roots")]
    pub allow_paths: Vec<PathBuf>,
    /// Where a deploy repo may publish sites over ssh: `user@host:/prefix`.
    #[serde(default)]
    pub allow_publish: Vec<String>,
    pub keep_releases: Option<usize>,
    /// `execute` or `record`; default: execute on `/`, record on a sandbox root.
    pub host_commands: Option<String>,
    #[serde(default)]
    pub commands: CommandsConfig,
    /// `plumb run`: a crontab(5) line (`*/5 * * * *`) …
    pub schedule: Option<String>,
    /// … or an interval in seconds (default 300).
    pub interval: Option<u64>,
    /// Up to this many seconds of random delay before each scheduled run.
    pub jitter: Option<u64>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Prometheus textfile written after every run (node_exporter's
    /// textfile collector), e.g. /var/lib/node_exporter/textfile/plumb.prom.
    pub metrics_file: Option<PathBuf>,
    /// Keys whose SSH signatures plumb accepts (git's allowedSignersFile format).
    pub allowed_signers: Option<PathBuf>,
    /// OpenPGP certificates whose signatures plumb accepts (armored).
    pub openpgp_certs: Option<PathBuf>,
    /// The host's age identity, for the deploy repo's secrets.
    pub age_identity: Option<PathBuf>,
    /// How much of the deploy repo plumb reads and renders at most.
    #[serde(default)]
    pub limits: Limits,
}

/// Bounds on what one commit may make plumb read and write: exceeding one
/// refuses the commit with an error naming it, the host untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest file of the deploy repo (or an app's source) read.
    pub max_blob_bytes: u64,
    /// Most bytes read from the deploy repo for one commit.
    pub max_repo_bytes: u64,
    /// Most managed files one host may have.
    pub max_files: usize,
    /// Largest rendered file.
    pub max_file_bytes: usize,
    /// Most bytes all rendered files of a host may add up to.
    pub max_rendered_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blob_bytes: 256 << 20,
            max_repo_bytes: 2 << 30,
            max_files: 20_000,
            max_file_bytes: 16 << 20,
            max_rendered_bytes: 256 << 20,
        }
    }
}

/// Largest host config plumb reads.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

impl HostConfig {
    /// Parse the host config's text (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<HostConfig, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid(format!(
                "{file} is larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        Ok(yaml::parse::<HostConfig>(file, text)?)
    }
}

/// The push webhook of `plumb run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Address to listen on; keep it on loopback behind a proxy.
    #[serde(default = "default_webhook_listen")]
    pub listen: String,
    /// File holding the shared secret (HMAC key / GitLab token).
    pub secret_file: PathBuf,
}

fn default_webhook_listen() -> String {
    "127.0.0.1:9280".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    pub key_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    pub systemctl: Option<Vec<String>>,
    pub nginx_test: Option<Vec<String>>,
    pub nginx_reload: Option<Vec<String>>,
    pub systemd_verify: Option<Vec<String>>,
}

/// Command-line overrides (no clap types past `commands::run`).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub path: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub hostname: Option<String>,
}

/// Everything a command needs to know, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `/`, or the sandbox directory every host path is placed under.
    pub root: PathBuf,
    /// The deploy repo; only commands that fetch need one (`remote()`).
    pub remote: Option<Remote>,
    /// The host config file these settings came from.
    pub config_path: PathBuf,
    pub branch: String,
    /// Sub-directory of the repo holding `deploy.yaml` ("" for the top).
    pub subpath: String,
    pub hostname: String,
    pub layout: Layout,
    /// Host path of the run lock.
    pub lock_path: PathBuf,
    pub roots: AllowedRoots,
    pub keep_releases: usize,
    /// Record the commands that act outside the root instead of running
    /// them (a sandbox; the default on any root but `/`).
    pub record: bool,
    pub commands: Commands,
    /// When `plumb run` reconciles.
    pub timing: Timing,
    pub webhook: Option<WebhookConfig>,
    pub metrics_file: Option<PathBuf>,
    /// Files of the host config that hold keys and credentials.
    pub trust: TrustFiles,
    pub limits: Limits,
    /// The ssh key and pinned host keys, for publishing over ssh.
    pub ssh: SshFiles,
}

/// The host config's ssh key and known_hosts (for git and for publishing).
#[derive(Debug, Clone, Default)]
pub struct SshFiles {
    pub key_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

/// Files the host config names that plumb trusts: they must be root's
/// (or, when plumb does not run as root, its own user's) and not writable
/// by group or others.
#[derive(Debug, Clone, Default)]
pub struct TrustFiles {
    pub allowed_signers: Option<PathBuf>,
    pub openpgp_certs: Option<PathBuf>,
    pub age_identity: PathBuf,
}

/// The ssh host keys plumb trusts unless the host config names another file.
pub const KNOWN_HOSTS: &str = "/etc/plumb/known_hosts";

/// Where the host's age identity is unless the host config says otherwise.
pub const AGE_IDENTITY: &str = "/etc/plumb/age.key";

/// Refuse a file plumb would trust that someone else could have written.
pub fn check_trusted_file(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let me = nix::unistd::Uid::effective().as_raw();
    let owner_ok = meta.uid() == 0 || meta.uid() == me;
    let writable = meta.mode() & 0o022 != 0;
    if owner_ok && !writable {
        return Ok(());
    }
    let who = if me == 0 { "root" } else { "plumb's user" };
    Err(ConfigError::Invalid(format!(
        "{} is {}: plumb trusts it, so only {who} may be able to change it; \
         fix it with `chown {}: {p} && chmod go-w {p}`",
        path.display(),
        if !owner_ok {
            format!("owned by uid {}", meta.uid())
        } else {
            format!(
                "writable by group or others (mode {:04o})",
                meta.mode() & 0o7777
            )
        },
        if me == 0 { "root" } else { "$USER" },
        p = path.display()
    )))
}

/// When the daemon runs: a crontab line or an interval, plus jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    pub schedule: Schedule,
    pub jitter_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Cron(String),
    Every(u64),
}

impl Settings {
    /// Read the host config (if any) and apply the flags over it.
    pub fn resolve(flags: &Flags) -> Result<Settings, ConfigError> {
        let root = match &flags.root {
            None => PathBuf::from("/"),
            Some(dir) => absolute(dir)?,
        };
        let config_path = flags
            .config
            .clone()
            .unwrap_or_else(|| paths::under(&root, Path::new(CONFIG_PATH)));
        let config = match std::fs::read_to_string(&config_path) {
            Ok(text) => {
                check_trusted_file(&config_path)?;
                HostConfig::parse(&config_path.display().to_string(), &text)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && flags.config.is_none() => {
                HostConfig::default()
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: config_path,
                    source,
                });
            }
        };
        Settings::from_config(flags, root, config_path, config)
    }

    /// Apply the flags over a parsed host config and validate the result.
    pub fn from_config(
        flags: &Flags,
        root: PathBuf,
        config_path: PathBuf,
        config: HostConfig,
    ) -> Result<Settings, ConfigError> {
        let url = flags.repo.clone().or(config.repo);
        // The default known_hosts file is read when it exists.
        let known_hosts = config.ssh.known_hosts.clone().or_else(|| {
            let default = paths::under(&root, Path::new(KNOWN_HOSTS));
            default.exists().then_some(default)
        });
        let state_dir = flags
            .state_dir
            .clone()
            .or(config.state_dir)
            .unwrap_or_else(|| PathBuf::from(STATE_DIR));
        let state_dir = paths::normalize(&state_dir.to_string_lossy()).map_err(|why| {
            ConfigError::Invalid(format!("state_dir {} {why}", state_dir.display()))
        })?;
        let hostname = match flags.hostname.clone().or(config.hostname) {
            Some(name) => name,
            None => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if hostname.is_empty() || hostname.contains('/') || hostname.starts_with('.') {
            return Err(ConfigError::Invalid(format!(
                "hostname {hostname:?} is not a plain host name"
            )));
        }
        let keep_releases = config.keep_releases.unwrap_or(5);
        if keep_releases < 2 {
            return Err(ConfigError::Invalid(
                "keep_releases must be at least 2 (the current and the previous release)".into(),
            ));
        }
        for extra in &config.allow_paths {
            if paths::normalize(&extra.to_string_lossy()).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "allow_paths entry {} must be an absolute path without `..`",
                    extra.display()
                )));
            }
        }
        let layout = Layout {
            state_dir: state_dir.clone(),
        };
        let record = match config.host_commands.as_deref() {
            Some("execute") => false,
            Some("record") => true,
            None => root != Path::new("/"),
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "host_commands: {other:?} must be `execute` or `record`"
                )));
            }
        };
        let defaults = Commands::default();
        let argv = |given: Option<Vec<String>>, default: Vec<String>, name: &str| match given {
            Some(v) if v.is_empty() => {
                Err(ConfigError::Invalid(format!("commands.{name} is empty")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let commands = Commands {
            systemctl: argv(config.commands.systemctl, defaults.systemctl, "systemctl")?,
            nginx_test: argv(
                config.commands.nginx_test,
                defaults.nginx_test,
                "nginx_test",
            )?,
            nginx_reload: argv(
                config.commands.nginx_reload,
                defaults.nginx_reload,
                "nginx_reload",
            )?,
            systemd_verify: argv(
                config.commands.systemd_verify,
                defaults.systemd_verify,
                "systemd_verify",
            )?,
        };
        let schedule = match (config.schedule, config.interval) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "{}: set `schedule` or `interval`, not both",
                    config_path.display()
                )));
            }
            (Some(line), None) => {
                crate::spec::schedule::on_calendar(&line)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", config_path.display())))?;
                Schedule::Cron(line)
            }
            (None, Some(0)) => {
                return Err(ConfigError::Invalid(format!(
                    "{}: interval must be at least 1 second",
                    config_path.display()
                )));
            }
            (None, interval) => Schedule::Every(interval.unwrap_or(300)),
        };
        Ok(Settings {
            timing: Timing {
                schedule,
                jitter_secs: config.jitter.unwrap_or(0),
            },
            webhook: config.webhook,
            metrics_file: config.metrics_file,
            limits: config.limits,
            trust: TrustFiles {
                allowed_signers: config.allowed_signers,
                openpgp_certs: config.openpgp_certs,
                age_identity: config
                    .age_identity
                    // A sandbox never reads the machine's own key.
                    .unwrap_or_else(|| paths::under(&root, Path::new(AGE_IDENTITY))),
            },
            roots: AllowedRoots::new(&config.allow_paths, &state_dir)
                .with_publish(&config.allow_publish),
            root,
            ssh: SshFiles {
                key_file: config.ssh.key_file.clone(),
                known_hosts: known_hosts.clone(),
            },
            remote: url.map(|url| Remote {
                url,
                ssh_key: config.ssh.key_file,
                known_hosts,
                token_file: config.https.token_file,
                username: config.https.username,
            }),
            config_path,
            branch: flags
                .branch
                .clone()
                .or(config.branch)
                .unwrap_or_else(|| "main".into()),
            subpath: flags.path.clone().or(config.path).unwrap_or_default(),
            hostname,
            layout,
            lock_path: PathBuf::from(LOCK_PATH),
            keep_releases,
            record,
            commands,
        })
    }

    /// The deploy repo, for the commands that fetch it.
    pub fn remote(&self) -> Result<&Remote, ConfigError> {
        self.remote.as_ref().ok_or_else(|| ConfigError::NoRepo {
            config: self.config_path.clone(),
        })
    }

    /// Everything besides the commit that rendering depends on, hashed.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "plumb {}\nhost {}\npath {}\nstate {}\nroots {:?}",
            env!("CARGO_PKG_VERSION"),
            self.hostname,
            self.subpath,
            self.layout.state_dir.display(),
            self.roots
        );
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::canonicalize(dir))
        .map_err(|e| ConfigError::Invalid(format!("--root {}: {e}", dir.display())))
}

/// The argv used for each kind of service call; the host config may
/// override them (tests point them at a private nginx, or at stand-ins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    pub systemctl: Vec<String>,
    pub nginx_test: Vec<String>,
    pub nginx_reload: Vec<String>,
    pub systemd_verify: Vec<String>,
}

impl Default for Commands {
    fn default() -> Self {
        let argv = |s: &str| s.split(' ').map(String::from).collect();
        Commands {
            systemctl: argv("systemctl"),
            nginx_test: argv("nginx -t -q"),
            nginx_reload: argv("systemctl reload nginx.service"),
            systemd_verify: argv("systemd-analyze verify"),
        }
    }
}

impl Commands {
    pub fn systemctl_argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = self.systemctl.clone();
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    pub fn verify_argv(&self, paths: &[PathBuf]) -> Vec<String> {
        let mut argv = self.systemd_verify.clone();
        argv.extend(paths.iter().map(|p| p.display().to_string()));
        argv
    }
}
