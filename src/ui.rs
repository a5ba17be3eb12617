//! What the operator reads: one output path. Lines on stdout say what plumb
//! does as it does it; warnings go to stderr; diagnostics go through
//! `tracing` (`-v`, `RUST_LOG`). Colour only on a terminal. A closed pipe
//! (`plumb status | head -1`) ends the output quietly instead of panicking.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

static QUIET: AtomicBool = AtomicBool::new(false);
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Install the diagnostics subscriber; `verbose` counts `-v` flags.
pub fn init(verbose: u8, quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
    let default = match verbose {
        0 => "warn",
        1 => "plumb=debug,warn",
        _ => "plumb=trace,debug",
    };
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| default.parse().expect("valid default filter"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .without_time(),
        )
        .with(filter)
        .try_init();
}

/// A line of output (not with `-q`).
pub fn line(text: impl Display) {
    if !QUIET.load(Ordering::Relaxed) {
        out(text);
    }
}

/// A line of output even with `-q` (the answer a command exists for).
pub fn out(text: impl Display) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}")
        .and_then(|_| stdout.flush())
        .is_err()
    {
        // The reader went away (a closed pipe): stop writing, keep going.
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Text as it is, without a newline (diffs).
pub fn raw(text: &str) {
    if CLOSED.load(Ordering::Relaxed) || QUIET.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// A step as it starts.
pub fn step(step: impl Display) {
    line(format_args!("  {step}"));
}

/// A step of an undo as it starts.
pub fn undo_step(step: impl Display) {
    line(format_args!("  undo: {step}"));
}

/// A step that failed (its error names the step).
pub fn failed(error: impl Display) {
    let first = error.to_string();
    let first = first.lines().next().unwrap_or_default().to_string();
    line(format_args!("  FAILED: {first}"));
}

/// A warning on stderr.
pub fn warn(text: &str) {
    let prefix = if std::io::stderr().is_terminal() {
        "\x1b[33mwarning\x1b[0m"
    } else {
        "warning"
    };
    let _ = writeln!(std::io::stderr(), "{prefix}: {text}");
}

/// An error on stderr (the last thing a failed command prints).
pub fn error(text: impl Display) {
    let prefix = if std::io::stderr().is_terminal() {
        "\x1b[31merror\x1b[0m"
    } else {
        "error"
    };
    let _ = writeln!(std::io::stderr(), "{prefix}: {text}");
}
