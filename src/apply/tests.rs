//! The executor, the journal and release switching against the in-memory
//! host: no process is spawned. Every step is made to fail in turn, and
//! every step is made the last one before a crash; after each, the host is
//! on a complete release with a consistent state, and the next run
//! converges.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::check;
use super::journal::{self, Resume};
use super::observe::{self, Depth, Drift};
use super::record::StateStore;
use super::release::{self, Source};
use super::{Executor, Failure};
use crate::host::memory::Behavior;
use crate::host::{Host, MemoryHost, UnitState};
use crate::plan::state::DeployedRef;
use crate::plan::{self, Action, Plan, Target};
use crate::render::desired::{AppBuild, Desired, DesiredFile, SourceFile};
use crate::spec::health::{HealthCheck, Probe};
use crate::spec::layout::Layout;

const UNIT: &str = "/etc/systemd/system/web.service";
const SITE: &str = "/etc/nginx/conf.d/web.conf";
const CONF: &str = "/etc/web/config.yaml";

fn layout() -> Layout {
    Layout {
        state_dir: PathBuf::from("/var/lib/plumb"),
    }
}

/// Commit `commit` of a small repo: a unit, a site, a config whose text is
/// `config`, an app with one source file and a build step, a health check.
fn desired(commit: &str, config: &str) -> Desired {
    let mut d = Desired {
        commit: commit.into(),
        ..Desired::default()
    };
    for (path, text) in [(UNIT, "[Service]\n"), (SITE, "server {}\n"), (CONF, config)] {
        d.files.insert(
            PathBuf::from(path),
            DesiredFile {
                bytes: text.as_bytes().to_vec(),
                mode: 0o644,
                origin: "test".into(),
            },
        );
    }
    d.units.push("web.service".into());
    d.triggers.insert(
        "web.service".into(),
        vec![format!("files{CONF}"), "app/web/".into()],
    );
    d.apps.insert(
        "web".into(),
        vec![SourceFile {
            path: "main.py".into(),
            blob: crate::spec::tree::Blob::held(b"print('hi')\n".to_vec()),
            executable: false,
        }],
    );
    d.builds.insert(
        "web".into(),
        AppBuild {
            user: Some("web".into()),
            steps: vec!["make".into()],
            timeout_secs: 60,
            shared: Vec::new(),
            key: format!("key-{commit}"),
        },
    );
    d.health.push(HealthCheck {
        app: "web".into(),
        probe: Probe::Tcp {
            address: "127.0.0.1:8000".into(),
        },
        timeout_ms: 1000,
        interval_ms: 100,
        user: None,
    });
    d
}

fn host() -> MemoryHost {
    let host = MemoryHost::new();
    host.add_user("web", 1000);
    host.set_unit("web.service", UnitState::Active);
    host
}

fn store(host: &MemoryHost) -> StateStore {
    StateStore::load(host, &layout().state_file()).unwrap()
}

fn exec(host: &MemoryHost) -> Executor<'_> {
    Executor {
        host,
        layout: Box::leak(Box::new(layout())),
        keep_releases: 3,
    }
}

/// What `reconcile` does after rendering: build the release if needed,
/// plan, execute.
fn deploy(
    host: &MemoryHost,
    d: &Desired,
) -> Result<Result<Plan, Failure>, crate::error::ApplyError> {
    let layout = layout();
    let mut store = store(host);
    let planned = plan::release::planned(d, "<new>");
    let observed = observe::observe(host, &layout, &store.state, &planned, Depth::Quick);
    let target = if plan::needs_release(&planned, &observed) {
        let mut id = format!("r-{}", d.commit);
        while host.files().stat(&layout.release(&id)).is_ok() {
            id.push('+'); // as new_id does, never over an old release
        }
        let source = Source {
            desired: d,
            planned: &planned,
            previous: observed.current.as_ref(),
            tampered: &observed.tampered,
            restat: &observed.restat,
            keys: &super::secrets::Keys::Placeholders,
            recycle: release::recyclable(
                host,
                &layout,
                exec(host).keep_releases,
                &store.state,
                observed.current.as_ref(),
            ),
        };
        Target {
            info: release::build(host, &layout, &id, &source)?,
            new: true,
        }
    } else {
        Target {
            info: observed.current.clone().unwrap(),
            new: false,
        }
    };
    let deployed = DeployedRef {
        commit: d.commit.clone(),
        release: target.info.id.clone(),
        fingerprint: String::new(),
    };
    let plan = plan::plan(&target, &observed, &deployed).unwrap();
    Ok(exec(host).run(&plan, &mut store)?.map(|_| plan))
}

