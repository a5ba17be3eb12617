//! Trusting the deploy repo: signed commits (SSH and OpenPGP, every commit
//! of the range), no silent rewinds, narrow write authority, and host
//! config files that only root can change.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{GitRepo, Run, Sandbox, sh};

const UNTRUSTED: i32 = 11;
const REWIND: i32 = 12;

/// A sandbox whose host config holds `lines`.
fn configured(lines: &str) -> Sandbox {
    let mut sandbox = Sandbox::new();
    let config = sandbox.root.path().join("plumb.yaml");
    fs::write(&config, lines).unwrap();
    sandbox.config = Some(config);
    sandbox
}

/// A key pair made by ssh-keygen in `dir`; returns the private key's path.
fn ssh_key(dir: &Path, name: &str, kind: &[&str]) -> PathBuf {
    let key = dir.join(name);
    sh(Command::new("ssh-keygen")
        .args(kind)
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&key));
    key
}

/// An allowed signers line for `key` as `principal`, with `options`.
fn signer_line(key: &Path, principal: &str, options: &str) -> String {
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    let (kind, blob) = (fields.next().unwrap(), fields.next().unwrap());
    format!("{principal} {options} {kind} {blob}\n").replace("  ", " ")
}

/// Commit everything, signed with the SSH key at `key`.
fn ssh_commit(repo: &GitRepo, key: &Path, message: &str) -> String {
    repo.git(&["add", "-A"]);
    repo.git(&[
        "-c",
        "gpg.format=ssh",
        "-c",
        &format!("user.signingkey={}", key.display()),
        "commit",
        "-q",
        "-S",
        "--allow-empty",
        "-m",
        message,
    ]);
    repo.git(&["rev-parse", "HEAD"]).trim().to_string()
}

fn reconcile(sandbox: &Sandbox, repo: &GitRepo, extra: &[&str]) -> Run {
    let mut args = vec!["reconcile", "--once", "--repo"];
    let url = repo.url();
    args.push(&url);
    args.extend(extra);
    sandbox.plumb(&args)
}

#[test]
fn a_rewind_or_unrelated_history_is_refused_unless_allowed_for_one_run() {
    let repo = GitRepo::example_minimal();
    let v1 = repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let v2 = repo.write("templates/x.txt", "2\n").commit("v2");
    let yaml = repo
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 6");
    let v2 = {
        let _ = v2;
        repo.write("deploy.yaml", &yaml).commit("v2 unit")
    };
    sandbox.reconcile(&repo).ok();
    let live = sandbox.current_release();

    // git reset --hard v1 && git push -f
    repo.git(&["reset", "-q", "--hard", &v1]);
    let run = sandbox
        .reconcile(&repo)
        .fails_with(REWIND, "does not descend");
    assert!(run.stderr.contains("--allow-rewind"), "{}", run.stderr);
    assert_eq!(sandbox.current_release(), live, "nothing changed");
    assert_eq!(sandbox.state()["deployed"]["commit"], v2);
    let status = sandbox.plumb(&["status", "--repo", &repo.url()]).ok();
    assert!(
        status.stdout.contains("refused: rewind"),
        "{}",
        status.stdout
    );

    // Losing state.json does not turn the check off: the live release says.
    fs::remove_file(sandbox.state_dir().join("state.json")).unwrap();
    sandbox
        .reconcile(&repo)
        .fails_with(REWIND, "does not descend");

    // An orphan branch with unrelated history.
    repo.git(&["checkout", "-q", "--orphan", "other"]);
    repo.commit("unrelated");
    repo.git(&["branch", "-q", "-M", "main"]);
    sandbox
        .reconcile(&repo)
        .fails_with(REWIND, "does not descend");

    // Said so, for one run.
    reconcile(&sandbox, &repo, &["--allow-rewind"]).ok();
    assert_ne!(sandbox.current_release(), live);
}

