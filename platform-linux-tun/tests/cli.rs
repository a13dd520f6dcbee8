//! The `hydranet` binary as a user meets it.

use std::process::Command;

fn hydranet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hydranet"))
}

#[test]
fn unimplemented_subcommands_say_so_and_exit_2() {
    for sub in ["redirector", "host", "ctl", "topology", "bench"] {
        let out = hydranet().args([sub, "--some-flag", "x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not implemented yet"), "{sub}: {err}");
        assert!(err.contains("issue 4"), "{sub}: {err}");
        assert!(out.stdout.is_empty(), "{sub}");
    }
}

#[test]
fn demo_says_what_it_runs_and_fails_on_a_missing_suite() {
    let dir = std::env::temp_dir().join(format!("hydranet-demo-test-{}", std::process::id()));
    let out = hydranet()
        .args([
            "demo",
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
    assert!(
        stdout.contains("running the same scenario in the in-process simulator"),
        "{stdout}"
    );
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