/// The host is on a release of `commit` named `id` (or `id` and a suffix):
/// `current`, every owned link through it, the state recording it, no
/// journal.
#[track_caller]
fn assert_on(host: &MemoryHost, id: &str, commit: &str) {
    let layout = layout();
    let files = host.files();
    let current = release::current_id(host, &layout).expect("current");
    assert!(current.starts_with(id), "{current} is not {id}");
    let id = current.as_str();
    let state = store(host).state;
    let deployed = state.deployed.expect("a deployed release");
    assert_eq!(
        (deployed.release.as_str(), deployed.commit.as_str()),
        (id, commit)
    );
    assert!(
        files.stat(&layout.journal()).is_err(),
        "journal left behind"
    );
    let info = release::load(host, &layout, id).expect("a complete release");
    let managed: BTreeSet<PathBuf> = info.managed().collect();
    assert_eq!(*state.owned, managed);
    for path in &managed {
        assert_eq!(
            files.read_link(path).unwrap(),
            layout.link_target(path),
            "{path:?}"
        );
    }
    assert!(
        observe::inspect(host, &layout, &info, Depth::Full)
            .tampered
            .is_empty()
    );
    assert!(observe::detect(host, &layout, &store(host).state, Depth::Full).is_empty());
}

#[test]
fn a_deploy_builds_links_records_and_calls_the_host_in_order() {
    let host = host();
    let plan = deploy(&host, &desired("c1", "a")).unwrap().unwrap();
    assert_on(&host, "r-c1", "c1");
    assert!(plan.new_release);
    let calls = host.calls();
    assert_eq!(
        calls,
        [
            "Build as web in /var/lib/plumb/releases/.tmp-r-c1/app/web: make",
            "nginx -t",
            "systemd-analyze verify /etc/systemd/system/web.service",
            "systemctl daemon-reload",
            "systemctl reset-failed web.service",
            "systemctl enable --now web.service",
            "nginx reload",
            "health web: TCP connect to 127.0.0.1:8000",
        ]
    );
    // The release is complete: every file with its stat recorded.
    let info = release::load(&host, &layout(), "r-c1").unwrap();
    assert!(info.manifest.values().all(|e| e.stat.is_some()));
    assert_eq!(
        host.files().read(Path::new(CONF)).unwrap(),
        b"a",
        "read through the link and current"
    );
}

#[test]
fn an_unchanged_file_is_a_hard_link_to_the_previous_release_and_a_config_change_restarts() {
    let host = host();
    deploy(&host, &desired("c1", "a")).unwrap().unwrap();
    host.clear_calls();
    let mut d2 = desired("c2", "b");
    d2.builds.get_mut("web").unwrap().key = "key-c1".into(); // same build
    deploy(&host, &d2).unwrap().unwrap();
    assert_on(&host, "r-c2", "c2");
    let files = host.files();
    let layout = layout();
    let ino = |id: &str, key: &str| files.stat(&layout.release_file(id, key)).unwrap().ino;
    let unit = "files/etc/systemd/system/web.service";
    assert_eq!(
        ino("r-c1", unit),
        ino("r-c2", unit),
        "unchanged: same inode, same mtime"
    );
    let conf = "files/etc/web/config.yaml";
    assert_ne!(ino("r-c1", conf), ino("r-c2", conf));
    assert_eq!(
        host.calls(),
        [
            "systemctl reset-failed web.service",
            "systemctl restart web.service",
            "health web: TCP connect to 127.0.0.1:8000",
        ],
        "the build is reused, only the unit whose config changed restarts"
    );
}

