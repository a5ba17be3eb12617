//! Logging set-up: human lines on stderr, `-v` for detail, `RUST_LOG` wins.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber; `verbose` counts `-v` flags.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "plumb=debug,warn",
        _ => "plumb=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
