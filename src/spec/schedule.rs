//! crontab(5) schedules translated exactly into systemd `OnCalendar=` specs.
//!
//! Each field is expanded to the set of values it matches and written back as
//! a list of values and `a..b` runs, so nothing is approximated. crontab fires
//! when day-of-month *or* day-of-week matches if both are restricted (neither
//! starts with `*`); systemd requires both, so that case becomes two specs.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use croner::parser::CronParser;
use thiserror::Error;

/// A schedule that is not a crontab line plumb can translate.
#[derive(Debug, Error)]
#[error("schedule {line:?}: {reason}")]
pub struct ScheduleError {
    pub line: String,
    pub reason: String,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: &[&str] = &["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The next `n` times (UTC) the crontab line `line` fires after `after`.
///
/// Computed by the croner crate, with crontab(5)'s rule for the two day
/// fields: when both are restricted — neither starts with `*` — either may
/// match; otherwise both must. (croner alone treats `*/2` as restricted.)
pub fn next_times(
    line: &str,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    on_calendar(line)?; // the same validation as rendering (it also checks it fires)
    let fail = |reason: String| ScheduleError {
        line: line.to_string(),
        reason,
    };
    let fields = expand(line).map_err(&fail)?;
    let parts: Vec<&str> = fields.split_whitespace().collect();
    let either = !parts[2].starts_with('*') && !parts[4].starts_with('*');
    let cron = CronParser::builder()
        .dom_and_dow(!either)
        .build()
        .parse(fields)
        .map_err(|e| fail(e.to_string()))?;
    let mut times = Vec::with_capacity(n);
    let mut at = after;
    for _ in 0..n {
        at = cron
            .find_next_occurrence(&at, false)
            .map_err(|e| fail(e.to_string()))?;
        times.push(at);
    }
    Ok(times)
}

/// The first firing of five crontab fields after now, if any.
fn next_fire(fields: &str, either: bool) -> Option<DateTime<Utc>> {
    let cron = CronParser::builder()
        .dom_and_dow(!either)
        .build()
        .parse(fields)
        .ok()?;
    cron.find_next_occurrence(&Utc::now(), false).ok()
}

/// `@daily`-style shortcuts as their five fields; other lines unchanged.
fn expand(line: &str) -> Result<&str, String> {
    Ok(match line.trim() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => {
            return Err(format!("{other} has no calendar equivalent"));
        }
        other => other,
    })
}

/// The `OnCalendar=` values equivalent to the crontab line `line`.
pub fn on_calendar(line: &str) -> Result<Vec<String>, ScheduleError> {
    let fail = |reason: String| ScheduleError {
        line: line.to_string(),
        reason,
    };
    let expanded = expand(line).map_err(&fail)?;
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(fail(format!(
            "has {} fields; a crontab schedule has 5 (minute hour day-of-month month day-of-week)",
            fields.len()
        )));
    };
    let minutes = field(minute, 0, 59, &[]).map_err(&fail)?;
    let hours = field(hour, 0, 23, &[]).map_err(&fail)?;
    let doms = field(dom, 1, 31, &[]).map_err(&fail)?;
    let months = field(month, 1, 12, MONTHS).map_err(&fail)?;
    // 7 is Sunday as well as 0.
    let dows: BTreeSet<u32> = field(dow, 0, 7, DAYS)
        .map_err(&fail)?
        .into_iter()
        .map(|d| d % 7)
        .collect();

    // plumb's schedules are UTC, in the daemon and in timers alike.
    let time = format!("{}:{}:00 UTC", list(&hours, 0, 23), list(&minutes, 0, 59));
    let date = |doms: &BTreeSet<u32>| format!("*-{}-{}", list(&months, 1, 12), list(doms, 1, 31));
    let all_doms: BTreeSet<u32> = (1..=31).collect();
    let either = !dom.starts_with('*') && !dow.starts_with('*');
    if next_fire(expanded, either).is_none() {
        return Err(fail("never fires (no such date)".into()));
    }
    let mut specs = Vec::new();
    if either {
        specs.push(format!("{} {time}", date(&doms)));
        specs.push(format!("{} {} {time}", weekdays(&dows), date(&all_doms)));
    } else if dows.len() == 7 {
        specs.push(format!("{} {time}", date(&doms)));
    } else {
        specs.push(format!("{} {} {time}", weekdays(&dows), date(&doms)));
    }
    Ok(specs)
}

/// The values one crontab field matches.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<BTreeSet<u32>, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + min);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number or name"))?;
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is outside {min}-{max}"))
        }
    };
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {step:?} is not a positive number"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // `a/step` runs from a to the end of the range, as in Vixie cron.
            (a, if step.is_some() { max } else { a })
        };
        if start > end {
            return Err(format!("range {range:?} runs backwards"));
        }
        set.extend((start..=end).step_by(step.unwrap_or(1) as usize));
    }
    Ok(set)
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
        ] {
            assert!(on_calendar(bad).is_err(), "{bad} accepted");
        }
    }
}