#[test]
fn the_same_rendering_under_a_new_commit_is_recorded_without_a_release() {
    let host = host();
    deploy(&host, &desired("c1", "a")).unwrap().unwrap();
    host.clear_calls();
    let mut same = desired("c2", "a");
    same.builds.get_mut("web").unwrap().key = "key-c1".into();
    let plan = deploy(&host, &same).unwrap().unwrap();
    assert!(plan.is_noop() && !plan.new_release);
    assert_on(&host, "r-c1", "c2");
    assert!(host.calls().is_empty());
    let state = store(&host).state;
    assert_eq!(state.history.last().unwrap().result, "no changes");
}

#[test]
fn a_failed_health_check_rolls_back_and_quarantines_the_commit() {
    let host = host();
    deploy(&host, &desired("c1", "a")).unwrap().unwrap();
    host.script("health web", Behavior::Exit(1));
    let failure = deploy(&host, &desired("c2", "b")).unwrap().unwrap_err();
    assert!(matches!(failure, Failure::RolledBack(_)));
    assert_on(&host, "r-c1", "c1");
    let state = store(&host).state;
    assert!(state.quarantined("c2").is_some(), "the commit's fault");
    assert_eq!(state.rollbacks_total, 1);
    assert_eq!(state.history.last().unwrap().result, "rolled back");
}

#[test]
fn a_failure_of_the_host_is_undone_but_never_quarantines() {
    let host = host();
    deploy(&host, &desired("c1", "a")).unwrap().unwrap();
    host.script("systemctl daemon-reload", Behavior::ExitOnce(1));
    let mut d2 = desired("c2", "b");
    d2.files.get_mut(Path::new(UNIT)).unwrap().bytes = b"[Service]\nNice=1\n".to_vec();
    let failure = deploy(&host, &d2).unwrap().unwrap_err();
    assert!(
        matches!(failure, Failure::RolledBack(ref e) if e.blame() == crate::error::Blame::Host)
    );
    assert!(store(&host).state.quarantined("c2").is_none());
}

/// Fail each change of a deploy of c`n+1` over c1…c`n` in turn (and, with
/// `crash`, every change after it too, as if plumb died there). After
/// each: the host is whole, and the next run (resuming the journal)
/// converges on c`n+1`. With 3 before it, the deploy recycles r-c1.
fn sweep(crash: bool, before: usize) -> usize {
    let target = format!("c{}", before + 1);
    let id = format!("r-{target}");
    let mut points = 0;
    for n in 1.. {
        let host = host();
        for i in 1..=before {
            deploy(&host, &desired(&format!("c{i}"), &i.to_string()))
                .unwrap()
                .unwrap();
        }
        let base = host.changes();
        if crash {
            host.crash_at(n);
        } else {
            host.fail_at(n);
        }
        let first = deploy(&host, &desired(&target, "b"));
        if n > host.changes() - base && matches!(first, Ok(Ok(_))) {
            assert_on(&host, &id, &target);
            break;
        }
        points += 1;
        host.revive();
        // Whatever happened, `current` is a complete release, and the
        // state file parses.
        let current = release::current_id(&host, &layout()).expect("current exists");
        assert!(
            release::load(&host, &layout(), &current).is_some(),
            "{n}: incomplete"
        );
        let mut store = store(&host);
        if let Some(unfinished) = journal::read(&host, &layout()).unwrap() {
            journal::resume(&exec(&host), unfinished, Resume::Finish, &mut store)
                .unwrap_or_else(|e| panic!("change {n}: resume failed: {e}"));
        }
        // A failed run may have quarantined nothing: it was the host's fault.
        assert!(store.state.quarantined(&target).is_none(), "change {n}");
        match deploy(&host, &desired(&target, "b")) {
            Ok(Ok(_)) => {}
            other => panic!("change {n}: the next run did not converge: {other:?}"),
        }
        assert_on(&host, &id, &target);
        assert!(
            host.calls()
                .iter()
                .any(|c| c == "systemctl restart web.service"),
            "change {n}: the restart the deploy needs happened"
        );
    }
    points
}

