//! The MicroBlog example app's own test suite, run with the real python3.

use std::path::Path;
use std::process::Command;

#[test]
fn microblog_unit_tests_pass() {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy-repo-example/app");
    let out = Command::new("python3")
        .args(["-B", "-m", "unittest", "discover", "-s"])
        .arg(app.join("tests"))
        .current_dir(&app)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}
