//! Container apps with the real podman: the example's `hosts/container.yaml`
//! built into an image (on a base made from Debian's packages: no registry
//! is reachable here), run by the unit plumb renders, health-checked through
//! its published loopback port, rolled back, and pruned with its releases.
//! systemd is not PID 1 on the test machines: `tests/podman/systemctl.sh`
//! stands in for `systemctl` and runs the unit's `ExecStart=` as written.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::harness::{GitRepo, Sandbox, free_port, sh};

const CONTAINER: &str = "plumb-microblog";

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman").args(args).output().unwrap()
}

/// Removes the container and every image of the app when the test ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        podman(&["rm", "--force", "--ignore", CONTAINER]);
        let images = podman(&[
            "images",
            "--noheading",
            "--format={{.Repository}}:{{.Tag}}",
            "--filter=reference=localhost/plumb-microblog",
        ]);
        for tag in String::from_utf8_lossy(&images.stdout).lines() {
            podman(&["rmi", "--force", tag.trim()]);
        }
    }
}

fn image_exists(tag: &str) -> bool {
    podman(&["image", "exists", tag]).status.success()
}

/// The image the running container was started from.
fn running_image() -> String {
    let out = podman(&["container", "inspect", "--format={{.ImageName}}", CONTAINER]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn current_image(sandbox: &Sandbox) -> String {
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sandbox.state_dir().join("current/release.json")).unwrap(),
    )
    .unwrap();
    info["images"]["microblog"].as_str().unwrap().to_string()
}

fn healthy(port: u16) -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/health"))
        .output()
        .unwrap()
        .status
        .success()
}

/// The example's container overlay, on the local base image, published on
/// `port`, with its health check there.
fn container_repo(port: u16) -> GitRepo {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    sh(&mut Command::new(
        manifest.join("tests/podman/base-image.sh"),
    ));
    let repo = GitRepo::example_minimal();
    let overlay = repo
        .read("hosts/container.yaml")
        .replace("BASE: python:3.12-slim", "BASE: localhost/python3:bookworm")
        .replace(
            "{host: 8000, container: 8000}",
            &format!("{{host: {port}, container: 8000}}"),
        );
    assert!(overlay.contains("localhost/python3") && overlay.contains(&port.to_string()));
    let overlay = format!(
        "{overlay}    health:\n      - http: http://127.0.0.1:{port}/health\n        timeout: 60\n"
    );
    repo.write("hosts/container.yaml", &overlay)
        .commit("container on a local base");
    repo
}