#[test]
fn a_failure_at_any_change_leaves_the_host_whole_and_the_next_run_converges() {
    let points = sweep(false, 1);
    println!("{points} failure points");
    assert!(points > 30, "only {points} failure points");
}

#[test]
fn a_crash_at_any_change_leaves_the_host_whole_and_the_next_run_converges() {
    let points = sweep(true, 1);
    println!("{points} crash points");
    assert!(points > 30, "only {points} crash points");
}

#[test]
fn a_failure_or_a_crash_while_recycling_a_release_leaves_the_host_whole() {
    for crash in [false, true] {
        let points = sweep(crash, 3);
        assert!(points > 30, "only {points} points (crash: {crash})");
    }
}

#[test]
fn a_release_is_written_into_the_one_it_prunes_keeping_only_the_current_releases_files() {
    let host = host();
    let layout = layout();
    let files = host.files();
    let many = |commit: &str, config: &str| {
        let mut d = desired(commit, config);
        for i in 0..40 {
            d.files.insert(
                PathBuf::from(format!("/etc/web/many/{i}.conf")),
                DesiredFile {
                    bytes: format!("{i}\n").into_bytes(),
                    mode: 0o644,
                    origin: "test".into(),
                },
            );
        }
        d
    };
    let changes = |commit: &str, config: &str| {
        let before = host.changes();
        deploy(&host, &many(commit, config)).unwrap().unwrap();
        host.changes() - before
    };
    changes("c1", "a");
    changes("c2", "b");
    let fresh = changes("c3", "c");
    // By hand, in r-c1 (the release the next deploy prunes): a stray file,
    // and the unit replaced by other bytes (another inode).
    let unit = format!("files{UNIT}");
    let in_old = |key: &str| layout.release_file("r-c1", key);
    files
        .write_new(&in_old("files/etc/stray"), b"stray", 0o644)
        .unwrap();
    files.remove_file(&in_old(&unit)).unwrap();
    files
        .write_new(&in_old(&unit), b"[Service]\nExecStart=/bin/false\n", 0o644)
        .unwrap();
    files
        .set_mode(&in_old("files/etc/nginx/conf.d"), 0o777)
        .unwrap();
    let recycled = changes("c4", "d");
    assert_on(&host, "r-c4", "c4");
    assert_eq!(
        release::list(&host, &layout).unwrap(),
        ["r-c2", "r-c3", "r-c4"]
    );
    assert!(
        recycled + 30 < fresh,
        "the 40 unchanged files were linked again: {recycled} changes, {fresh} without recycling"
    );
    let ino = |id: &str, key: &str| files.stat(&layout.release_file(id, key)).unwrap().ino;
    for key in [
        unit.as_str(),
        &format!("files{SITE}"),
        "files/etc/web/many/7.conf",
    ] {
        assert_eq!(ino("r-c4", key), ino("r-c3", key), "{key}");
    }
    assert_eq!(
        files.read(&layout.release_file("r-c4", &unit)).unwrap(),
        b"[Service]\n"
    );
    assert_eq!(
        files
            .read(&layout.release_file("r-c4", &format!("files{CONF}")))
            .unwrap(),
        b"d"
    );
    assert!(
        files
            .stat(&layout.release_file("r-c4", "files/etc/stray"))
            .is_err()
    );
    let dir = files
        .stat(&layout.release_file("r-c4", "files/etc/nginx/conf.d"))
        .unwrap();
    assert_eq!(dir.mode, 0o755, "a directory changed by hand is made again");
}

