//! Bad input gets a clear error and loses nothing: the host stays
//! byte-for-byte as it was, and the exit code says the commit is invalid.

use std::fs;
use std::os::unix::fs::symlink;

use crate::harness::{GitRepo, Sandbox};

const INVALID: i32 = 5;

/// Deploy the example, break the repo with `breakage`, and check the second
/// run fails with `needle` and leaves the host exactly as it was (only
/// state.json records the refusal; the deployed release stays).
fn refused(breakage: impl FnOnce(&GitRepo), needle: &str) -> String {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let state_file = sandbox.state_dir().join("state.json");
    let state_dir = sandbox.state_dir();
    let without_state = |mut snapshot: std::collections::BTreeMap<_, _>| {
        snapshot.remove(&state_file);
        snapshot.remove(&state_dir); // its mtime: state.json was replaced
        snapshot
    };
    let before = without_state(sandbox.snapshot());
    let deployed = sandbox.state()["deployed"].clone();
    breakage(&repo);
    repo.commit("broken");
    let run = sandbox.reconcile(&repo).fails_with(INVALID, needle);
    assert_eq!(
        without_state(sandbox.snapshot()),
        before,
        "a refused commit changed the host"
    );
    assert_eq!(sandbox.state()["deployed"], deployed);
    run.stderr
}

#[test]
fn an_undefined_template_variable_names_template_and_line() {
    let stderr = refused(
        |repo| {
            let text = repo.read("templates/microblog-config.yaml.j2");
            repo.write(
                "templates/microblog-config.yaml.j2",
                &text.replace(
                    "site_name: {{ vars.site_name }}",
                    "site_name: {{ vars.site_title }}",
                ),
            );
        },
        "templates/microblog-config.yaml.j2 line 5",
    );
    assert!(
        stderr.contains("vars.site_title"),
        "the line is quoted: {stderr}"
    );
}

#[test]
fn a_malformed_deploy_yaml_names_file_line_and_column() {
    refused(
        |repo| {
            let text = repo.read("deploy.yaml");
            repo.write(
                "deploy.yaml",
                &text.replace("  app_version: \"1.0\"", "  app_version: [1.0"),
            );
        },
        "deploy.yaml:10:5: illegal placement of ':' indicator",
    );
}

#[test]
fn an_unknown_field_is_an_error_not_ignored() {
    refused(
        |repo| {
            let text = repo.read("deploy.yaml");
            repo.write(
                "deploy.yaml",
                &text.replace("restart_sec: 5", "restart_secs: 5"),
            );
        },
        "deploy.yaml:27:7: unknown field `restart_secs`",
    );
}

#[test]
fn a_template_syntax_error_names_the_template() {
    refused(
        |repo| {
            repo.write("templates/microblog-config.yaml.j2", "listen: {{ oops\n");
        },
        "templates/microblog-config.yaml.j2 line 1",
    );
}

#[test]
fn an_unowned_file_at_a_target_path_is_refused_and_untouched() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let extra = sandbox.path("/etc/microblog/extra.conf");
    fs::write(&extra, "# hand-written\n").unwrap();
    let before = sandbox.snapshot();
    let yaml = repo.read("deploy.yaml");
    let yaml = yaml.replace("      - path: /etc/microblog/config.yaml", "      - path: /etc/microblog/extra.conf\n        source: app/static/style.css\n      - path: /etc/microblog/config.yaml");
    // The same commit also changes a unit: nothing of it may land either.
    let yaml = yaml.replace("restart_sec: 5", "restart_sec: 7");
    repo.write("deploy.yaml", &yaml).commit("extra config");
    sandbox.reconcile(&repo).fails_with(
        INVALID,
        "/etc/microblog/extra.conf exists and is not managed by plumb",
    );
    assert_eq!(fs::read_to_string(&extra).unwrap(), "# hand-written\n");
    assert_eq!(
        sandbox.snapshot(),
        before,
        "nothing at all may change in a refused run"
    );
}