#[test]
fn every_commit_since_the_deployed_one_must_carry_a_trusted_ssh_signature() {
    let keys = tempfile::TempDir::new().unwrap();
    let alice = ssh_key(keys.path(), "alice", &["-t", "ed25519"]);
    let bob = ssh_key(keys.path(), "bob", &["-t", "ecdsa", "-b", "256"]);
    let carol = ssh_key(keys.path(), "carol", &["-t", "rsa", "-b", "2048"]);
    let mallory = ssh_key(keys.path(), "mallory", &["-t", "ed25519"]);
    let old = ssh_key(keys.path(), "old", &["-t", "ed25519"]);
    let signers = keys.path().join("allowed_signers");
    fs::write(
        &signers,
        [
            signer_line(&alice, "alice@example.org", ""),
            signer_line(&bob, "bob@example.org", "namespaces=\"git\""),
            signer_line(&carol, "carol@example.org", ""),
            signer_line(&old, "old@example.org", "valid-before=\"20200101\""),
        ]
        .concat(),
    )
    .unwrap();
    let sandbox = configured(&format!("allowed_signers: {}\n", signers.display()));

    let repo = GitRepo::example_minimal();
    ssh_commit(&repo, &alice, "signed by alice");
    reconcile(&sandbox, &repo, &[]).ok();

    // Three commits, by ed25519, ECDSA and RSA keys: all verified.
    repo.write("templates/a.txt", "a\n");
    ssh_commit(&repo, &bob, "bob");
    repo.write("templates/b.txt", "b\n");
    ssh_commit(&repo, &carol, "carol");
    let yaml = repo
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 6");
    repo.write("deploy.yaml", &yaml);
    let head = ssh_commit(&repo, &alice, "alice again");
    reconcile(&sandbox, &repo, &[]).ok();
    assert_eq!(sandbox.state()["deployed"]["commit"], head);
    let live = sandbox.current_release();

    // An unsigned commit in the middle refuses the whole range, even with a
    // signed head (Flux would look at the head only).
    repo.write("templates/c.txt", "c\n").commit("unsigned");
    let unsigned = repo
        .git(&["rev-parse", "--short=12", "HEAD"])
        .trim()
        .to_string();
    repo.write("templates/d.txt", "d\n");
    ssh_commit(&repo, &alice, "signed on top");
    let run = reconcile(&sandbox, &repo, &[]).fails_with(UNTRUSTED, "not signed");
    assert!(
        run.stderr.contains(&unsigned),
        "names the commit: {}",
        run.stderr
    );
    assert_eq!(sandbox.current_release(), live);

    // Unknown and expired keys, named by their fingerprint.
    let stranger = GitRepo::example_minimal();
    ssh_commit(&stranger, &mallory, "by mallory");
    let fresh = configured(&format!("allowed_signers: {}\n", signers.display()));
    let run = reconcile(&fresh, &stranger, &[]).fails_with(UNTRUSTED, "not in allowed_signers");
    let fingerprint = sh(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(mallory.with_extension("pub")));
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
    assert!(run.stderr.contains(&fingerprint), "{}", run.stderr);
    assert!(
        !fresh.state_dir().join("current").exists(),
        "nothing rendered"
    );

    let expired = GitRepo::example_minimal();
    ssh_commit(&expired, &old, "by an expired key");
    reconcile(
        &configured(&format!("allowed_signers: {}\n", signers.display())),
        &expired,
        &[],
    )
    .fails_with(UNTRUSTED, "expired");
}

