//! A real reconcile SIGKILLed at random instants under a real systemd: the
//! next run converges, with the app up, no unit changed on disk and nothing
//! left of the killed run's steps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Host;
use super::deploy::{health, set_version};

/// xorshift64*: enough randomness for kill instants, reproducible by seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn a_real_reconcile_killed_at_random_instants_converges_on_the_next_run() {
    let host = Host::new();
    host.reconcile().ok();
    let mut seed = std::env::var("PLUMB_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("kill instants from PLUMB_KILL_SEED={seed}");
    for round in 0..12 {
        let version = format!("3.{round}");
        set_version(&host, &version);
        // A deploy here takes about a second, most of it waiting for the
        // restarted app's health check; the kill lands anywhere in it.
        let delay = Duration::from_millis(next(&mut seed) % 1200);
        host.c
            .plumb_in_background("plumb-killed", &["reconcile", "--once"]);
        std::thread::sleep(delay);
        host.c.sh(
            "systemctl kill --kill-who=main -s KILL plumb-killed.service 2>/dev/null; \
             while :; do \
                 case $(systemctl show -p ActiveState --value plumb-killed.service) in \
                     inactive|failed) break ;; *) sleep 0.05 ;; esac; \
             done",
        );
        let run = host.reconcile();
        assert_eq!(
            run.code, 0,
            "round {round}, killed after {delay:?}:\n{}\n{}",
            run.stdout, run.stderr
        );
        assert_eq!(health(&host), format!("ok {version}"), "round {round}");
        assert_eq!(host.c.show("microblog.service", "ActiveState"), "active");
        assert_eq!(host.needing_reload(), Vec::<String>::new(), "round {round}");
        let verify = host.c.plumb(&["status", "--verify"]);
        assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    }
    assert_eq!(
        host.c
            .ok("find /sys/fs/cgroup -name 'plumb-step-*' | wc -l")
            .trim(),
        "0",
        "a killed run's step cgroups were left behind"
    );
}
