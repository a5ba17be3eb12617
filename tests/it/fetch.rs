//! Fetching the deploy repo: local path, file://, and ssh:// from a real sshd
//! with a pinned host key.

use std::fs;
use std::process::Command;

use tempfile::TempDir;

use crate::harness::{GitRepo, Sandbox, sh};
use crate::sshd::Sshd;

#[test]
fn fetches_from_a_file_url() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let url = format!("file://{}", repo.path().display());
    sandbox.plumb(&["reconcile", "--once", "--repo", &url]).ok();
    assert!(
        sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );
}

#[test]
fn the_machines_git_configuration_cannot_redirect_the_fetch() {
    let real = GitRepo::example();
    let decoy = GitRepo::example();
    decoy.write("templates/decoy.txt", "decoy\n");
    let decoy_head = decoy.commit("decoy");
    let home = TempDir::new().unwrap();
    let url = format!("file://{}", real.path().display());
    // What root's ~/.gitconfig (or /etc/gitconfig) could say: fetch
    // something else whenever this URL is named.
    fs::write(
        home.path().join(".gitconfig"),
        format!(
            "[url \"file://{}\"]\n\tinsteadOf = {url}\n",
            decoy.path().display()
        ),
    )
    .unwrap();
    let sandbox = Sandbox::new();
    let run = sandbox
        .command(&["reconcile", "--once", "--repo", &url])
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let deployed = sandbox.state()["deployed"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(deployed, real.git(&["rev-parse", "HEAD"]).trim());
    assert_ne!(deployed, decoy_head);
}

#[test]
fn fetches_a_sub_path_and_a_branch_from_a_bare_remote() {
    let work = GitRepo::new();
    work.write("README", "monorepo\n");
    let sub = work.path().join("ops/blog");
    fs::create_dir_all(&sub).unwrap();
    sh(Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", crate::harness::example_dir().display()))
        .arg(&sub));
    work.commit("ops");
    work.git(&["branch", "-m", "main", "production"]);
    let bare = TempDir::new().unwrap();
    sh(Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(work.path())
        .arg(bare.path()));

    let sandbox = Sandbox::new();
    let url = bare.path().display().to_string();
    sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--branch",
            "production",
            "--path",
            "ops/blog",
        ])
        .ok();
    assert!(sandbox.path("/etc/nginx/conf.d/microblog.conf").exists());
    sandbox
        .plumb(&["reconcile", "--once", "--repo", &url, "--branch", "nope"])
        .fails_with(4, "branch \"nope\" not found");
}

#[test]
fn an_unreachable_remote_is_a_fetch_error_naming_it() {
    let sandbox = Sandbox::new();
    sandbox
        .plumb(&["reconcile", "--once", "--repo", "/nonexistent/deploy.git"])
        .fails_with(
            4,
            "fetch from /nonexistent/deploy.git failed: /nonexistent/deploy.git does not exist",
        );
}

#[test]
fn fetches_over_ssh_with_the_pinned_host_key() {
    let sshd = Sshd::start();
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let config = sshd.host_config("host_key");
    let url = sshd.url(repo.path());
    let args = [
        "reconcile",
        "--once",
        "--repo",
        &url,
        "--config",
        config.to_str().unwrap(),
    ];
    sandbox.plumb(&args).ok();
    assert!(
        sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );

    repo.write("templates/extra.txt", "x\n").commit("second");
    let run = sandbox.plumb(&args).ok();
    assert!(run.stdout.contains("deployed"), "{}", run.stdout);
}

