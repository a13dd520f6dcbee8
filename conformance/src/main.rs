//! `hydranet-conformance [--verbose] [--floor N] [--filter ipv4|all] [-D NAME]... PATH...`
//!
//! Runs every packetdrill script found in PATH (files, or folders searched recursively for
//! `*.pkt`) against a fresh SUT each, printing `PASS path`, `FAIL path:LINE: message` or
//! `UNSUPPORTED path:LINE: reason` per script and a final `N passed, M failed[, K skipped]`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;

use hydranet_conformance::{collect_scripts, new_sut, run_file, script, Outcome};

const USAGE: &str =
    "usage: hydranet-conformance [--verbose] [--floor N] [--filter ipv4|all] [-D NAME]... PATH...
  PATH        a .pkt script or a folder searched recursively for *.pkt
  --verbose   also print a summary of the reasons scripts were skipped
  --floor N   exit with status 1 when fewer than N scripts pass
  --filter F  ipv4 (default): scripts whose file name contains \"ipv6\" are skipped; all: run all
  -D NAME     define NAME for #ifdef (default: FreeBSD; giving -D replaces the default)
  --dump      print each script's parsed events instead of running it";

struct Args {
    verbose: bool,
    dump: bool,
    floor: Option<u64>,
    ipv4_only: bool,
    defines: Vec<String>,
    paths: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        verbose: false,
        dump: false,
        floor: None,
        ipv4_only: true,
        defines: Vec::new(),
        paths: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-v" | "--verbose" => args.verbose = true,
            "--dump" => args.dump = true,
            "--floor" => {
                let v = value("--floor")?;
                args.floor = Some(v.parse().map_err(|_| format!("bad --floor value '{v}'"))?);
            }
            "--filter" => match value("--filter")?.as_str() {
                "ipv4" => args.ipv4_only = true,
                "all" => args.ipv4_only = false,
                v => return Err(format!("bad --filter value '{v}' (ipv4 or all)")),
            },
            "-D" | "--define" => args.defines.push(value("-D")?),
            s if s.starts_with("--floor=") => {
                let v = &s["--floor=".len()..];
                args.floor = Some(v.parse().map_err(|_| format!("bad --floor value '{v}'"))?);
            }
            s if s.starts_with("--filter=") => match &s["--filter=".len()..] {
                "ipv4" => args.ipv4_only = true,
                "all" => args.ipv4_only = false,
                v => return Err(format!("bad --filter value '{v}' (ipv4 or all)")),
            },
            s if s.starts_with("-D") && s.len() > 2 => args.defines.push(s[2..].to_string()),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            s => args.paths.push(PathBuf::from(s)),
        }
    }
    if args.paths.is_empty() {
        return Err("no PATH given".into());
    }
    if args.defines.is_empty() {
        args.defines.push("FreeBSD".into());
    }
    Ok(args)
}

/// Prints a line to stdout; returns from `main` quietly when stdout is gone (`| head`).
macro_rules! out {
    ($($arg:tt)*) => {
        if writeln!(io::stdout().lock(), $($arg)*).is_err() {
            return ExitCode::SUCCESS;
        }
    };
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let scripts = match collect_scripts(&args.paths) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let defines: Vec<&str> = args.defines.iter().map(String::as_str).collect();
    if args.dump {
        for path in &scripts {
            out!("== {}", path.display());
            match std::fs::read_to_string(path) {
                Ok(text) => match script::parse_with_defines(&text, &defines) {
                    Ok(s) => {
                        for o in &s.options {
                            out!(
                                "{:4}: --{}={}",
                                o.line,
                                o.name,
                                o.value.as_deref().unwrap_or("")
                            );
                        }
                        for e in &s.events {
                            out!("{:4}: {:?} {:?}", e.line, e.time, e.action);
                        }
                    }
                    Err(e) => out!("{e}"),
                },
                Err(e) => out!("cannot read: {e}"),
            }
        }
        return ExitCode::SUCCESS;
    }
    let (mut passed, mut failed, mut skipped) = (0u64, 0u64, 0u64);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for path in &scripts {
        let shown = path.display();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = if args.ipv4_only && name.contains("ipv6") {
            Outcome::Unsupported {
                line: 0,
                reason: "IPv6 script (only IPv4 is supported; see --filter)".into(),
            }
        } else {
            let run = panic::catch_unwind(AssertUnwindSafe(|| {
                let mut sut = new_sut();
                run_file(path, &defines, sut.as_mut())
            }));
            run.unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Outcome::Fail {
                    line: 0,
                    message: format!("panic while running the script: {msg}"),
                }
            })
        };
        match outcome {
            Outcome::Pass => {
                passed += 1;
                out!("PASS {shown}");
            }
            Outcome::Fail { line, message } => {
                failed += 1;
                out!("FAIL {shown}:{line}: {message}");
            }
            Outcome::Unsupported { line, reason } => {
                skipped += 1;
                out!("UNSUPPORTED {shown}:{line}: {reason}");
                *reasons.entry(reason).or_default() += 1;
            }
        }
    }
    if args.verbose && !reasons.is_empty() {
        let mut by_count: Vec<(&String, &u64)> = reasons.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        out!("skipped scripts by reason:");
        for (reason, n) in by_count {
            out!("  {n:5}  {reason}");
        }
    }
    if skipped > 0 {
        out!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        out!("{passed} passed, {failed} failed");
    }
    match args.floor {
        Some(floor) if passed < floor => {
            eprintln!("error: {passed} passed, below the floor of {floor}");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}
