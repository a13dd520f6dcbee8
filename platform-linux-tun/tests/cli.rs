//! The `hydranet` binary as a user meets it.

use std::process::Command;

fn hydranet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hydranet"))
}

#[test]
fn bench_lists_its_benchmarks_and_their_flags() {
    let out = hydranet().args(["bench", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["failover", "schemes", "path", "--out"] {
        assert!(
            help.contains(sub),
            "{sub} missing from bench --help:\n{help}"
        );
    }
    for (sub, flags) in [
        ("failover", &["--kills", "--size", "--takeover-timeout"][..]),
        ("schemes", &["--sizes", "--bulk", "--repeat"][..]),
        ("path", &["--secs", "--repeat"][..]),
    ] {
        let out = hydranet().args(["bench", sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "bench {sub} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for f in flags {
            assert!(help.contains(f), "{f} missing from bench {sub} --help");
        }
    }
    // A size that is not one is refused before anything is built.
    let out = hydranet()
        .args(["bench", "schemes", "--sizes", "16K,lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a size"));
}

#[test]
fn daemons_refuse_a_bad_config_clearly() {
    let dir = std::env::temp_dir().join(format!("hydranet-cfg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.toml");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "tun = \"x\"\naddr = \"not-an-address\"\nctl = \"/tmp/x\"\n",
    )
    .unwrap();
    for sub in ["host", "redirector"] {
        for cfg in [&missing, &bad] {
            let out = hydranet()
                .arg(sub)
                .arg("--config")
                .arg(cfg)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{sub} {}", cfg.display());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&cfg.display().to_string()), "{sub}: {err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctl_reports_a_missing_daemon_and_a_malformed_request() {
    let out = hydranet()
        .args(["ctl", "--socket", "/nonexistent/hydranet.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hydranet.sock"));
    let out = hydranet()
        .args(["ctl", "--socket", "/nonexistent/x", "v_host", "not-an-ip"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a request"));
}

#[test]
fn demo_says_what_it_runs_and_fails_on_a_missing_suite() {
    let dir = std::env::temp_dir().join(format!("hydranet-demo-test-{}", std::process::id()));
    let out = hydranet()
        .args([
            "demo",
            "--simulated",
            "--size",
            "300000",
            "--suite",
            "/nonexistent/tcp-testsuite",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(simulated)"), "{stdout}");
    assert!(stdout.contains("sha256 equal          yes"), "{stdout}");
    assert!(stdout.contains("connection resets     0"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn help_lists_every_subcommand() {
    let out = hydranet().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["demo", "redirector", "host", "ctl", "topology", "bench"] {
        assert!(help.contains(sub), "{sub} missing from --help");
    }
}