#[test]
fn a_signature_that_does_not_match_its_commit_is_refused() {
    let keys = tempfile::TempDir::new().unwrap();
    let alice = ssh_key(keys.path(), "alice", &["-t", "ed25519"]);
    let signers = keys.path().join("allowed_signers");
    fs::write(&signers, signer_line(&alice, "alice@example.org", "")).unwrap();
    let repo = GitRepo::example_minimal();
    let signed = ssh_commit(&repo, &alice, "signed");
    // The same signature on other content: a commit object forged by hand.
    let object = repo.git(&["cat-file", "commit", &signed]);
    let forged = object.replace("\nsigned\n", "\nsigned, but changed\n");
    assert_ne!(forged, object);
    let file = repo.path().join(".git/forged");
    fs::write(&file, forged).unwrap();
    let oid = repo.git(&["hash-object", "-t", "commit", "-w", file.to_str().unwrap()]);
    repo.git(&["reset", "-q", "--hard", oid.trim()]);
    let sandbox = configured(&format!("allowed_signers: {}\n", signers.display()));
    reconcile(&sandbox, &repo, &[]).fails_with(UNTRUSTED, "does not match the commit's content");
}

#[test]
fn a_merge_brings_in_every_commit_of_its_side_branch_for_checking() {
    let keys = tempfile::TempDir::new().unwrap();
    let alice = ssh_key(keys.path(), "alice", &["-t", "ed25519"]);
    let signers = keys.path().join("allowed_signers");
    fs::write(&signers, signer_line(&alice, "alice@example.org", "")).unwrap();
    let sandbox = configured(&format!("allowed_signers: {}\n", signers.display()));
    let repo = GitRepo::example_minimal();
    ssh_commit(&repo, &alice, "base");
    reconcile(&sandbox, &repo, &[]).ok();

    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.write("templates/t.txt", "t\n");
    ssh_commit(&repo, &alice, "topic work");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("templates/m.txt", "m\n");
    ssh_commit(&repo, &alice, "main work");
    let merge = |repo: &GitRepo| {
        repo.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={}", alice.display()),
            "merge",
            "-q",
            "-S",
            "--no-ff",
            "-m",
            "merge topic",
            "topic",
        ])
    };
    merge(&repo);
    reconcile(&sandbox, &repo, &[]).ok();

    // The same, with an unsigned commit on the side branch.
    repo.git(&["checkout", "-q", "topic"]);
    repo.write("templates/u.txt", "u\n")
        .commit("unsigned topic work");
    repo.git(&["checkout", "-q", "main"]);
    merge(&repo);
    reconcile(&sandbox, &repo, &[]).fails_with(UNTRUSTED, "not signed");
}

/// A GnuPG home with one key of `algo`; returns (home, fingerprint).
fn gpg_key(dir: &Path, name: &str, algo: &str) -> (PathBuf, String) {
    let home = dir.join(format!("gnupg-{name}"));
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    sh(Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args([
            "--quick-gen-key",
            &format!("{name} <{name}@example.org>"),
            algo,
            "sign",
            "never",
        ]));
    let listing = sh(Command::new("gpg").env("GNUPGHOME", &home).args([
        "--batch",
        "--with-colons",
        "--list-keys",
    ]));
    let fingerprint = listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .unwrap()
        .to_string();
    (home, fingerprint)
}

fn gpg_commit(repo: &GitRepo, home: &Path, fingerprint: &str, message: &str) -> String {
    repo.git(&["add", "-A"]);
    sh(Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .env("GNUPGHOME", home)
        .args([
            "-c",
            "gpg.format=openpgp",
            "-c",
            &format!("user.signingkey={fingerprint}"),
        ])
        .args(["commit", "-q", "-S", "--allow-empty", "-m", message]));
    repo.git(&["rev-parse", "HEAD"]).trim().to_string()
}

