//! Secrets encrypted to the host with age: decrypted onto the runtime
//! directory per release, readable by their owner only, never in a
//! release, the journal, the state, a log or `plan`; a changed secret
//! restarts only what uses it; one that cannot be decrypted refuses the
//! commit; after a reboot they come back.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{GitRepo, Sandbox, sh};

/// The plaintext of the example's htpasswd secret.
const HTPASSWD: &str = "author:$apr1$plumbdem$d2esn.2NvJAhXY5/olc7Q.\n";

/// The example's test identity, copied where a host keeps it (root-only).
pub fn identity(dir: &Path) -> PathBuf {
    let path = dir.join("age.key");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/example-age.key"),
        &path,
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A sandbox that records host calls and holds the example's identity.
fn with_identity() -> Sandbox {
    let mut sandbox = Sandbox::new();
    let key = identity(sandbox.root.path());
    let config = sandbox.root.path().join("plumb.yaml");
    fs::write(&config, format!("age_identity: {}\n", key.display())).unwrap();
    sandbox.config = Some(config);
    sandbox
}

fn secret_path(sandbox: &Sandbox) -> PathBuf {
    let release = sandbox.current_release();
    sandbox.path(&format!(
        "/run/plumb/secrets/{release}/microblog/dashboard-htpasswd"
    ))
}

/// Every file below `dir` (links not followed) that holds `needle`.
fn holding(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            holding(&path, needle, out);
        } else if meta.is_file()
            && String::from_utf8_lossy(&fs::read(&path).unwrap()).contains(needle)
        {
            out.push(path);
        }
    }
}

fn encrypt(plain: &str, recipient_key: &Path) -> String {
    let recipient = sh(Command::new("age-keygen").arg("-y").arg(recipient_key));
    let input = tempfile::NamedTempFile::new().unwrap();
    fs::write(input.path(), plain).unwrap();
    sh(Command::new("age")
        .args(["-a", "-r", recipient.trim()])
        .arg(input.path()))
}

#[test]
fn a_secret_lands_on_the_runtime_dir_for_its_owner_only_and_nowhere_else() {
    let repo = GitRepo::example();
    let sandbox = with_identity();
    let run = sandbox.reconcile(&repo).ok();
    let secret = secret_path(&sandbox);
    assert_eq!(fs::read_to_string(&secret).unwrap(), HTPASSWD);
    let meta = fs::metadata(&secret).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o400);
    let www = sh(Command::new("id").args(["-u", "www-data"]));
    assert_eq!(
        meta.uid().to_string(),
        www.trim(),
        "owned by nginx's worker user"
    );
    // current/secrets/... is how the app and nginx reach it.
    let through = sandbox
        .state_dir()
        .join("current/secrets/microblog/dashboard-htpasswd");
    assert_eq!(fs::read_to_string(through).unwrap(), HTPASSWD);
    let site = fs::read_to_string(sandbox.path("/etc/nginx/conf.d/microblog.conf")).unwrap();
    assert!(
        site.contains(
            "auth_basic_user_file \"/var/lib/plumb/current/secrets/microblog/dashboard-htpasswd\";"
        ),
        "{site}"
    );
    // The plaintext is nowhere in plumb's state, releases, journal or logs.
    let mut leaks = Vec::new();
    holding(&sandbox.state_dir(), "plumbdem", &mut leaks);
    assert!(leaks.is_empty(), "plaintext in {leaks:?}");
    assert!(!run.stdout.contains("plumbdem") && !run.stderr.contains("plumbdem"));
}

#[test]
fn a_changed_secret_is_named_in_the_plan_and_restarts_only_what_uses_it() {
    let repo = GitRepo::example();
    let sandbox = with_identity();
    sandbox.reconcile(&repo).ok();
    let key = sandbox.root.path().join("age.key");
    let new = "author:$apr1$plumbdem$changedchangedchangedc\n";
    repo.write("secrets/dashboard.htpasswd.age", &encrypt(new, &key))
        .commit("rotate the dashboard password");
    let plan = sandbox.plumb(&["plan", "--repo", &repo.url()]);
    assert_eq!(plan.code, 10, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("~ change secret microblog/dashboard-htpasswd"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("plumbdem"),
        "never shown: {}",
        plan.stdout
    );
    sandbox.clear_calls();
    let run = sandbox.reconcile(&repo).ok();
    assert!(
        run.stdout
            .contains("restart microblog.service (secret microblog/dashboard-htpasswd changed)"),
        "{}",
        run.stdout
    );
    let services: Vec<String> = sandbox
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("systemctl") || c.starts_with("nginx"))
        .collect();
    assert_eq!(
        services,
        [
            "systemctl reset-failed microblog.service",
            "systemctl restart microblog.service"
        ],
        "nginx reads the file per request: no reload"
    );
    assert_eq!(fs::read_to_string(secret_path(&sandbox)).unwrap(), new);
}

#[test]
fn a_secret_this_host_cannot_decrypt_refuses_the_commit() {
    let repo = GitRepo::example();
    let sandbox = with_identity();
    sandbox.reconcile(&repo).ok();
    let live = sandbox.current_release();
    let other = tempfile::TempDir::new().unwrap();
    let stranger = other.path().join("other.key");
    sh(Command::new("age-keygen").arg("-o").arg(&stranger));
    repo.write(
        "secrets/dashboard.htpasswd.age",
        &encrypt("x:y\n", &stranger),
    )
    .commit("encrypted to another host");
    let run = sandbox
        .reconcile(&repo)
        .fails_with(5, "secret microblog/dashboard-htpasswd");
    assert!(run.stderr.contains("cannot be decrypted"), "{}", run.stderr);
    assert_eq!(sandbox.current_release(), live);
    assert_eq!(sandbox.releases().len(), 1, "no release was left behind");
}

#[test]
fn a_host_without_an_identity_cannot_deploy_secrets_and_is_told_how_to_make_one() {
    let repo = GitRepo::example();
    let sandbox = Sandbox::executing("age_identity: /nonexistent/age.key\n");
    let run = sandbox.reconcile(&repo).fails_with(6, "age-keygen");
    assert_eq!(sandbox.state()["quarantine"], serde_json::json!([]));
    assert!(
        run.stderr.contains("/nonexistent/age.key"),
        "{}",
        run.stderr
    );
}

#[test]
fn after_a_reboot_the_secrets_come_back_without_a_new_release() {
    let repo = GitRepo::example();
    let sandbox = with_identity();
    sandbox.reconcile(&repo).ok();
    let release = sandbox.current_release();
    fs::remove_dir_all(sandbox.path("/run/plumb/secrets")).unwrap(); // tmpfs after a reboot
    let status = sandbox.plumb(&["status", "--repo", &repo.url()]).ok();
    assert!(
        status.stdout.contains("secrets of release"),
        "{}",
        status.stdout
    );
    sandbox.reconcile(&repo).ok();
    assert_eq!(sandbox.current_release(), release);
    assert_eq!(fs::read_to_string(secret_path(&sandbox)).unwrap(), HTPASSWD);
}
