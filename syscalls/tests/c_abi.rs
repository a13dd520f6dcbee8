//! The C ABI from C: tests/c/vhost_client.c, compiled against include/hydranet.h and linked
//! with the crate's static library, run against a fake daemon named by HYDRANET_CTL.

mod common;

use common::{FakeDaemon, TempDir};
use hydranet_syscalls::{Errno, Request, Response, CTL_ENV};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const REFUSED_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 81);

/// The compiled C program, or None when there is no C compiler and the test may be skipped.
fn program() -> Option<&'static Path> {
    static PROGRAM: OnceLock<Option<PathBuf>> = OnceLock::new();
    PROGRAM.get_or_init(build_program).as_deref()
}

fn build_program() -> Option<PathBuf> {
    if Command::new("cc").arg("--version").output().is_err() {
        let msg = "no C compiler (`cc`) on PATH";
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}; install gcc to test the C ABI");
        return None;
    }
    let lib = static_library();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        manifest.join("include/hydranet.h"),
        manifest.join("tests/c/vhost_client.c"),
    ];
    let out = profile_dir().join("hydranet-c-abi/vhost_client");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_input = sources
        .iter()
        .chain([&lib])
        .filter_map(|p| modified(p))
        .max();
    if modified(&out).is_some_and(|built| Some(built) >= newest_input) {
        return Some(out);
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // nextest runs the tests of this file in processes of their own, at the same time: each
    // compiles under its own name and renames, which replaces the file atomically.
    let tmp = out.with_extension(std::process::id().to_string());
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(manifest.join("include"))
        .arg(&sources[1])
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc failed:\n{}", text(&cc.stderr));
    std::fs::rename(&tmp, &out).unwrap();
    Some(out)
}

