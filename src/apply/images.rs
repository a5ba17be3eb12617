//! Container images of a release: built with podman from the app's release
//! directory, or reused when an image with the same tag (the hash of the
//! build context and recipe) is already there; the app user's ids written
//! beside them for the unit; images no kept release names removed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::error::ApplyError;
use crate::host::{Host, Job, JobKind, ProcessError};
use crate::render::desired::ImageBuild;
use crate::spec::layout::Layout;
use crate::ui;

/// The name prefix of every image plumb builds.
pub const PREFIX: &str = "localhost/plumb-";

/// The label naming the state directory whose releases an image was built
/// for: a plumb prunes only its own images (a second plumb on the machine,
/// or a sandbox, never removes another's).
const OWNER_LABEL: &str = "io.plumb.state";

fn owner(host: &dyn Host, layout: &Layout) -> String {
    host.files().real(&layout.state_dir).display().to_string()
}

/// How long a query of podman's image store may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

fn podman(kind: JobKind, args: &[&str], timeout: Duration) -> Job {
    let mut argv = vec!["podman".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Job {
        kind,
        argv,
        dir: "/".into(),
        account: None,
        timeout,
        env: Vec::new(),
    }
}

/// Whether podman already holds `tag`.
pub fn exists(host: &dyn Host, tag: &str) -> Result<bool, ProcessError> {
    let job = podman(JobKind::Image, &["image", "exists", tag], QUERY_TIMEOUT);
    match host.processes().run(&job) {
        Ok(_) => Ok(true),
        Err(ProcessError::Exit { code: 1, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Make `image` exist for app `app` of the release being written at `tmp`:
/// build it from `tmp/app/<app>` unless podman has it, then write the ids
/// of the account it runs as to `tmp/containers/<app>.env`, and make sure
/// the app's shared directory (mounted into it) exists and is the app's.
pub fn ensure(
    host: &dyn Host,
    layout: &Layout,
    tmp: &Path,
    app: &str,
    image: &ImageBuild,
) -> Result<(), ApplyError> {
    let failed = |source| ApplyError::Build {
        app: app.to_string(),
        source: Box::new(source),
    };
    let account = host
        .users()
        .account_for(Some(&image.user))
        .map_err(failed)?;
    // The build ran as the app's user in this directory: what podman (root)
    // reads as the Containerfile must be a plain file, not a link to one
    // of root's.
    let dir = tmp.join("app").join(app);
    match super::appdir::kind_without_links(host, &dir, Path::new(&image.file)) {
        Some(crate::host::Kind::File) => {}
        _ => {
            return Err(ApplyError::Release {
                app: app.to_string(),
                message: format!(
                    "container.file {} is not a regular file of the app's release directory, or is reached through a link (did a build step replace it?)",
                    image.file
                ),
            });
        }
    }
    let present = exists(host, &image.tag).map_err(|source| ApplyError::Step {
        step: format!("ask podman for image {}", image.tag),
        blame: crate::error::Blame::Host,
        source: Box::new(source),
    })?;
    if present {
        ui::step(format_args!("image {} reused", image.tag));
    } else {
        ui::step(format_args!(
            "build image {} (its context app/{app}/ changed)",
            image.tag
        ));
        let context = host.files().real(&tmp.join("app").join(app));
        host.processes()
            .run(&build_job(app, image, &context, &owner(host, layout)))
            .map_err(|source| match &source {
                // A base image podman could not pull: a registry down, no
                // network, no credentials. Retried next run, never
                // quarantined (a misspelt image name is retried too).
                ProcessError::Exit { output, .. } if pull_failed(output) => ApplyError::Step {
                    step: format!("pull the base image of app {app}"),
                    blame: crate::error::Blame::Host,
                    source: Box::new(source),
                },
                _ => failed(source),
            })?;
    }
    let files = host.files();
    let env = tmp.join("containers").join(format!("{app}.env"));
    files
        .create_dir_all(env.parent().expect("has a parent"))
        .map_err(ApplyError::io("create", &env))?;
    let text = format!("PLUMB_UID={}\nPLUMB_GID={}\n", account.uid, account.gid);
    files
        .write_new(&env, text.as_bytes(), 0o644)
        .map_err(ApplyError::io("write", &env))?;
    let shared = layout.shared(app);
    if files.stat(&shared).is_err() {
        files
            .create_dir_all(&shared)
            .map_err(ApplyError::io("create", &shared))?;
        files
            .chown(&shared, &account, false, false)
            .map_err(ApplyError::io("chown", &shared))?;
    }
    Ok(())
}

/// Whether podman's output says it could not fetch an image (as opposed to
/// a step of the Containerfile failing).
fn pull_failed(output: &str) -> bool {
    output.contains("initializing source docker://")
        || output.contains("pinging container registry")
}

/// `podman build` of the app directory: no network unless the app asks for
/// it, no host secrets (a clean environment, nothing mounted), bounded by
/// the app's timeout, labelled with the app.
fn build_job(app: &str, image: &ImageBuild, context: &Path, owner: &str) -> Job {
    let file = context.join(&image.file);
    let mut args = vec![
        "build".to_string(),
        "--quiet".into(),
        format!("--file={}", file.display()),
        format!("--tag={}", image.tag),
        format!("--label=io.plumb.app={app}"),
        format!("--label={OWNER_LABEL}={owner}"),
        format!(
            "--network={}",
            if image.network { "private" } else { "none" }
        ),
        "--pull=missing".into(),
    ];
    for (name, value) in &image.build_args {
        args.push(format!("--build-arg={name}={value}"));
    }
    args.push(context.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut job = podman(
        JobKind::Image,
        &args,
        Duration::from_secs(image.timeout_secs),
    );
    job.env.push(("PLUMB_APP".into(), app.to_string()));
    job
}

/// Remove the images this plumb built that no release on disk names any
/// more. Best effort: a failure (an image still in use) is a warning, the
/// next prune tries again.
pub fn prune(host: &dyn Host, layout: &Layout) {
    let Ok(releases) = super::release::list(host, layout) else {
        return;
    };
    let mut kept = BTreeSet::new();
    for id in &releases {
        match super::release::load(host, layout, id) {
            Some(info) => kept.extend(info.images.into_values()),
            // Which images it needs is unknown: remove none.
            None => return,
        }
    }
    let list = podman(
        JobKind::Image,
        &[
            "images",
            "--noheading",
            "--format={{.Repository}}:{{.Tag}}",
            &format!("--filter=reference={PREFIX}*"),
            &format!("--filter=label={OWNER_LABEL}={}", owner(host, layout)),
        ],
        QUERY_TIMEOUT,
    );
    let listed = match host.processes().run(&list) {
        Ok(out) => out.text,
        Err(e) => {
            if kept.is_empty() {
                return; // no containers here: podman need not even exist
            }
            ui::warn(&format!("cannot list container images to prune: {e}"));
            return;
        }
    };
    for tag in listed.lines().map(str::trim) {
        if !tag.starts_with(PREFIX) || kept.contains(tag) {
            continue;
        }
        let job = podman(
            JobKind::ImageRemove,
            &["rmi", "--force", tag],
            QUERY_TIMEOUT,
        );
        if let Err(e) = host.processes().run(&job) {
            ui::warn(&format!("cannot remove image {tag}: {e}"));
        }
    }
}

/// The image a container runs, as podman says (`None`: not running).
pub fn running(host: &dyn Host, app: &str) -> Option<String> {
    let name = format!("plumb-{app}");
    let job = podman(
        JobKind::Image,
        &["container", "inspect", "--format={{.ImageName}}", &name],
        QUERY_TIMEOUT,
    );
    let out = host.processes().run(&job).ok()?;
    out.text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(PREFIX))
        .map(str::to_string)
}