#[test]
fn openpgp_signatures_by_ed25519_and_rsa_keys_in_the_keyring_are_accepted() {
    let dir = tempfile::TempDir::new().unwrap();
    let (ed_home, ed) = gpg_key(dir.path(), "edith", "ed25519");
    let (rsa_home, rsa) = gpg_key(dir.path(), "ross", "rsa2048");
    let (eve_home, eve) = gpg_key(dir.path(), "eve", "ed25519");
    let keyring = dir.path().join("keyring.asc");
    let mut armored = String::new();
    for (home, fpr) in [(&ed_home, &ed), (&rsa_home, &rsa)] {
        armored.push_str(&sh(Command::new("gpg")
            .env("GNUPGHOME", home)
            .args(["--batch", "--armor", "--export", fpr])));
    }
    fs::write(&keyring, armored).unwrap();
    let sandbox = configured(&format!("openpgp_certs: {}\n", keyring.display()));

    let repo = GitRepo::example_minimal();
    gpg_commit(&repo, &ed_home, &ed, "by edith");
    reconcile(&sandbox, &repo, &[]).ok();
    repo.write("templates/r.txt", "r\n");
    let head = gpg_commit(&repo, &rsa_home, &rsa, "by ross");
    reconcile(&sandbox, &repo, &[]).ok();
    assert_eq!(sandbox.state()["deployed"]["commit"], head);

    repo.write("templates/e.txt", "e\n");
    gpg_commit(&repo, &eve_home, &eve, "by eve");
    let run = reconcile(&sandbox, &repo, &[]).fails_with(UNTRUSTED, "not in openpgp_certs");
    assert!(
        run.stderr.contains(&eve[eve.len() - 16..]),
        "names the key: {}",
        run.stderr
    );
}

#[test]
fn host_config_files_that_others_could_change_are_refused() {
    let repo = GitRepo::example_minimal();
    let sandbox = configured("keep_releases: 5\n");
    let config = sandbox.config.clone().unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o666)).unwrap();
    let run = sandbox
        .reconcile(&repo)
        .fails_with(2, "writable by group or others");
    assert!(run.stderr.contains("chmod go-w"), "{}", run.stderr);
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let nobody = sh(Command::new("id").args(["-u", "nobody"]));
    sh(Command::new("chown").arg(nobody.trim()).arg(&config));
    sandbox.reconcile(&repo).fails_with(2, "owned by uid");

    // A key file named by the host config is held to the same rule.
    sh(Command::new("chown").arg("0").arg(&config));
    let signers = sandbox.root.path().join("allowed_signers");
    fs::write(&signers, "").unwrap();
    fs::set_permissions(&signers, fs::Permissions::from_mode(0o646)).unwrap();
    fs::write(&config, format!("allowed_signers: {}\n", signers.display())).unwrap();
    sandbox.reconcile(&repo).fails_with(2, "allowed_signers");
}

#[test]
fn a_commit_may_not_write_plumbs_own_units_or_what_hands_out_root() {
    for (path, why) in [
        (
            "/etc/systemd/system/plumb.service.d/evil.conf",
            "plumb's own units",
        ),
        ("/etc/systemd/system/plumb.timer", "plumb's own units"),
        ("/etc/sudoers.d/web", "sudo"),
        ("/etc/ssh/sshd_config.d/evil.conf", "ssh"),
        ("/root/.ssh/authorized_keys", "ssh keys"),
        ("/etc/cron.d/evil", "cron"),
    ] {
        let repo = GitRepo::example_minimal();
        let yaml = repo.read("deploy.yaml").replace(
            "    files:\n",
            &format!("    files:\n      - path: {path}\n        source: app/static/style.css\n"),
        );
        repo.write("deploy.yaml", &yaml).commit("escalate");
        // Even a host that allows all of /etc and /root.
        let sandbox = configured("allow_paths: [/etc, /root]\n");
        let run = sandbox
            .reconcile(&repo)
            .fails_with(5, "whatever allow_paths says");
        assert!(run.stderr.contains(why), "{path}: {}", run.stderr);
    }
}

#[test]
fn a_managed_path_never_goes_through_a_linked_directory() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    // /etc/nginx/conf.d on this host leads elsewhere.
    let elsewhere = sandbox.path("/srv/elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(sandbox.path("/etc/nginx")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, sandbox.path("/etc/nginx/conf.d")).unwrap();
    let run = sandbox.reconcile(&repo).fails_with(6, "is a symlink");
    assert!(run.stderr.contains("/etc/nginx/conf.d"), "{}", run.stderr);
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written there"
    );
    assert_eq!(
        sandbox.state()["quarantine"],
        serde_json::json!([]),
        "the host's problem"
    );
}

