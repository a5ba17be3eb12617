//! Publishing a live release's static sites to their targets — a directory
//! of this host or of another over ssh — atomically on the target: the
//! files go into `<path>/releases/<id>/` (rsync, links skipped, unchanged
//! files hard-linked from the served version), then `<path>/current` is
//! swapped to it with one `rename(2)`, and all but the newest `keep`
//! versions are removed (never the served one). What each target serves is
//! recorded in `published.json`; a failed target is retried by every run
//! until it serves the live release, and never rolls the host back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::release;
use crate::error::ApplyError;
use crate::host::{Host, Job, JobKind, Kind, ProcessError};
use crate::render::desired::{Destination, PublishTarget};
use crate::spec::layout::Layout;
use crate::spec::settings::SshFiles;
use crate::ui;

/// `published.json`: what each target of the live release serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The release these records are for.
    pub release: String,
    pub targets: BTreeMap<String, TargetState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    pub app: String,
    /// The release the target serves (`None`: nothing published yet).
    pub serves: Option<String>,
    pub at: String,
    /// Why the last attempt to publish the live release failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Published {
    pub fn path(layout: &Layout) -> PathBuf {
        layout.state_dir.join("published.json")
    }

    pub fn load(host: &dyn Host, layout: &Layout) -> Published {
        host.files()
            .read(&Self::path(layout))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save(&self, host: &dyn Host, layout: &Layout) -> Result<(), ApplyError> {
        let bytes = serde_json::to_vec_pretty(self).expect("published state serialises");
        let path = Self::path(layout);
        host.files()
            .write_atomic(&path, &bytes, 0o644)
            .map_err(ApplyError::io("write", &path))
    }

    /// Every target serves `release`.
    fn complete(&self, release: &str) -> bool {
        self.release == release
            && self
                .targets
                .values()
                .all(|t| t.serves.as_deref() == Some(release))
    }
}

/// The part of `release.json` publishing reads.
#[derive(Deserialize)]
struct Targets {
    #[serde(default)]
    publish: Vec<PublishTarget>,
}

/// Make every publish target of the live release serve it. Cheap when they
/// all do (one small file read); otherwise publishes to each target that
/// does not, and returns the failures as `(target, error)`.
pub fn converge(
    host: &dyn Host,
    layout: &Layout,
    ssh: &SshFiles,
) -> Result<Vec<(String, String)>, ApplyError> {
    let Some(id) = release::current_id(host, layout) else {
        return Ok(Vec::new());
    };
    let mut state = Published::load(host, layout);
    if state.complete(&id) {
        return Ok(Vec::new());
    }
    let Some(info) = release::load_as::<Targets>(host, layout, &id) else {
        return Ok(Vec::new());
    };
    let before = state.clone();
    state.release = id.clone();
    let names: Vec<String> = info.publish.iter().map(PublishTarget::name).collect();
    state.targets.retain(|name, _| names.contains(name));
    let mut failed = Vec::new();
    for (target, name) in info.publish.iter().zip(names) {
        let entry = state.targets.entry(name.clone()).or_insert(TargetState {
            app: target.app.clone(),
            serves: None,
            at: String::new(),
            error: None,
        });
        if entry.serves.as_deref() == Some(id.as_str()) {
            continue;
        }
        ui::step(format_args!(
            "publish {} of release {id} to {name}",
            target.source
        ));
        let started = std::time::Instant::now();
        match publish(host, layout, &id, target, ssh) {
            Ok(()) => {
                tracing::info!("published to {name} in {:?}", started.elapsed());
                entry.serves = Some(id.clone());
                entry.error = None;
            }
            Err(e) => {
                let message = e.to_string();
                ui::warn(&format!("publishing to {name} failed: {message}"));
                entry.error = Some(message.clone());
                failed.push((name.clone(), message));
            }
        }
        entry.at = super::record::now();
    }
    if state != before {
        state.save(host, layout)?;
    }
    Ok(failed)
}

/// Before a release with publish targets exists: the directory it would
/// publish must be there, and every component of its path inside the
/// release a real directory. A build runs as the app's user and could
/// leave a link there (`build -> /etc`) that root's rsync would follow.
pub fn check_source(host: &dyn Host, tmp: &Path, target: &PublishTarget) -> Result<(), ApplyError> {
    let kind = super::appdir::kind_without_links(host, tmp, Path::new(&target.source));
    if kind == Some(Kind::Dir) {
        return Ok(());
    }
    Err(ApplyError::Release {
        app: target.app.clone(),
        message: format!(
            "{} is published (site.publish) but is not a directory of the release made by the build: a link, or a path through one, is never published",
            target.source
        ),
    })
}