#[test]
fn a_file_edited_through_the_live_release_is_not_kept_from_the_recycled_one() {
    let host = host();
    let layout = layout();
    let files = host.files();
    for (commit, config) in [("c1", "a"), ("c2", "b"), ("c3", "c")] {
        deploy(&host, &desired(commit, config)).unwrap().unwrap();
    }
    // The site is the same inode in r-c1 and the live r-c3: an edit in
    // place shows in both.
    let site = format!("files{SITE}");
    host.edit_in_place(Path::new(SITE), b"server { listen 81; }\n");
    assert_eq!(
        files.read(&layout.release_file("r-c1", &site)).unwrap(),
        b"server { listen 81; }\n"
    );
    deploy(&host, &desired("c4", "d")).unwrap().unwrap();
    assert_on(&host, "r-c4", "c4");
    assert!(
        files.stat(&layout.release("r-c1")).is_err(),
        "r-c1 recycled"
    );
    assert_eq!(
        files.read(&layout.release_file("r-c4", &site)).unwrap(),
        b"server {}\n"
    );
}

#[test]
fn only_a_release_nothing_needs_is_recycled() {
    let layout = layout();
    let recyclable = |host: &MemoryHost| {
        let store = store(host);
        let current =
            release::current_id(host, &layout).and_then(|id| release::load(host, &layout, &id));
        release::recyclable(host, &layout, 3, &store.state, current.as_ref())
    };
    let three = || {
        let host = host();
        for (commit, config) in [("c1", "a"), ("c2", "b"), ("c3", "c")] {
            deploy(&host, &desired(commit, config)).unwrap().unwrap();
        }
        host
    };
    let host = three();
    assert_eq!(recyclable(&host).as_deref(), Some("r-c1"));
    // Fewer than keep_releases once the new one exists: none.
    let state = store(&host).state;
    assert_eq!(release::recyclable(&host, &layout, 4, &state, None), None);
    // The release a rollback would go back to (c2 quarantined: r-c1).
    let mut saved = store(&host);
    let quarantine = crate::plan::state::StateChange::Quarantine {
        commit: "c2".into(),
        reason: "test".into(),
    };
    saved.change(&host, &quarantine).unwrap();
    assert_eq!(recyclable(&host), None);
    // One a service still runs on.
    let host = three();
    let mut saved = store(&host);
    saved
        .state
        .started_on
        .insert("old.service".into(), "r-c1".into());
    saved.save(&host).unwrap();
    assert_eq!(recyclable(&host), None);
    // One that ran containers.
    let host = three();
    let containers = layout.release("r-c1").join("containers");
    host.files().create_dir_all(&containers).unwrap();
    assert_eq!(recyclable(&host), None);
}

#[test]
fn an_unfinished_plan_superseded_by_a_newer_commit_is_undone_first() {
    // c2's deploy died right after its commit point (at the unit restart).
    let host = host_with_crash_after(|c| c.contains("reset-failed web.service"));
    let journal = journal::read(&host, &layout()).unwrap().expect("a journal");
    assert_eq!(journal.plan.commit, "c2");
    let mut store = store(&host);
    let done = journal::resume(&exec(&host), journal, Resume::Supersede, &mut store).unwrap();
    assert!(done.contains("superseded"), "{done}");
    assert_on(&host, "r-c1", "c1");
    assert!(
        store.state.quarantined("c2").is_none(),
        "superseded is not failed"
    );
}

