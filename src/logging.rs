//! Logging set-up: human lines on stderr, `-v` for detail, `RUST_LOG`
//! (targets and levels, e.g. `plumb=debug,warn`) wins.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Install the global subscriber; `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "plumb=debug,warn",
        _ => "plumb=trace,debug",
    };
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| default.parse().expect("valid default filter"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .without_time(),
        )
        .with(filter)
        .init();
}