#[test]
fn refuses_an_ssh_server_whose_key_is_not_the_pinned_one() {
    let sshd = Sshd::start();
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    let config = sshd.host_config("other_key");
    let url = sshd.url(repo.path());
    let run = sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
        .fails_with(4, "does NOT match the key pinned");
    let port = sshd.port;
    assert!(
        run.stderr.contains(&format!("[127.0.0.1]:{port}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&sshd.host_key_fingerprint()),
        "{}",
        run.stderr
    );
    // ssh ends its lines with \r\n: no escaped \r reaches the message.
    assert!(!run.stderr.contains("\\r"), "{}", run.stderr);
    assert!(!sandbox.state_dir().join("current").exists());

    // An empty known_hosts: no trust on first use.
    fs::write(sshd.dir.path().join("known_hosts"), "").unwrap();
    sandbox
        .plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
        .fails_with(4, "not in known_hosts");
}

#[test]
fn the_default_known_hosts_is_read_and_a_missing_key_file_is_named() {
    let sshd = Sshd::start();
    let repo = GitRepo::example();
    let sandbox = Sandbox::new();
    // The pinned key in the default place, /etc/plumb/known_hosts (here
    // under the sandbox root); the host config does not name it.
    sshd.host_config("host_key");
    let d = sshd.dir.path();
    fs::create_dir_all(sandbox.path("/etc/plumb")).unwrap();
    fs::copy(
        d.join("known_hosts"),
        sandbox.path("/etc/plumb/known_hosts"),
    )
    .unwrap();
    let config = d.join("default-known-hosts.yaml");
    let url = sshd.url(repo.path());
    let run = |key: &str| {
        fs::write(
            &config,
            format!("ssh:\n  key_file: {}\n", d.join(key).display()),
        )
        .unwrap();
        sandbox.plumb(&[
            "reconcile",
            "--once",
            "--repo",
            &url,
            "--config",
            config.to_str().unwrap(),
        ])
    };
    let missing = d.join("no_such_key");
    run("no_such_key").fails_with(
        4,
        &format!("ssh key file {} does not exist", missing.display()),
    );
    run("client_key").ok();
}

/// The names of the packs in a git object directory.
fn pack_names(objects: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(objects.join("pack"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pack"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_first_fetch_from_a_local_repo_takes_its_packs_as_they_are() {
    let repo = GitRepo::example_minimal();
    repo.git(&["gc", "-q"]);
    let packed = pack_names(&repo.path().join(".git/objects"));
    assert_eq!(packed.len(), 1, "{packed:?}");
    // And a commit on top whose objects are loose.
    let head = repo.write("notes.txt", "loose\n").commit("loose");
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let mirror = sandbox.state_dir().join("repo.git");
    let mirrored = pack_names(&mirror.join("objects"));
    assert!(
        mirrored.contains(&packed[0]),
        "the source's pack is indexed as it is: {mirrored:?}"
    );
    let fsck = || {
        sh(Command::new("git").arg("--git-dir").arg(&mirror).args([
            "fsck",
            "--no-dangling",
            &head,
        ]));
    };
    fsck();
    // After the deploy, the objects it copied loose are in a pack of their
    // own (each loose one is a file to open on every read).
    let loose: Vec<_> = fs::read_dir(mirror.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.len() == 2)
        .collect();
    assert!(loose.is_empty(), "loose objects left: {loose:?}");
    let repacked = pack_names(&mirror.join("objects"));
    assert_eq!(repacked.len(), 2, "{repacked:?}");
    assert!(repacked.contains(&packed[0]), "{repacked:?}");
    fsck();
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));

    // A seed killed half-way (its marker stands, the loose objects never
    // came): the next run empties the mirror's objects and starts again.
    let objects = mirror.join("objects");
    let source_pack = packed[0].trim_end_matches(".pack");
    for entry in fs::read_dir(objects.join("pack")).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(source_pack)
        {
            fs::remove_file(path).unwrap();
        }
    }
    fs::write(objects.join("plumb-seeding"), "").unwrap();
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    assert!(!objects.join("plumb-seeding").exists());
    fsck();

    // A clone that borrows its objects (alternates) is left to the transport.
    let shared = TempDir::new().unwrap();
    sh(Command::new("git")
        .args(["clone", "-q", "--shared"])
        .arg(repo.path())
        .arg(shared.path()));
    let other = Sandbox::new();
    let url = shared.path().display().to_string();
    other.plumb(&["reconcile", "--once", "--repo", &url]).ok();
    let fetched = pack_names(&other.state_dir().join("repo.git/objects"));
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_ne!(fetched[0], packed[0], "a pack the transport wrote");
}

#[test]
fn the_mirror_is_repacked_as_deploys_pile_up_packs() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    let packs = |s: &Sandbox| {
        fs::read_dir(s.state_dir().join("repo.git/objects/pack"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "pack")
            })
            .count()
    };
    repo.git(&["gc", "-q"]);
    sandbox.reconcile(&repo).ok();
    // The first fetch's pack holds the whole history: it is never rewritten.
    let first: Vec<_> = fs::read_dir(sandbox.state_dir().join("repo.git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    let mut most = 0;
    for n in 0..24 {
        let yaml = repo.read("deploy.yaml");
        let start = yaml.find("app_version: ").unwrap();
        let end = start + yaml[start..].find('\n').unwrap();
        let yaml = format!("{}app_version: \"{n}\"{}", &yaml[..start], &yaml[end..]);
        repo.write("deploy.yaml", &yaml).commit(&n.to_string());
        sandbox.reconcile(&repo).ok();
        most = most.max(packs(&sandbox));
    }
    assert!(most <= 17, "{most} packs at most");
    assert!(packs(&sandbox) < 17, "merged");
    assert!(first[0].exists(), "the largest pack was left as it was");
    // Everything is still there: history, trees, the next run.
    assert!(sandbox.reconcile(&repo).ok().stdout.contains("up to date"));
    sandbox.plumb(&["rollback", "--wait"]).ok();
}
