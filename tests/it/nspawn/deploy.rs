//! The example deployed under a real systemd: served by the real nginx over
//! TLS, restarts exactly as announced, no unit left "changed on disk",
//! quick deploys in a row, a backup and a restore through the rendered units.

use super::{Host, started};

/// Set the example's `app_version` (shown by /health) and commit.
pub fn set_version(host: &Host, version: &str) -> String {
    let yaml = host.repo.read("deploy.yaml");
    let start = yaml.find("app_version: ").unwrap();
    let end = start + yaml[start..].find('\n').unwrap();
    let yaml = format!(
        "{}app_version: \"{version}\"{}",
        &yaml[..start],
        &yaml[end..]
    );
    host.repo.write("deploy.yaml", &yaml).commit(version)
}

/// What the app answers on /health.
pub fn health(host: &Host) -> String {
    host.c
        .ok("curl -s --max-time 5 http://127.0.0.1:8000/health")
        .trim()
        .to_string()
}

#[test]
fn the_example_runs_for_real_and_plumb_restarts_exactly_what_it_says() {
    let host = Host::new();
    let run = host.reconcile().ok();
    assert_eq!(
        started(&run.stdout),
        ["microblog-backup.timer", "microblog.service"]
    );
    assert_eq!(host.c.show("microblog.service", "ActiveState"), "active");
    assert_eq!(
        host.c.show("microblog-backup.timer", "ActiveState"),
        "active"
    );
    assert_eq!(host.c.show("microblog.service", "User"), "microblog");
    assert_eq!(health(&host), "ok 1.0");

    // nginx serves the static site over TLS, HTML revalidated, fingerprinted
    // assets immutable, the dashboard behind the secret's basic auth.
    let (status, page) = host.https("/", "");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("cache-control: no-cache"),
        "{page}"
    );
    let asset = page
        .split('"')
        .find(|s| s.starts_with("assets/") && s.ends_with(".css"))
        .map(|s| format!("/{s}"))
        .unwrap_or_else(|| panic!("no stylesheet in {page}"));
    let (status, css) = host.https(&asset, "");
    assert_eq!(status, 200);
    assert!(css.contains("immutable"), "{css}");
    assert_eq!(host.https("/dashboard", "").0, 401);
    let (status, dashboard) = host.https("/dashboard", "-u author:microblog");
    assert_eq!(status, 200, "{dashboard}");
    assert!(dashboard.contains("MicroBlog"), "{dashboard}");
    assert_eq!(host.needing_reload(), Vec::<String>::new());

    // plan agrees with the run that just finished: nothing to do.
    let plan = host.c.plumb(&["plan"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("no changes"), "{}", plan.stdout);

    // Up to date: nothing starts, nothing reloads.
    let before = host.invocations();
    let run = host.reconcile().ok();
    assert!(run.stdout.contains("up to date"), "{}", run.stdout);
    assert_eq!(host.invocations(), before);

    // The app's config changes: its service restarts, nothing else does.
    set_version(&host, "1.1");
    let run = host.reconcile().ok();
    assert_eq!(started(&run.stdout), ["microblog.service"]);
    let after = host.invocations();
    for (unit, (id, pid)) in &before {
        let restarted = after[unit].0 != *id;
        assert_eq!(
            restarted,
            unit == "microblog.service",
            "{unit}: InvocationID {id} -> {}",
            after[unit].0
        );
        if unit == "nginx.service" {
            assert_eq!(after[unit].1, *pid, "nginx was restarted, not reloaded");
        }
    }
    assert_eq!(health(&host), "ok 1.1");
    assert_eq!(host.needing_reload(), Vec::<String>::new());

    // Only the site changes: nginx reloads (same main process), the app
    // keeps running, and the new header is served.
    let yaml = host
        .repo
        .read("deploy.yaml")
        .replace("immutable: [/assets/]", "immutable: [/assets/, /fonts/]");
    host.repo.write("deploy.yaml", &yaml).commit("cache fonts");
    let before = host.invocations();
    let run = host.reconcile().ok();
    assert!(run.stdout.contains("reload nginx"), "{}", run.stdout);
    assert_eq!(started(&run.stdout), Vec::<String>::new());
    assert_eq!(host.invocations(), before);
    assert!(
        host.c
            .ok("cat /etc/nginx/conf.d/microblog.conf")
            .contains("/fonts/")
    );
    assert_eq!(host.needing_reload(), Vec::<String>::new());

    // A drop-in: systemd runs the unit with it, and with its change.
    let drop_in = |host: &Host, value: &str| {
        let yaml = host.repo.read("deploy.yaml");
        let entry = "      - path: /etc/systemd/system/microblog.service.d/greeting.conf\n        source: greeting.conf\n";
        if !yaml.contains(entry) {
            let yaml = yaml.replace("    files:\n", &format!("    files:\n{entry}"));
            host.repo.write("deploy.yaml", &yaml);
        }
        host.repo
            .write(
                "greeting.conf",
                &format!("[Service]\nEnvironment=GREETING={value}\n"),
            )
            .commit(value);
        host.reconcile().ok()
    };
    let run = drop_in(&host, "hi");
    assert_eq!(started(&run.stdout), ["microblog.service"]);
    assert_eq!(
        host.c.show("microblog.service", "Environment"),
        "PYTHONUNBUFFERED=1 GREETING=hi"
    );
    let run = drop_in(&host, "hello");
    assert!(
        run.stdout.contains("systemctl daemon-reload"),
        "{}",
        run.stdout
    );
    assert_eq!(started(&run.stdout), ["microblog.service"]);
    assert_eq!(
        host.c.show("microblog.service", "Environment"),
        "PYTHONUNBUFFERED=1 GREETING=hello"
    );
    let pid = host.c.show("microblog.service", "MainPID");
    assert!(
        host.c
            .ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"))
            .contains("GREETING=hello"),
        "the running process has the new drop-in's environment"
    );
    assert_eq!(host.needing_reload(), Vec::<String>::new());
    assert_eq!(host.c.show("microblog.service", "NRestarts"), "0");
}