/// Copy the release's directory to the target, then swap and prune there.
fn publish(
    host: &dyn Host,
    layout: &Layout,
    id: &str,
    target: &PublishTarget,
    ssh: &SshFiles,
) -> Result<(), ProcessError> {
    let files = host.files();
    let source = files.real(&layout.release(id).join(&target.source));
    let timeout = Duration::from_secs(target.timeout_secs);
    let (rsync, swap) = match &target.to {
        Destination::Dir(dir) => {
            let dir = files.real(dir).display().to_string();
            let rsync = rsync_argv(&source, &dir, id, None);
            let mut swap = vec!["sh".to_string(), "-c".into(), SWAP.into(), "sh".into()];
            swap.extend([dir, id.to_string(), target.keep.to_string()]);
            (rsync, swap)
        }
        Destination::Ssh {
            user,
            host: name,
            port,
            path,
        } => {
            let ssh = ssh_command(ssh, *port)?;
            let remote = format!("{user}@{name}");
            let rsync = rsync_argv(&source, &format!("{remote}:{path}"), id, Some(&ssh));
            // The remote login shell reads one string: every value in it is
            // a validated path, a release id or a number, and quoted anyway.
            let command = format!(
                "sh -c {} sh {} {} {}",
                sh_quote(SWAP),
                sh_quote(path),
                sh_quote(id),
                target.keep
            );
            let mut argv = ssh;
            argv.extend([remote, "--".into(), command]);
            (rsync, argv)
        }
    };
    for argv in [rsync, swap] {
        let job = Job {
            kind: JobKind::Publish,
            argv,
            dir: PathBuf::from("/"),
            account: None,
            timeout,
            env: vec![("PLUMB_APP".into(), target.app.clone())],
        };
        host.processes().run(&job)?;
    }
    Ok(())
}

/// Run on the target in its directory `$1`, under a lock: flush the new version
/// `releases/$2`, point `current` at it with one rename, then remove all
/// but the newest `$3` versions, never the one served.
const SWAP: &str = r#"set -eu
cd "$1"
# One publisher at a time on this target (several hosts may share it).
if command -v flock >/dev/null; then exec 9>.publish.lock; flock -w 600 9; fi
test -d "releases/$2"
sync -f "releases/$2"
ln -sfn "releases/$2" .current.tmp
mv -T .current.tmp current
sync -f .
served=$(readlink current)
ls -1 releases | sort | head -n "-$3" | while IFS= read -r old; do
    if [ "releases/$old" != "$served" ]; then rm -rf "releases/$old"; fi
done"#;

/// rsync the release's directory into `<dest>/releases/<id>/`: files and
/// directories only (a link a build made is never published), files whose
/// content is unchanged hard-linked from the version served now, nothing
/// else kept.
fn rsync_argv(source: &Path, dest: &str, id: &str, ssh: Option<&[String]>) -> Vec<String> {
    let mut argv: Vec<String> = [
        "rsync",
        "--recursive",
        "--times",
        // By content, not size and mtime: a rebuilt file may keep both
        // (reproducible builds fix mtimes), and a stale one would be linked.
        "--checksum",
        "--no-links",
        "--delete",
        "--mkpath",
        "--chmod=Du=rwx,Dgo=rx,Fu=rw,Fgo=r",
    ]
    .map(String::from)
    .to_vec();
    let base = dest.rsplit_once(':').map(|(_, p)| p).unwrap_or(dest);
    argv.push(format!("--link-dest={base}/current/"));
    if let Some(ssh) = ssh {
        let quoted: Vec<String> = ssh.iter().map(|a| format!("'{a}'")).collect();
        argv.push(format!("--rsh={}", quoted.join(" ")));
    }
    argv.push(format!("{}/", source.display()));
    argv.push(format!("{dest}/releases/{id}/"));
    argv
}

/// `ssh` with the host config's key and the target's host key pinned in its
/// known_hosts ([`crate::spec::remote::ssh_command`]).
fn ssh_command(files: &SshFiles, port: u16) -> Result<Vec<String>, ProcessError> {
    let missing = |what: &str| ProcessError::User {
        user: "root".into(),
        problem: format!(
            "publishing over ssh needs `ssh.{what}` in the host config (the same key and pinned host keys as for git)"
        ),
    };
    let key = files.key_file.as_ref().ok_or_else(|| missing("key_file"))?;
    let known = files
        .known_hosts
        .as_ref()
        .ok_or_else(|| missing("known_hosts"))?;
    crate::spec::remote::ssh_command(key, known, port).map_err(|problem| ProcessError::User {
        user: "root".into(),
        problem: format!("cannot publish over ssh: {problem}"),
    })
}

fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
