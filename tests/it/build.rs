//! App builds (as the app's user, with timeouts, reused when unchanged),
//! shared data that outlives releases, and hooks around the switch.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::harness::{GitRepo, Sandbox};

/// The minimal example with its build steps replaced by `steps`.
fn with_build(steps: &str, extra: &str) -> GitRepo {
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml");
    let start = yaml.find("    build:\n").unwrap();
    let end = start + yaml[start..].find("    # content/").unwrap();
    let yaml = format!(
        "{}    build:\n{steps}{extra}{}",
        &yaml[..start],
        &yaml[end..]
    );
    repo.write("deploy.yaml", &yaml).commit("build steps");
    repo
}

fn app_dir(sandbox: &Sandbox) -> std::path::PathBuf {
    sandbox.state_dir().join("current/app/microblog")
}

#[test]
fn the_build_runs_as_the_app_user_in_the_release_and_its_output_is_kept() {
    let repo = with_build(
        "      - id -u > built-by\n      - python3 bin/microblog build --content content --out build --static static\n",
        "",
    );
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let uid = fs::read_to_string(app_dir(&sandbox).join("built-by")).unwrap();
    assert_eq!(uid.trim(), "65534", "built as nobody, never root");
    assert!(app_dir(&sandbox).join("build/index.html").exists());
    // Afterwards the release belongs to root again: the app cannot change its own code.
    assert_eq!(
        fs::metadata(app_dir(&sandbox).join("built-by"))
            .unwrap()
            .uid(),
        0
    );
}

#[test]
fn a_failing_build_is_refused_with_its_output_and_nothing_switches() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let before = sandbox.content();
    let yaml = repo.read("deploy.yaml").replace(
        "      - python3 bin/microblog build",
        "      - echo compiling the assets; echo out of cheese >&2; exit 3\n      - python3 bin/microblog build",
    );
    repo.write("deploy.yaml", &yaml).commit("broken build");
    let run = sandbox
        .reconcile(&repo)
        .fails_with(5, "build of app microblog failed");
    assert!(run.stderr.contains("exited with code 3"), "{}", run.stderr);
    assert!(
        run.stderr.contains("compiling the assets") && run.stderr.contains("out of cheese"),
        "output shown: {}",
        run.stderr
    );
    assert_eq!(
        sandbox.content(),
        before,
        "no switch, no half-built release left"
    );
}

#[test]
fn a_build_step_that_hangs_is_killed_at_its_timeout() {
    let repo = with_build("      - sleep 30\n", "    timeout: 1\n");
    let sandbox = Sandbox::new();
    let started = std::time::Instant::now();
    sandbox
        .reconcile(&repo)
        .fails_with(5, "`sleep 30` did not finish within 1s and was killed");
    assert!(started.elapsed().as_secs() < 20);
    assert!(!sandbox.state_dir().join("current").exists());
}

#[test]
fn an_unchanged_build_is_reused_from_the_previous_release() {
    let repo = with_build("      - date +%s%N > stamp\n", "");
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let first = fs::metadata(app_dir(&sandbox).join("stamp")).unwrap();
    // A change outside the app: a new release, the same build.
    let yaml = repo
        .read("deploy.yaml")
        .replace("immutable: [/assets/]", "immutable: [/assets/, /img/]");
    repo.write("deploy.yaml", &yaml).commit("site only");
    let v1 = sandbox.current_release();
    sandbox.reconcile(&repo).ok();
    assert_ne!(sandbox.current_release(), v1);
    let second = fs::metadata(app_dir(&sandbox).join("stamp")).unwrap();
    assert_eq!(
        first.ino(),
        second.ino(),
        "hard-linked from the previous release, not rebuilt"
    );
    // A change of the app's source rebuilds.
    repo.write("app/static/extra.css", "p{}\n").commit("css");
    sandbox.reconcile(&repo).ok();
    let third = fs::metadata(app_dir(&sandbox).join("stamp")).unwrap();
    assert_ne!(third.ino(), first.ino(), "the source changed: built again");
}