/// A host that deployed c1, then crashed deploying c2 right after the
/// first host call matching `at`.
fn host_with_crash_after(at: impl Fn(&str) -> bool) -> MemoryHost {
    for n in 1.. {
        let host = host();
        deploy(&host, &desired("c1", "a")).unwrap().unwrap();
        host.clear_calls();
        host.crash_at(n);
        let _ = deploy(&host, &desired("c2", "b"));
        host.revive();
        if host.calls().iter().any(|c| at(c)) {
            return host;
        }
        assert!(n < 500, "never reached");
    }
    unreachable!()
}

#[test]
fn a_plan_interrupted_again_and_again_is_undone_and_quarantined() {
    let host = host_with_crash_after(|c| c.starts_with("health"));
    let layout = layout();
    let mut journal = journal::read(&host, &layout).unwrap().unwrap();
    journal.attempts = journal::MAX_ATTEMPTS - 1;
    let mut store = store(&host);
    let done = journal::resume(&exec(&host), journal, Resume::Finish, &mut store).unwrap();
    assert!(done.contains("interrupted"), "{done}");
    assert_on(&host, "r-c1", "c1");
    assert!(store.state.quarantined("c2").is_some());
}

#[test]
fn pruning_keeps_the_newest_current_and_previous_releases() {
    let host = host();
    for (i, commit) in ["c1", "c2", "c3", "c4", "c5"].iter().enumerate() {
        deploy(&host, &desired(commit, &i.to_string()))
            .unwrap()
            .unwrap();
    }
    let left = release::list(&host, &layout()).unwrap();
    assert_eq!(left, ["r-c3", "r-c4", "r-c5"]);
    // An old release a service still runs on is kept.
    let pruned = release::prune(&host, &layout(), 1, &["r-c3", "r-c5"]).unwrap();
    assert_eq!(pruned.ids, ["r-c4"]);
    assert!(!pruned.containers);
}

#[test]
fn a_release_that_holds_no_files_is_still_complete() {
    let host = host();
    let empty = Desired {
        commit: "c0".into(),
        ..Desired::default()
    };
    deploy(&host, &empty).unwrap().unwrap();
    assert_on(&host, "r-c0", "c0");
}

#[test]
fn a_rollback_plan_switches_to_an_existing_release_without_building() {
    let host = host();
    deploy(&host, &desired("c1", "a")).unwrap().unwrap();
    deploy(&host, &desired("c2", "b")).unwrap().unwrap();
    host.clear_calls();
    let layout = layout();
    let r1 = release::load(&host, &layout, "r-c1").unwrap();
    let mut store = store(&host);
    let observed = observe::observe(&host, &layout, &store.state, &r1, Depth::Quick);
    let deployed = DeployedRef {
        commit: "c1".into(),
        release: "r-c1".into(),
        fingerprint: String::new(),
    };
    let plan = plan::plan(
        &Target {
            info: r1,
            new: false,
        },
        &observed,
        &deployed,
    )
    .unwrap();
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Hook { .. }))
    );
    exec(&host).run(&plan, &mut store).unwrap().unwrap();
    assert_on(&host, "r-c1", "c1");
    assert!(
        !host.calls().iter().any(|c| c.starts_with("Build")),
        "nothing built"
    );
}

#[test]
fn the_check_index_answers_only_while_what_it_recorded_is_unchanged() {
    let host = host();
    let layout = layout();
    deploy(&host, &desired("c1", "a: 1\n")).unwrap().unwrap();
    let state = store(&host).state;
    let release = state.deployed.as_ref().unwrap().release.clone();
    let sampled = || observe::detect(&host, &layout, &state, Depth::Sampled);
    assert!(
        check::accept(&host, &layout, &release).is_none(),
        "no index yet"
    );
    assert!(sampled().is_empty(), "a full check, which writes the index");
    assert!(check::accept(&host, &layout, &release).is_some());

    // A link pointed elsewhere by hand: its directory changed.
    let files = host.files();
    files.remove_link(Path::new(CONF)).unwrap();
    files
        .symlink(Path::new("/srv/other"), Path::new(CONF))
        .unwrap();
    assert!(check::accept(&host, &layout, &release).is_none());
    assert_eq!(sampled(), [Drift::Link { path: CONF.into() }]);
    files.remove_link(Path::new(CONF)).unwrap();
    files
        .symlink(&layout.link_target(Path::new(CONF)), Path::new(CONF))
        .unwrap();
    assert!(sampled().is_empty());
    assert!(check::accept(&host, &layout, &release).is_some());

    // A release file replaced by hand: the slice sees it.
    let key = format!("files{CONF}");
    let file = layout.release_file(&release, &key);
    files.remove_file(&file).unwrap();
    files.write_new(&file, b"a: 2\n", 0o644).unwrap();
    assert!(check::accept(&host, &layout, &release).is_none());
    assert_eq!(sampled(), [Drift::Modified { path: key }]);
}

