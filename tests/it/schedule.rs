//! crontab(5) schedules: the OnCalendar= lines plumb renders fire exactly
//! when the crontab line does, checked against the real
//! `systemd-analyze calendar` for over 100 expressions.

use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};

/// Hand-picked lines: names, ranges, lists, steps, shortcuts, and the
/// day-of-month / day-of-week rule in all its forms.
const LINES: &[&str] = &[
    "0 3 * * *",
    "*/15 * * * *",
    "30 2 * * MON-FRI",
    "@weekly",
    "@daily",
    "@hourly",
    "@monthly",
    "@yearly",
    "0 0 1,15 * 5",
    "0 12 * jan-mar 7",
    "0 0 13 * FRI",
    "0 0 */2 * MON",
    "0 0 1 * */2",
    "15 10 * * 0",
    "0 0 29 2 *",
    "0 0 31 * *",
    "5 4 * * sun",
    "0 22 * * 1-5",
    "23 0-20/2 * * *",
    "0 0,12 1 */2 *",
    "0 4 8-14 * *",
    "0 4 8-14 * 3",
    "*/5 9-17 * * mon-fri",
    "0 0 1 jan,jul *",
    "59 23 31 dec *",
    "0 6 * * 6,0",
    "0 6 * * 6-7",
    "7 */3 * * *",
    "0 0 L * *",
];

/// Lines built from every combination of a few forms of each field.
fn generated() -> Vec<String> {
    let minutes = ["0", "*/20", "5-10", "1,31"];
    let hours = ["*", "3", "9-17/4"];
    let doms = ["*", "1", "10-12", "*/10"];
    let months = ["*", "FEB", "*/5"];
    let dows = ["*", "MON", "0,3", "*/2"];
    let mut out = Vec::new();
    for (i, m) in minutes.iter().enumerate() {
        for (j, h) in hours.iter().enumerate() {
            for (k, d) in doms.iter().enumerate() {
                for (l, mo) in months.iter().enumerate() {
                    for (o, w) in dows.iter().enumerate() {
                        // A deterministic sample of about one in two.
                        if (i + j + k + l + o) % 2 == 0 {
                            out.push(format!("{m} {h} {d} {mo} {w}"));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The next `n` elapses of a timer with these OnCalendar= lines after `base`.
fn systemd_next(specs: &[String], base: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let out = Command::new("systemd-analyze")
        .env("TZ", "UTC")
        .arg("calendar")
        .arg(format!("--iterations={n}"))
        .arg(format!(
            "--base-time={}",
            base.format("%Y-%m-%d %H:%M:%S UTC")
        ))
        .args(specs)
        .output()
        .expect("systemd-analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{specs:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut times: Vec<DateTime<Utc>> = text
        .lines()
        .filter_map(|l| {
            l.trim().strip_prefix("Next elapse: ").or_else(|| {
                l.trim()
                    .split_once(": ")
                    .filter(|(k, _)| k.starts_with("Iter."))
                    .map(|(_, v)| v)
            })
        })
        .map(|v| {
            // "Thu 2026-11-26 03:00:00 UTC"
            let v = v.split_once(' ').unwrap().1.trim_end_matches(" UTC");
            Utc.from_utc_datetime(
                &chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").unwrap(),
            )
        })
        .collect();
    times.sort();
    times.dedup();
    times.truncate(n);
    times
}

#[test]
fn rendered_on_calendar_lines_fire_exactly_when_the_crontab_line_does() {
    let base = Utc.with_ymd_and_hms(2026, 11, 26, 10, 17, 0).unwrap();
    let mut lines: Vec<String> = LINES.iter().map(|s| s.to_string()).collect();
    lines.extend(generated());
    let mut checked = 0;
    for line in &lines {
        let specs = match plumb::spec::schedule::on_calendar(line) {
            Ok(specs) => specs,
            Err(e) => {
                // Only croner/Quartz extensions are refused, with a reason.
                assert!(line.contains('L'), "{line} refused: {e}");
                continue;
            }
        };
        let ours = plumb::spec::schedule::next_times(line, base, 20).unwrap();
        let systemd = systemd_next(&specs, base, 20);
        assert_eq!(ours, systemd, "{line} rendered as {specs:?}");
        checked += 1;
    }
    println!(
        "schedule: {checked} crontab lines agree with systemd-analyze calendar over 20 firings each"
    );
    assert!(checked >= 100, "only {checked} lines checked");
}