#[test]
fn shared_data_survives_deploys_and_rollbacks() {
    let repo = GitRepo::example_minimal();
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    let shared = sandbox.state_dir().join("shared/microblog/content");
    assert!(
        shared.join("posts/hello-plumb.md").exists(),
        "seeded from the repo"
    );
    assert_eq!(
        fs::metadata(&shared).unwrap().uid(),
        65534,
        "owned by the app user"
    );
    fs::write(
        shared.join("posts/written-on-the-server.md"),
        "---\ntitle: Live\ndate: 2026-11-25\n---\nkept\n",
    )
    .unwrap();

    let yaml = repo
        .read("deploy.yaml")
        .replace("restart_sec: 5", "restart_sec: 6");
    repo.write("deploy.yaml", &yaml);
    repo.write(
        "app/content/posts/hello-plumb.md",
        "---\ntitle: Changed in git\ndate: 2026-11-01\n---\nx\n",
    )
    .commit("v2");
    sandbox.reconcile(&repo).ok();
    sandbox.plumb(&["rollback", "--repo", &repo.url()]).ok();
    assert!(
        shared.join("posts/written-on-the-server.md").exists(),
        "data outlives releases and rollbacks"
    );
    let first_post = fs::read_to_string(shared.join("posts/hello-plumb.md")).unwrap();
    assert!(
        !first_post.contains("Changed in git"),
        "seeding happens once; the server's copy wins"
    );
    let link = fs::read_link(app_dir(&sandbox).join("content")).unwrap();
    assert_eq!(link, shared);
}

#[test]
fn hooks_run_around_the_switch_and_a_failing_pre_switch_hook_stops_it() {
    let sandbox = Sandbox::executing("");
    let repo = GitRepo::example_minimal();
    let yaml = repo.read("deploy.yaml").replace(
        "    shared: [content]\n",
        "    shared: [content]\n    hooks:\n      pre_switch: [\"echo migrated > content/pre\"]\n      post_switch: [\"test -e content/pre && echo done > content/post\"]\n",
    );
    repo.write("deploy.yaml", &yaml).commit("hooks");
    sandbox.reconcile(&repo).ok();
    let shared = sandbox.state_dir().join("shared/microblog/content");
    assert_eq!(
        fs::read_to_string(shared.join("pre")).unwrap(),
        "migrated\n"
    );
    assert_eq!(fs::read_to_string(shared.join("post")).unwrap(), "done\n");

    // The next deploy backs the shared data up before its pre-switch hook.
    let v1 = sandbox.current_release();
    let yaml = repo
        .read("deploy.yaml")
        .replace(
            "echo done > content/post\"]",
            "echo done > content/post\"]\n    timeout: 5",
        )
        .replace("restart_sec: 5", "restart_sec: 6");
    let yaml = yaml.replace(
        "echo migrated > content/pre\"]",
        "echo migrated > content/pre\", \"exit 4\"]",
    );
    repo.write("deploy.yaml", &yaml).commit("failing hook");
    let run = sandbox
        .reconcile(&repo)
        .fails_with(5, "refused before the switch");
    assert!(
        run.stderr.contains("`exit 4` exited with code 4"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sandbox.current_release(),
        v1,
        "a failing pre-switch hook means no switch"
    );
    let backups = fs::read_dir(sandbox.state_dir().join("backups/microblog"))
        .unwrap()
        .count();
    assert_eq!(
        backups, 2,
        "the shared data was archived before each deploy's hooks"
    );
}

#[test]
fn an_app_from_another_git_repository_is_pinned_to_a_tag_or_a_commit() {
    let app = GitRepo::new();
    crate::harness::copy_tree(&crate::harness::example_dir().join("app"), app.path());
    app.write("VERSION", "1.0\n").commit("1.0");
    app.git(&["tag", "v1.0"]);
    let later = app.write("VERSION", "1.1\n").commit("1.1");

    let repo = GitRepo::example_minimal();
    let pinned = |rev: &str| {
        let yaml = repo.read("deploy.yaml");
        let start = yaml
            .find("    source: app\n")
            .or_else(|| yaml.find("    git:\n"))
            .unwrap();
        let end = yaml.find("    build:\n").unwrap();
        let source = format!("    git:\n      url: {}\n      rev: {rev}\n", app.url());
        repo.write(
            "deploy.yaml",
            &format!("{}{source}{}", &yaml[..start], &yaml[end..]),
        )
        .commit(rev);
    };
    pinned("v1.0");
    let sandbox = Sandbox::new();
    sandbox.reconcile(&repo).ok();
    assert_eq!(
        fs::read_to_string(app_dir(&sandbox).join("VERSION")).unwrap(),
        "1.0\n",
        "the tag, not the branch head"
    );
    assert!(
        app_dir(&sandbox).join("build/index.html").exists(),
        "built like any source"
    );

    pinned(&later);
    sandbox.reconcile(&repo).ok();
    assert_eq!(
        fs::read_to_string(app_dir(&sandbox).join("VERSION")).unwrap(),
        "1.1\n"
    );

    pinned("main");
    let run = sandbox
        .reconcile(&repo)
        .fails_with(4, "pin a tag or a full commit id");
    assert!(run.stderr.contains("revision \"main\""), "{}", run.stderr);
}
