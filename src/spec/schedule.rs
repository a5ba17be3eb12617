//! crontab(5) schedules: their next firing times, and their exact systemd
//! `OnCalendar=` translation. One parser (the croner crate) reads the line;
//! each field's set of values is written back as a list of values and
//! `a..b` runs, so nothing is approximated. crontab fires
//! when day-of-month *or* day-of-week matches if both are restricted (neither
//! starts with `*`); systemd requires both, so that case becomes two specs.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use thiserror::Error;

/// A schedule that is not a crontab line plumb can translate.
#[derive(Debug, Error)]
#[error("schedule {line:?}: {reason}")]
pub struct ScheduleError {
    pub line: String,
    pub reason: String,
}

const SYSTEMD_DAYS: &[&str] = &["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// A crontab line as croner parsed it: the values each field matches.
struct Parsed {
    cron: croner::Cron,
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    doms: BTreeSet<u32>,
    months: BTreeSet<u32>,
    /// 0 is Sunday (7 is folded into it).
    dows: BTreeSet<u32>,
    /// crontab(5): when both day fields are restricted (neither starts with
    /// `*`), a day matches if either does. (croner alone would treat `*/2`
    /// as restricted.)
    either: bool,
}

/// Parse `line` with croner: five fields or an `@daily`-style shortcut, and
/// nothing a systemd calendar cannot say (`L`, `W`, `#`, `?`, `+`, seconds).
fn parse(line: &str) -> Result<Parsed, ScheduleError> {
    let fail = |reason: String| ScheduleError {
        line: line.to_string(),
        reason,
    };
    let text = line.trim();
    if text.starts_with('@') {
        let known = [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        if !known.contains(&text.to_ascii_lowercase().as_str()) {
            return Err(fail(format!("{text} has no calendar equivalent")));
        }
    } else {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(fail(format!(
                "has {fields} fields; a crontab schedule has 5 (minute hour day-of-month month day-of-week)"
            )));
        }
    }
    let parts: Vec<&str> = text.split_whitespace().collect();
    let either = parts.len() == 5 && !parts[2].starts_with('*') && !parts[4].starts_with('*');
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(!either)
        .build()
        .parse(text)
        .map_err(|e| fail(e.to_string()))?;
    let pattern = &cron.pattern;
    if pattern.days.has_modifiers()
        || pattern.days_of_week.has_modifiers()
        || text.contains(['?', '+'])
    {
        return Err(fail(
            "uses L, W, #, ? or +, which a systemd calendar cannot express".into(),
        ));
    }
    let set = |values: Vec<u16>| values.into_iter().map(u32::from).collect::<BTreeSet<u32>>();
    let parsed = Parsed {
        minutes: set(pattern.minutes.values()),
        hours: set(pattern.hours.values()),
        doms: set(pattern.days.values()),
        months: set(pattern.months.values()),
        dows: set(pattern.days_of_week.values())
            .into_iter()
            .map(|d| d % 7)
            .collect(),
        either,
        cron,
    };
    Ok(parsed)
}

/// The next `n` times (UTC) the crontab line `line` fires after `after`.
pub fn next_times(
    line: &str,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    let parsed = parse(line)?;
    let mut times = Vec::with_capacity(n);
    let mut at = after;
    for _ in 0..n {
        at = parsed
            .cron
            .find_next_occurrence(&at, false)
            .map_err(|e| ScheduleError {
                line: line.to_string(),
                reason: e.to_string(),
            })?;
        times.push(at);
    }
    Ok(times)
}

/// The `OnCalendar=` values equivalent to the crontab line `line`.
pub fn on_calendar(line: &str) -> Result<Vec<String>, ScheduleError> {
    let p = parse(line)?;
    if p.cron.find_next_occurrence(&Utc::now(), false).is_err() {
        return Err(ScheduleError {
            line: line.to_string(),
            reason: "never fires (no such date)".into(),
        });
    }
    // plumb's schedules are UTC, in the daemon and in timers alike.
    let time = format!(
        "{}:{}:00 UTC",
        list(&p.hours, 0, 23),
        list(&p.minutes, 0, 59)
    );
    let date = |doms: &BTreeSet<u32>| format!("*-{}-{}", list(&p.months, 1, 12), list(doms, 1, 31));
    let all_doms: BTreeSet<u32> = (1..=31).collect();
    let mut specs = Vec::new();
    if p.either {
        specs.push(format!("{} {time}", date(&p.doms)));
        specs.push(format!("{} {} {time}", weekdays(&p.dows), date(&all_doms)));
    } else if p.dows.len() == 7 {
        specs.push(format!("{} {time}", date(&p.doms)));
    } else {
        specs.push(format!("{} {} {time}", weekdays(&p.dows), date(&p.doms)));
    }
    Ok(specs)
}

/// `*` for a full set, else values and `a..b` runs joined by commas.
fn list(values: &BTreeSet<u32>, min: u32, max: u32) -> String {
    if values.len() as u32 == max - min + 1 {
        return "*".into();
    }
    runs(values)
        .into_iter()
        .map(|(a, b)| match b - a {
            0 => format!("{a:02}"),
            1 => format!("{a:02},{b:02}"),
            _ => format!("{a:02}..{b:02}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn weekdays(values: &BTreeSet<u32>) -> String {
    runs(values)
        .into_iter()
        .map(|(a, b)| {
            let (a, b) = (SYSTEMD_DAYS[a as usize], SYSTEMD_DAYS[b as usize]);
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Consecutive runs of a sorted set, as inclusive (start, end) pairs.
fn runs(values: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in values {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == v => *end = v,
            _ => out.push((v, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_common_lines() {
        assert_eq!(on_calendar("0 3 * * *").unwrap(), ["*-*-* 03:00:00 UTC"]);
        assert_eq!(
            on_calendar("*/15 * * * *").unwrap(),
            ["*-*-* *:00,15,30,45:00 UTC"]
        );
        assert_eq!(
            on_calendar("30 2 * * MON-FRI").unwrap(),
            ["Mon..Fri *-*-* 02:30:00 UTC"]
        );
        assert_eq!(on_calendar("@weekly").unwrap(), ["Sun *-*-* 00:00:00 UTC"]);
        assert_eq!(
            on_calendar("0 0 1,15 * 5").unwrap(),
            ["*-*-01,15 00:00:00 UTC", "Fri *-*-* 00:00:00 UTC"]
        );
        assert_eq!(
            on_calendar("0 12 * jan-mar 7").unwrap(),
            ["Sun *-01..03-* 12:00:00 UTC"]
        );
    }

    #[test]
    fn rejects_what_it_cannot_express() {
        for bad in [
            "@reboot",
            "0 3 * *",
            "61 * * * *",
            "0 0 * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "0 0 L * *",
            "0 0 * * 5#2",
            "0 0 ? * MON",
            "0 0 15W * *",
            "0 0 * * +MON",
            "0 0 0 1 1 *",
        ] {
            assert!(on_calendar(bad).is_err(), "{bad} accepted");
        }
    }
}