#[test]
fn six_quick_deploys_in_a_row_keep_the_app_up_despite_the_start_limit() {
    // systemd refuses a sixth start within 10 s (StartLimitBurst=5): plumb
    // resets the unit's failed state and start counter before its starts.
    let host = Host::new();
    host.reconcile().ok();
    for n in 1..=6 {
        let version = format!("2.{n}");
        set_version(&host, &version);
        let run = host.reconcile();
        assert_eq!(run.code, 0, "deploy {n}:\n{}\n{}", run.stdout, run.stderr);
        assert_eq!(health(&host), format!("ok {version}"));
    }
    assert_eq!(host.c.show("microblog.service", "ActiveState"), "active");
    assert_eq!(host.c.show("microblog.service", "NRestarts"), "0");
    assert_eq!(host.needing_reload(), Vec::<String>::new());
    let state = host.c.ok("plumb status");
    assert!(state.contains("deployed:"), "{state}");
    assert!(!state.contains("quarantined"), "{state}");
}

#[test]
fn a_backup_and_a_restore_through_the_rendered_units() {
    let host = Host::new();
    host.reconcile().ok();
    let db = "/var/lib/plumb/shared/microblog/microblog.db";
    // Visits are recorded by the dashboard: make some, then back up.
    for _ in 0..3 {
        host.https("/dashboard", "-u author:microblog");
    }
    let count = |host: &Host| {
        host.c
            .ok(&format!("sqlite3 {db} 'SELECT COUNT(*) FROM visits'"))
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let visits = count(&host);
    assert!(visits >= 3, "{visits} visits recorded");
    host.c.ok("systemctl start microblog-backup.service");
    assert_eq!(host.c.show("microblog-backup.service", "Result"), "success");
    let backup = host
        .c
        .ok("ls -d /var/backups/microblog/*/ | tail -1")
        .trim()
        .trim_end_matches('/')
        .to_string();
    assert!(!backup.is_empty());

    // Lose data: the dashboard keeps recording, a post is deleted.
    host.https("/dashboard", "-u author:microblog");
    assert_eq!(count(&host), visits + 1);
    host.c
        .ok("rm /var/lib/plumb/shared/microblog/content/posts/*.md && ls /var/lib/plumb/shared/microblog/content/posts | wc -l");

    // Restore as docs/backups.md says: stop, restore, start.
    host.c.ok(&format!(
        "systemctl stop microblog.service && \
         /usr/local/lib/plumb/microblog/restore.sh {backup} && \
         systemctl start microblog.service"
    ));
    assert_eq!(count(&host), visits, "the database is the backup's");
    assert_eq!(
        host.c
            .ok(&format!("sqlite3 {db} 'PRAGMA integrity_check'"))
            .trim(),
        "ok"
    );
    assert_ne!(
        host.c
            .ok("ls /var/lib/plumb/shared/microblog/content/posts | wc -l")
            .trim(),
        "0",
        "the posts are back"
    );
    // The app owns its restored database and can write it again.
    assert_eq!(host.c.ok(&format!("stat -c %U {db}")).trim(), "microblog");
    // (Type=simple: started is not yet listening.)
    host.c.ok(
        "for i in $(seq 100); do curl -sf http://127.0.0.1:8000/health && exit; sleep 0.05; done; exit 1",
    );
    let (status, _) = host.https("/dashboard", "-u author:microblog");
    assert_eq!(status, 200);
    assert_eq!(count(&host), visits + 1);
}

#[test]
fn a_detached_host_keeps_running_on_plain_files() {
    let host = Host::new();
    host.reconcile().ok();
    host.c.plumb(&["detach"]).ok();
    // Plain files where the links were: systemd and nginx take them as they
    // are, with nothing of plumb's in the way.
    host.c.ok("test ! -L /etc/systemd/system/microblog.service && test -f /etc/systemd/system/microblog.service");
    host.c.ok("test ! -L /etc/nginx/conf.d/microblog.conf");
    host.c
        .ok("systemctl daemon-reload && systemctl restart microblog.service && nginx -t -q && systemctl reload nginx");
    assert_eq!(host.needing_reload(), Vec::<String>::new());
    host.c.ok(
        "for i in $(seq 100); do curl -sf http://127.0.0.1:8000/health && exit; sleep 0.05; done; exit 1",
    );
    assert_eq!(host.https("/", "").0, 200);
    set_version(&host, "1.1");
    host.reconcile().fails_with(2, "detached");
    assert_eq!(health(&host), "ok 1.0");
    host.c.plumb(&["attach"]).ok();
    host.reconcile().ok();
    assert_eq!(health(&host), "ok 1.1");
    host.c.ok("test -L /etc/systemd/system/microblog.service");
}
