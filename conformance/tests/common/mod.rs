//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The testsuite: `$TCP_TESTSUITE`, or `../../shared/tcp-testsuite` relative to this crate.
/// `None` (after printing why) when it is missing, unless `CI=true`, where that fails.
pub fn suite() -> Option<PathBuf> {
    let dir = match std::env::var_os("TCP_TESTSUITE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tcp-testsuite"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "tcp-testsuite not found at {} (set TCP_TESTSUITE)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}
