//! The Linux harness of HydraNet-FT (design §5): network namespaces linked by veth pairs, TUN
//! devices read by the core, the redirector and host-server daemons, and the `hydranet` CLI.
//!
//! * [`tun`], [`netns`], [`topology`], [`pcap`]: the Linux pieces — TUN devices as
//!   embassy-net-driver devices, namespaces, the test network's address plan, captures.
//! * [`hostd`], [`redird`], [`services`], [`daemon`]: the two daemons and the services a host
//!   server runs.
//! * [`harness`]: a whole deployment (network plus daemons) for the demo, tests and benches.
//! * [`netdemo`], [`simdemo`]: `hydranet demo` on the network and on the simulator.
//! * [`bench`]: `hydranet bench` (failover stalls, throughput by scheme, veth vs TUN path);
//!   [`bench_stream`]: `hydranet bench stream` (a paced frame stream across a primary kill).
//!   [`tunserver`], [`bulkapp`], [`smoldev`]: the bulk server on the core's plain stack or on
//!   smoltcp that `bench path` runs on a TUN device.

pub mod bench;
pub mod bench_load;
pub mod bench_stream;
pub mod bulkapp;
pub mod daemon;
pub mod harness;
pub mod hostd;
pub mod netdemo;
pub mod netns;
pub mod pcap;
pub mod redird;
pub mod services;
pub mod simdemo;
pub mod smoldev;
pub mod topology;
pub mod tun;
pub mod tunserver;

use std::path::{Path, PathBuf};

/// Environment variable naming the tcp-testsuite folder, when `--suite` is not given.
pub const SUITE_ENV: &str = "HYDRANET_TCP_TESTSUITE";

/// Name of the conformance runner's binary, looked for next to the running executable.
pub const CONFORMANCE_BIN: &str = "hydranet-conformance";

/// The workspace root as it was when this crate was compiled.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The tcp-testsuite folder: `--suite` if given, else `$HYDRANET_TCP_TESTSUITE`, else
/// `../shared/tcp-testsuite` beside the workspace root.
pub fn suite_path(flag: Option<&Path>, env: Option<&std::ffi::OsStr>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return PathBuf::from(e);
    }
    workspace_root().join("../shared/tcp-testsuite")
}

/// Where the conformance runner should be: in the folder of `exe`.
pub fn conformance_beside(exe: &Path) -> Option<PathBuf> {
    Some(exe.parent()?.join(CONFORMANCE_BIN))
}

/// The runner's closing line (`N passed, M failed[, K skipped]`), if its output has one.
pub fn summary_line(stdout: &str) -> Option<&str> {
    stdout.lines().rev().find(|l| {
        let l = l.trim();
        l.contains(" passed, ")
            && l.contains(" failed")
            && l.split(' ')
                .next()
                .is_some_and(|n| n.parse::<u64>().is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn suite_precedence() {
        let flag = Path::new("/x/suite");
        assert_eq!(suite_path(Some(flag), Some(OsStr::new("/env"))), flag);
        assert_eq!(
            suite_path(None, Some(OsStr::new("/env"))),
            Path::new("/env")
        );
        let default = suite_path(None, None);
        assert!(default.ends_with("../shared/tcp-testsuite"));
        assert_eq!(suite_path(None, Some(OsStr::new(""))), default);
        assert!(workspace_root().join("Cargo.toml").exists());
    }

    #[test]
    fn finds_summary() {
        let out = "PASS a.pkt\nFAIL b.pkt:3: x\n12 passed, 3 failed, 4 skipped\n";
        assert_eq!(summary_line(out), Some("12 passed, 3 failed, 4 skipped"));
        assert_eq!(
            summary_line("0 passed, 0 failed\n"),
            Some("0 passed, 0 failed")
        );
        assert_eq!(summary_line("PASS a.pkt\n"), None);
    }

    #[test]
    fn conformance_is_looked_up_beside_the_exe() {
        assert_eq!(
            conformance_beside(Path::new("/t/debug/hydranet")),
            Some(PathBuf::from("/t/debug/hydranet-conformance"))
        );
    }
}
