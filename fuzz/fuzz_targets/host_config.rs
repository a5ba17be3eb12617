//! The host config: any bytes are parsed and resolved into settings, or
//! refused with an error — never a panic, a hang or unbounded memory.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use plumb::spec::settings::{Flags, HostConfig, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = HostConfig::parse("plumb.yaml", text) else {
        return;
    };
    let flags = Flags {
        hostname: Some("fuzz".into()),
        ..Flags::default()
    };
    let _ = Settings::from_config(
        &flags,
        PathBuf::from("/"),
        PathBuf::from("/etc/plumb/plumb.yaml"),
        config,
    );
});
