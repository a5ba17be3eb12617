//! Build script: the commit plumb is built from, for `plumb --version`
//! (`PLUMB_COMMIT` in the environment wins, e.g. when building from a
//! tarball; "unknown" without either).

use std::path::Path;
use std::process::Command;

fn main() {
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
