//! `hydranet`: the HydraNet-FT command line.
//!
//! Today only `demo` does something: it runs the replicated scenario (a download with the
//! primary killed at one third and the next primary at two thirds, then an echo session
//! across a kill) in the in-process simulator, and then the FreeBSD conformance suite. The
//! namespace network with real Linux clients arrives with issue 4. Every other subcommand
//! prints that it is not implemented yet and exits with status 2.

mod simdemo;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};
use hydranet_platform_linux_tun::{
    conformance_beside, suite_path, summary_line, CONFORMANCE_BIN, DEMO_ISSUE, SUITE_ENV,
};

#[derive(Parser)]
#[command(
    name = "hydranet",
    version,
    about = "HydraNet-FT: replicated TCP services, transparently to clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Arguments a not-yet-implemented subcommand accepts and ignores, so that it always answers
/// with its "not implemented" message.
#[derive(clap::Args)]
struct Ignored {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The replicated download/echo scenario with primaries killed (in the simulator until
    /// the namespace network of issue 4 exists), then the conformance suite.
    Demo {
        /// Bytes the client downloads.
        #[arg(long, default_value_t = 8 << 20)]
        size: usize,
        /// Folder for the report's timeline plot (SVG).
        #[arg(long, value_name = "DIR", default_value = "target/hydranet-demo")]
        out: PathBuf,
        /// The tcp-testsuite folder [default: $HYDRANET_TCP_TESTSUITE, else
        /// ../shared/tcp-testsuite beside the workspace]
        #[arg(long, value_name = "PATH")]
        suite: Option<PathBuf>,
        /// Print the runner's line for every script, not only its summary.
        #[arg(long, short)]
        verbose: bool,
    },
    /// The redirector daemon (not implemented yet).
    Redirector(Ignored),
    /// The host-server daemon (not implemented yet).
    Host(Ignored),
    /// Control of a running host server: v_host, setportopt (not implemented yet).
    Ctl(Ignored),
    /// Creates and removes the namespace test network (not implemented yet).
    Topology(Ignored),
    /// Benchmarks over the test network (not implemented yet).
    Bench(Ignored),
}

fn not_implemented(what: &str) -> ExitCode {
    eprintln!(
        "hydranet {what}: not implemented yet; it arrives with issue {DEMO_ISSUE} \
         (the replicated demo and its test network). Only `hydranet demo` runs today."
    );
    ExitCode::from(2)
}

fn replicated_demo(size: usize, out: &std::path::Path) -> bool {
    println!(
        "hydranet demo: namespaces and TUN devices arrive with issue {DEMO_ISSUE}; running the \
         same scenario in the in-process simulator (virtual time, 10 ms client RTT)."
    );
    println!("client downloads {size} bytes from a service replicated on 3 hosts:");
    let r = simdemo::run(size, &mut |line| println!("{line}"));
    let secs = r.virtual_secs.max(1e-9);
    println!("report:");
    println!("  bytes received        {} of {}", r.bytes, r.expected);
    println!(
        "  sha256 equal          {}",
        if r.sha_equal { "yes" } else { "NO" }
    );
    println!("  connection resets     {}", r.resets);
    println!("  invariant violations  {}", r.violations);
    println!("  longest stall         {} ms", r.longest_stall_ms);
    println!(
        "  throughput            {:.1} MB/s (virtual time)",
        r.bytes as f64 / secs / 1e6
    );
    let who: Vec<String> = r
        .primaries
        .iter()
        .map(|(t, p)| format!("replica {p} from {t:.3} s"))
        .collect();
    println!("  primary               {}", who.join(", "));
    println!(
        "  echo across a kill    {}",
        if r.echo_ok { "ok" } else { "FAILED" }
    );
    let plot = out.join("timeline.svg");
    match std::fs::create_dir_all(out).and_then(|_| simdemo::write_svg(&r, &plot)) {
        Ok(()) => println!("  timeline plot         {}", plot.display()),
        Err(e) => eprintln!("  timeline plot not written ({}): {e}", plot.display()),
    }
    r.sha_equal && r.resets == 0 && r.violations == 0 && r.echo_ok && r.bytes == r.expected
}

fn demo(suite: Option<PathBuf>, verbose: bool) -> ExitCode {
    println!("conformance: the core against the FreeBSD tcp-testsuite");
    let suite = suite_path(suite.as_deref(), std::env::var_os(SUITE_ENV).as_deref());
    let suite = suite.canonicalize().unwrap_or(suite);
    if !suite.is_dir() {
        eprintln!(
            "error: tcp-testsuite folder {} not found (give --suite PATH or set {SUITE_ENV})",
            suite.display()
        );
        return ExitCode::from(1);
    }
    let runner = match std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(conformance_beside)
    {
        Some(r) if r.is_file() => r,
        r => {
            let where_ = r.map(|r| r.display().to_string()).unwrap_or_default();
            eprintln!(
                "error: {CONFORMANCE_BIN} not found next to this executable ({where_}); \
                 build it with `cargo build -p hydranet-conformance` into the same target folder"
            );
            return ExitCode::from(1);
        }
    };
    println!("running {} {}", runner.display(), suite.display());
    let out = match Command::new(&runner).arg(&suite).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", runner.display());
            return ExitCode::from(1);
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if verbose {
        print!("{stdout}");
    }
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    match summary_line(&stdout) {
        Some(s) if !verbose => println!("conformance: {}", s.trim()),
        Some(_) => {}
        None => eprintln!("error: {CONFORMANCE_BIN} printed no summary line"),
    }
    match out.status.code() {
        Some(0) if summary_line(&stdout).is_some() => ExitCode::SUCCESS,
        Some(0) => ExitCode::from(1),
        Some(c) => {
            eprintln!("error: {CONFORMANCE_BIN} exited with status {c}");
            ExitCode::from(u8::try_from(c).unwrap_or(1).max(1))
        }
        None => {
            eprintln!("error: {CONFORMANCE_BIN} was killed by a signal");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Demo {
            size,
            out,
            suite,
            verbose,
        } => {
            let replicated = replicated_demo(size, &out);
            let conformance = demo(suite, verbose);
            if !replicated {
                eprintln!("error: the replicated scenario lost, corrupted or reset the stream");
                return ExitCode::from(1);
            }
            conformance
        }
        Cmd::Redirector(_) => not_implemented("redirector"),
        Cmd::Host(_) => not_implemented("host"),
        Cmd::Ctl(_) => not_implemented("ctl"),
        Cmd::Topology(_) => not_implemented("topology"),
        Cmd::Bench(_) => not_implemented("bench"),
    }
}