#[test]
fn an_unowned_file_blocks_even_the_first_deploy() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    let site = sandbox.path("/etc/nginx/conf.d/microblog.conf");
    fs::create_dir_all(site.parent().unwrap()).unwrap();
    fs::write(&site, "# hand-written\n").unwrap();
    sandbox.reconcile(&repo).fails_with(
        INVALID,
        "/etc/nginx/conf.d/microblog.conf exists and is not managed by plumb",
    );
    assert_eq!(fs::read_to_string(&site).unwrap(), "# hand-written\n");
    assert!(!sandbox.state_dir().join("current").exists());
    assert!(
        !sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );
}

fn with_file(path: &str) -> impl FnOnce(&GitRepo) {
    let path = path.to_string();
    move |repo: &GitRepo| {
        let text = repo.read("deploy.yaml");
        repo.write(
            "deploy.yaml",
            &format!(
                "{text}\nfiles:\n  - path: {path}\n    source: templates/microblog-config.yaml.j2\n"
            ),
        );
    }
}

#[test]
fn dot_dot_targets_are_refused() {
    refused(with_file("/etc/nginx/../shadow"), "contains `..`");
}

#[test]
fn targets_outside_the_allowed_roots_are_refused() {
    let stderr = refused(
        with_file("/srv/www/index.html"),
        "is outside the allowed roots",
    );
    assert!(stderr.contains("/srv/www/index.html"), "{stderr}");
}

#[test]
fn the_host_config_is_never_a_target() {
    refused(
        with_file("/etc/plumb/plumb.yaml"),
        "plumb's own configuration",
    );
}

#[test]
fn a_repo_symlink_pointing_outside_the_repo_is_refused() {
    let stderr = refused(
        |repo| {
            let link = repo.path().join("templates/microblog-config.yaml.j2");
            fs::remove_file(&link).unwrap();
            symlink("../../../../etc/passwd", &link).unwrap();
        },
        "points outside the deploy repo",
    );
    assert!(
        stderr.contains("templates/microblog-config.yaml.j2"),
        "{stderr}"
    );
}

#[test]
fn a_fix_pushed_after_a_broken_commit_deploys() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    let good = repo.read("deploy.yaml");
    repo.write("deploy.yaml", "version: 1\napps: [\n")
        .commit("broken");
    sandbox.reconcile(&repo).fails_with(INVALID, "deploy.yaml:");
    repo.write("deploy.yaml", &good).commit("fixed");
    sandbox.reconcile(&repo).ok();
    assert!(
        sandbox
            .path("/etc/systemd/system/microblog.service")
            .exists()
    );
}

#[test]
fn a_host_problem_is_not_blamed_on_the_commit_and_the_next_run_needs_no_force() {
    use std::os::unix::fs::PermissionsExt;
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    // A fresh `mktemp -d` root: the app's user cannot enter it.
    fs::set_permissions(sandbox.root.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let run = sandbox.reconcile(&repo).fails_with(6, "chmod o+x");
    assert!(run.stderr.contains("the host's problem"), "{}", run.stderr);
    assert_eq!(sandbox.state()["quarantine"], serde_json::json!([]));
    assert!(!sandbox.state_dir().join("current").exists());
    fs::set_permissions(sandbox.root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    sandbox.reconcile(&repo).ok();
}

#[test]
fn a_template_that_would_run_for_ever_or_grow_without_end_stops_with_an_error() {
    let started = std::time::Instant::now();
    refused(
        |repo| {
            repo.write(
                "templates/microblog-config.yaml.j2",
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\n",
            );
        },
        "ran out of fuel",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    refused(
        |repo| {
            repo.write(
                "templates/microblog-config.yaml.j2",
                "{% set a = 'x' * 10000000 %}{{ a }}{{ a }}\n",
            );
        },
        "the most a managed file may have is",
    );
}