/// The crate's static library, as the build of this test left it. Cargo writes it to
/// target/<profile>/deps/ in the same rustc run as the rlib this test links, so it is never
/// older than the code under test; the copy in target/<profile>/ is refreshed only by
/// `cargo build`. If neither exists, build it.
fn static_library() -> PathBuf {
    let profile_dir = profile_dir();
    let deps = profile_dir.join("deps");
    let name = "libhydranet_syscalls.a";
    if let Some(lib) = [deps.join(name), profile_dir.join(name)]
        .into_iter()
        .find(|l| l.exists())
    {
        return lib;
    }
    let lib = profile_dir.join(name);
    let target_dir = profile_dir.parent().unwrap();
    let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cargo
        .args(["build", "-p", "hydranet-syscalls", "--lib", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
        None => panic!("odd target directory {}", profile_dir.display()),
    }
    let status = cargo.status().unwrap();
    assert!(
        status.success() && lib.exists(),
        "cannot build {}",
        lib.display()
    );
    lib
}

/// target/<profile>/, from this test's executable in target/<profile>/deps/.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the C program with these arguments against the control socket `ctl`.
fn run(ctl: &Path, args: &[&str]) -> Output {
    let out = Command::new(program().unwrap())
        .args(args)
        .env(CTL_ENV, ctl)
        .output()
        .unwrap();
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    out
}

fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

fn status(out: &Output) -> i32 {
    out.status.code().expect("killed by a signal")
}

/// A fake daemon that answers `ok`, but refuses REFUSED_VIP as a real one would a virtual host
/// it does not serve.
fn daemon() -> FakeDaemon {
    FakeDaemon::with_handler(Box::new(|req| match req {
        Request::VHost(ip) if *ip == REFUSED_VIP => Response::err(Errno::EADDRNOTAVAIL, "x"),
        _ => Response::ok(),
    }))
}

#[test]
fn a_c_program_configures_its_port() {
    let Some(_) = program() else { return };
    let daemon = daemon();
    let out = run(
        daemon.path(),
        &[
            "vhost",
            "192.0.2.80",
            "setportopt",
            "80",
            "1",
            "2",
            "1000",
            "10",
            "30",
        ],
    );
    assert_eq!(
        lines(&out),
        ["vhost rc=0 errno=0 OK", "setportopt rc=0 errno=0 OK"]
    );
    assert_eq!(status(&out), 0);
    assert_eq!(
        daemon.requests(),
        [
            "v_host 192.0.2.80",
            "setportopt 192.0.2.80 80 primary 2 1000 10 30"
        ]
    );
}

#[test]
fn a_normal_port_needs_no_params() {
    let Some(_) = program() else { return };
    let daemon = daemon();
    let out = run(
        daemon.path(),
        &["vhost", "192.0.2.80", "setportopt-null", "8080", "0"],
    );
    assert_eq!(status(&out), 0, "{:?}", lines(&out));
    assert_eq!(
        daemon.requests(),
        [
            "v_host 192.0.2.80",
            "setportopt 192.0.2.80 8080 normal 2 1000 10 30"
        ]
    );
}

#[test]
fn invalid_arguments_fail_without_asking_the_daemon() {
    let Some(_) = program() else { return };
    let daemon = daemon();
    let out = run(
        daemon.path(),
        &[
            "vhost",
            "224.0.0.1", // multicast
            "vhost",
            "192.0.2.80", // fine
            "setportopt",
            "80",
            "1",
            "2",
            "1000",
            "30",
            "10", // timeout <= interval
            "setportopt",
            "80",
            "2",
            "0",
            "1000",
            "0",
            "30", // both detector inputs off
            "setportopt",
            "0",
            "1",
            "2",
            "1000",
            "10",
            "30", // port 0
            "setportopt",
            "80",
            "3",
            "2",
            "1000",
            "10",
            "30", // no such mode
            "setportopt-null",
            "80",
            "2", // a backup without params
        ],
    );
    let einval = "rc=-1 errno=22 EINVAL (Invalid argument)";
    assert_eq!(
        lines(&out),
        [
            format!("vhost {einval}"),
            "vhost rc=0 errno=0 OK".into(),
            format!("setportopt {einval}"),
            format!("setportopt {einval}"),
            format!("setportopt {einval}"),
            format!("setportopt {einval}"),
            format!("setportopt-null {einval}"),
        ]
    );
    assert_eq!(status(&out), Errno::EINVAL.code());
    assert_eq!(daemon.requests(), ["v_host 192.0.2.80"]);
}

#[test]
fn setportopt_before_v_host_is_eaddrnotavail() {
    let Some(_) = program() else { return };
    let daemon = daemon();
    let out = run(
        daemon.path(),
        &["setportopt", "80", "1", "2", "1000", "10", "30"],
    );
    assert_eq!(
        lines(&out),
        ["setportopt rc=-1 errno=49 EADDRNOTAVAIL (Can't assign requested address)"]
    );
    assert_eq!(status(&out), Errno::EADDRNOTAVAIL.code());
    assert!(daemon.requests().is_empty());
}

#[test]
fn the_daemons_refusal_reaches_errno() {
    let Some(_) = program() else { return };
    let daemon = daemon();
    let out = run(
        daemon.path(),
        &[
            "vhost",
            "192.0.2.81",
            "setportopt",
            "80",
            "1",
            "2",
            "1000",
            "10",
            "30",
        ],
    );
    // A refused v_host leaves the process without a virtual host.
    assert_eq!(
        lines(&out),
        [
            "vhost rc=-1 errno=49 EADDRNOTAVAIL (Can't assign requested address)",
            "setportopt rc=-1 errno=49 EADDRNOTAVAIL (Can't assign requested address)",
        ]
    );
    assert_eq!(status(&out), Errno::EADDRNOTAVAIL.code());
    assert_eq!(daemon.requests(), ["v_host 192.0.2.81"]);
}

#[test]
fn no_daemon_is_enoent_or_econnrefused() {
    let Some(_) = program() else { return };
    let dir = TempDir::new();
    let path = dir.join("host.sock");
    let out = run(&path, &["vhost", "192.0.2.80"]);
    assert_eq!(
        lines(&out),
        ["vhost rc=-1 errno=2 ENOENT (No such file or directory)"]
    );
    assert_eq!(status(&out), Errno::ENOENT.code());

    // A socket file whose daemon died.
    drop(UnixListener::bind(&path).unwrap());
    let out = run(&path, &["vhost", "192.0.2.80"]);
    assert_eq!(
        lines(&out),
        ["vhost rc=-1 errno=61 ECONNREFUSED (Connection refused)"]
    );
    assert_eq!(status(&out), Errno::ECONNREFUSED.code());
}

#[test]
fn a_daemon_that_hangs_up_is_eio_not_a_signal() {
    let Some(_) = program() else { return };
    let dir = TempDir::new();
    let path = dir.join("host.sock");
    let listener = UnixListener::bind(&path).unwrap();
    const CALLS: usize = 5;
    let daemon = std::thread::spawn(move || {
        for _ in 0..CALLS {
            drop(listener.accept().unwrap());
        }
    });
    // Whether the request is written before or after the hang-up, the call fails with EIO;
    // written after, it would raise SIGPIPE, which kills a C program, unless suppressed.
    let args: Vec<&str> = ["vhost", "192.0.2.80"].repeat(CALLS);
    let out = run(&path, &args);
    assert_eq!(
        lines(&out),
        vec!["vhost rc=-1 errno=5 EIO (Input/output error)"; CALLS]
    );
    assert_eq!(status(&out), Errno::EIO.code());
    daemon.join().unwrap();
}