#[test]
fn a_container_app_is_built_once_run_confined_health_checked_rolled_back_and_pruned() {
    let _cleanup = Cleanup;
    let port = free_port();
    let repo = container_repo(port);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/podman/systemctl.sh");
    // The stand-in systemctl runs units with the real podman.
    let mut sandbox = Sandbox::executing(&format!(
        "  systemctl: [sh, {}, {{root}}]\nkeep_releases: 2",
        script.display()
    ));
    sandbox.hostname = "container".into();

    // The database the example's pre-switch hook would create (hooks are
    // left out of the minimal example), owned by the app's user.
    let shared = sandbox.path("/var/lib/plumb/shared/microblog");
    std::fs::create_dir_all(&shared).unwrap();
    let app = crate::harness::example_dir().join("app/bin/microblog");
    sh(Command::new("python3")
        .arg(app)
        .args(["upgrade-db", "--database"])
        .arg(shared.join("microblog.db")));
    sh(Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&shared));

    // A base image that cannot be pulled (no registry here): the host's
    // problem, retried next run, never a quarantine.
    let overlay = repo.read("hosts/container.yaml");
    repo.write(
        "hosts/container.yaml",
        &overlay.replace("localhost/python3:bookworm", "localhost/no-such-base:1"),
    )
    .commit("a base image nobody has");
    sandbox
        .reconcile(&repo)
        .fails_with(6, "pull the base image of app microblog");
    let status = sandbox.plumb(&["status"]).ok();
    assert!(
        status.stdout.contains("quarantine: none"),
        "{}",
        status.stdout
    );
    repo.write("hosts/container.yaml", &overlay)
        .commit("the local base");

    // First deploy: the image is built, the container runs it, healthy.
    let started = Instant::now();
    let run = sandbox.reconcile(&repo).ok();
    eprintln!("cold deploy to healthy: {:?}", started.elapsed());
    assert!(
        run.stdout
            .contains("build image localhost/plumb-microblog:"),
        "{}",
        run.stdout
    );
    let first = current_image(&sandbox);
    assert!(image_exists(&first));
    assert_eq!(running_image(), first);
    assert!(healthy(port));
    // Confined: the app's user (nobody stands in on a sandbox), a read-only
    // root.
    let exec = |args: &[&str]| {
        let mut argv = vec!["exec", CONTAINER];
        argv.extend(args);
        podman(&argv)
    };
    assert_eq!(
        String::from_utf8_lossy(&exec(&["id", "-u"]).stdout).trim(),
        "65534"
    );
    // Even root inside cannot write its image: the root is read-only.
    let root_write = podman(&["exec", "--user", "0", CONTAINER, "touch", "/app/x"]);
    assert!(!root_write.status.success(), "the root is read-only");
    let inspect = podman(&[
        "container",
        "inspect",
        "--format={{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}",
        CONTAINER,
    ]);
    let inspect = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.starts_with("true "), "{inspect}");
    // The shared data is the container's: the dashboard wrote its database.
    assert!(
        sandbox
            .path("/var/lib/plumb/shared/microblog/microblog.db")
            .exists()
    );

    // A unit-only change: same context, the image is reused, not rebuilt.
    let overlay = repo
        .read("hosts/container.yaml")
        .replace("restart_sec: 5", "restart_sec: 6");
    repo.write("hosts/container.yaml", &overlay)
        .commit("restart_sec");
    let started = Instant::now();
    let run = sandbox.reconcile(&repo).ok();
    eprintln!(
        "warm deploy (image reused) to healthy: {:?}",
        started.elapsed()
    );
    assert!(
        run.stdout.contains(&format!("image {first} reused")),
        "{}",
        run.stdout
    );
    assert_eq!(current_image(&sandbox), first);
    assert!(healthy(port));

    // A change to the app's source: a new image; the old one stays while a
    // kept release names it.
    let server = repo.read("app/microblog/server.py");
    repo.write("app/microblog/server.py", &format!("{server}\n# v2\n"))
        .commit("v2");
    let plan = sandbox.plumb(&["plan", "--repo", &repo.url()]);
    assert!(
        plan.stdout
            .contains("rebuilt: its context app/microblog/ changed"),
        "{}",
        plan.stdout
    );
    sandbox.reconcile(&repo).ok();
    let second = current_image(&sandbox);
    assert_ne!(second, first);
    assert_eq!(running_image(), second);
    assert!(image_exists(&first), "release 2 still names {first}");

    // A container that never becomes healthy is rolled back to the image
    // before it, which answers again.
    let containerfile = repo.read("app/Containerfile");
    let (head, _) = containerfile.rsplit_once("CMD ").unwrap();
    repo.write(
        "app/Containerfile",
        &format!("{head}CMD [\"python3\", \"-c\", \"import sys; sys.exit(3)\"]\n"),
    );
    let overlay = repo
        .read("hosts/container.yaml")
        .replace("timeout: 60", "timeout: 3");
    repo.write("hosts/container.yaml", &overlay)
        .commit("a container that exits");
    sandbox.reconcile(&repo).fails_with(7, "rolled back");
    assert_eq!(current_image(&sandbox), second);
    assert_eq!(running_image(), second);
    assert!(healthy(port));

    // An image that does not build is refused before anything changes.
    repo.write(
        "app/Containerfile",
        &containerfile.replace("WORKDIR /app", "WORKDIR /app\nRUN exit 3"),
    )
    .commit("a build that fails");
    sandbox
        .reconcile(&repo)
        .fails_with(5, "build of app microblog failed");
    assert_eq!(current_image(&sandbox), second);
    assert_eq!(running_image(), second);

    // A build step that swaps the Containerfile for a link to one of root's
    // files: podman (root) never reads it.
    repo.write("app/Containerfile", &containerfile);
    let build =
        "      - python3 bin/microblog build --content content --out build --static static\n";
    let yaml = repo.read("deploy.yaml");
    repo.write(
        "deploy.yaml",
        &yaml.replace(
            build,
            &format!("{build}      - rm Containerfile && ln -s /etc/shadow Containerfile\n"),
        ),
    )
    .commit("a Containerfile that is a link");
    sandbox
        .reconcile(&repo)
        .fails_with(5, "is not a regular file of the app's release directory");
    assert_eq!(running_image(), second);
    repo.write("deploy.yaml", &yaml);

    // Fixed, and deployed twice more: the first image is named by no kept
    // release any more, and is removed with the last of them.
    repo.write("app/Containerfile", &containerfile);
    let overlay = repo
        .read("hosts/container.yaml")
        .replace("timeout: 3", "timeout: 60");
    repo.write("hosts/container.yaml", &overlay);
    repo.write("app/microblog/server.py", &format!("{server}\n# v3\n"))
        .commit("v3");
    sandbox.reconcile(&repo).ok();
    repo.write("app/microblog/server.py", &format!("{server}\n# v4\n"))
        .commit("v4");
    sandbox.reconcile(&repo).ok();
    assert!(healthy(port));
    assert!(
        !image_exists(&first),
        "{first} outlived every release naming it"
    );
    assert!(image_exists(&current_image(&sandbox)));
    let status = sandbox.plumb(&["status"]).ok();
    assert!(
        status.stdout.contains(&format!(
            "container: microblog runs {}",
            current_image(&sandbox)
        )),
        "{}",
        status.stdout
    );
    // Drift: a container that is gone is named as such.
    podman(&["rm", "--force", CONTAINER]);
    let status = sandbox.plumb(&["status"]).ok();
    assert!(
        status.stdout.contains(&format!(
            "container: microblog is not running (its release names {})",
            current_image(&sandbox)
        )),
        "{}",
        status.stdout
    );
}
