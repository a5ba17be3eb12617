//! Build script: the commit plumb is built from, for `plumb --version`
//! (`PLUMB_COMMIT` in the environment wins, e.g. when building from a
//! tarball; "unknown" without either); and the unwinder linked in.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    static_unwinder();
    println!("cargo:rerun-if-env-changed=PLUMB_COMMIT");
    let commit = std::env::var("PLUMB_COMMIT").ok().or_else(git_head);
    println!(
        "cargo:rustc-env=PLUMB_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // A new commit (or a checkout) changes one of these.
    for file in [".git/HEAD", ".git/packed-refs"] {
        if Path::new(file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    if let Ok(head) = std::fs::read_to_string(".git/HEAD")
        && let Some(reference) = head.trim().strip_prefix("ref: ")
        && Path::new(".git").join(reference).exists()
    {
        println!("cargo:rerun-if-changed=.git/{reference}");
    }
}

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Link gcc's unwinder (`libgcc_eh.a`, what `gcc -static-libgcc` uses) into
/// the binary, so that every run loads one shared library fewer
/// (`libgcc_s.so`: about 0.1 ms here, docs/decisions.md). Only for a native
/// GNU build whose linker driver is gcc's; otherwise Rust links libgcc_s as
/// usual. A test checks which libraries the binary needs.
fn static_unwinder() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("TARGET") != var("HOST")
        || var("CARGO_CFG_TARGET_FEATURE").contains("crt-static")
    {
        return;
    }
    // The driver rustc links with (`cc` unless configured) knows its own.
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let archive = match Command::new(&linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    {
        Ok(out) => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        Err(e) => {
            println!("cargo:warning=cannot run {linker} ({e}): plumb will need libgcc_s.so");
            return;
        }
    };
    if !archive.is_absolute() || !archive.is_file() {
        return;
    }
    println!("cargo:rerun-if-changed={}", archive.display());
    // A directory of its own: the linker finds this archive there and none
    // of the other libraries beside it.
    let dir = PathBuf::from(var("OUT_DIR"));
    if std::fs::copy(&archive, dir.join("libgcc_eh.a")).is_ok() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
}