#[test]
fn a_deploy_vouches_only_for_link_directories_unchanged_since_it_stamped_them() {
    let host = host();
    let layout = layout();
    // `deploy` observes and plans as `commands::deploy::prepare` does;
    // `Seen` brackets it the same way.
    let deploy_seen = |d: &Desired, meddle: &dyn Fn()| {
        let seen = check::Seen::before(&host, &layout, &store(&host).state);
        deploy(&host, d).unwrap().unwrap();
        meddle();
        let state = store(&host).state;
        let id = state.deployed.as_ref().unwrap().release.clone();
        let info = release::load(&host, &layout, &id).unwrap();
        let seen = seen.expect("the link directories settled");
        seen.record(&host, &layout, &state, &info);
        id
    };
    deploy(&host, &desired("c1", "a: 1\n")).unwrap().unwrap();
    // A content change leaves the links alone: the index answers at once.
    let id = deploy_seen(&desired("c2", "a: 2\n"), &|| {});
    assert!(check::accept(&host, &layout, &id).is_some());

    // A link pointed elsewhere after the deploy read it (while it ran):
    // its directory moved since the stamp, so nothing is vouched for.
    let files = host.files();
    let id = deploy_seen(&desired("c3", "a: 3\n"), &|| {
        files.remove_link(Path::new(CONF)).unwrap();
        files
            .symlink(Path::new("/srv/other"), Path::new(CONF))
            .unwrap();
    });
    assert!(check::accept(&host, &layout, &id).is_none());
    let state = store(&host).state;
    assert_eq!(
        observe::detect(&host, &layout, &state, Depth::Sampled),
        [Drift::Link { path: CONF.into() }]
    );
}

#[test]
fn the_check_index_looks_at_a_rotating_slice_of_a_large_release() {
    let host = host();
    let layout = layout();
    let mut d = desired("c1", "a: 1\n");
    let count = check::SLICE + 100;
    for i in 0..count {
        d.files.insert(
            PathBuf::from(format!("/etc/many/f{i:04}.conf")),
            crate::render::desired::DesiredFile {
                bytes: format!("{i}\n").into_bytes(),
                mode: 0o644,
                origin: "test".into(),
            },
        );
    }
    deploy(&host, &d).unwrap().unwrap();
    let state = store(&host).state;
    let release = state.deployed.as_ref().unwrap().release.clone();
    assert!(observe::detect(&host, &layout, &state, Depth::Sampled).is_empty());
    // The last file in the index order, beyond the first slice.
    let key = format!("files/etc/many/f{:04}.conf", count - 1);
    let file = layout.release_file(&release, &key);
    host.files().remove_file(&file).unwrap();
    host.files().write_new(&file, b"edited\n", 0o644).unwrap();
    assert!(
        check::accept(&host, &layout, &release).is_some(),
        "the first slice does not reach it"
    );
    assert!(
        check::accept(&host, &layout, &release).is_none(),
        "the second one does"
    );
    assert_eq!(
        observe::detect(&host, &layout, &state, Depth::Sampled),
        [Drift::Modified { path: key }]
    );
}