#[test]
fn rollback_takes_only_the_name_of_a_release() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    for bad in ["../../etc", "/var/lib/plumb/releases/x", ".tmp-x", "a/b"] {
        sandbox
            .plumb(&["rollback", bad, "--repo", &repo.url()])
            .fails_with(2, "is not a release");
    }
}

#[test]
fn files_the_deploy_never_references_are_never_read() {
    // 200 KB in the repo, 20 KB per file at most: nothing references the
    // big files, so they are neither read nor counted.
    let repo = GitRepo::example_minimal();
    let big = "x".repeat(100_000);
    repo.write("docs/big-1.txt", &big)
        .write("docs/big-2.txt", &big)
        .commit("unrelated big files");
    let sandbox = configured("limits: {max_blob_bytes: 20000, max_repo_bytes: 150000}\n");
    sandbox.reconcile(&repo).ok();
    // The same file referenced by a managed file is read, and refused.
    let yaml = repo.read("deploy.yaml").replacen(
        "    files:\n",
        "    files:\n      - path: /etc/microblog/big.txt\n        source: docs/big-1.txt\n",
        1,
    );
    repo.write("deploy.yaml", &yaml).commit("reference one");
    sandbox
        .reconcile(&repo)
        .fails_with(5, "docs/big-1.txt: is 100000 bytes, larger than 20000");
}

#[test]
fn a_commit_larger_than_the_limits_is_refused_and_the_host_untouched() {
    let repo = GitRepo::example_minimal();
    for (limits, needle) in [
        ("max_files: 3", "more than 3 managed files"),
        (
            "max_file_bytes: 200",
            "the most a managed file may have is 200",
        ),
        ("max_rendered_bytes: 1000", "more than 1000 rendered bytes"),
        ("max_blob_bytes: 4000", "larger than 4000"),
        ("max_repo_bytes: 20000", "too large to read"),
    ] {
        let sandbox = configured(&format!("limits: {{{limits}}}\n"));
        let run = sandbox.reconcile(&repo).fails_with(5, needle);
        assert!(
            run.stderr.contains("limits."),
            "names the limit: {}",
            run.stderr
        );
        assert!(!sandbox.state_dir().join("current").exists(), "{limits}");
    }
}

#[test]
fn validate_checks_the_signature_policy_over_a_commit_range() {
    let keys = tempfile::TempDir::new().unwrap();
    let alice = ssh_key(keys.path(), "alice", &["-t", "ed25519"]);
    let signers = keys.path().join("allowed_signers");
    fs::write(&signers, signer_line(&alice, "alice@example.org", "")).unwrap();
    let repo = GitRepo::example();
    let base = repo.git(&["rev-parse", "HEAD"]).trim().to_string();
    repo.write("templates/a.txt", "a\n");
    ssh_commit(&repo, &alice, "a");
    repo.write("templates/b.txt", "b\n");
    ssh_commit(&repo, &alice, "b");
    let sandbox = Sandbox::new();
    let check = |range: &str| {
        sandbox.plumb(&[
            "validate",
            repo.path().to_str().unwrap(),
            "--signatures",
            range,
            "--allowed-signers",
            signers.to_str().unwrap(),
        ])
    };
    let run = check(&format!("{base}..HEAD")).ok();
    assert!(
        run.stdout.contains("2 commit(s): every one signed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("signed by alice@example.org"),
        "{}",
        run.stdout
    );
    repo.write("templates/c.txt", "c\n").commit("unsigned");
    let run = check(&format!("{base}..HEAD"));
    assert_eq!(run.code, UNTRUSTED, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("not signed"), "{}", run.stdout);
}
