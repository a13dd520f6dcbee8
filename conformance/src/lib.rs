//! Conformance runner for HydraNet-FT: an interpreter of packetdrill scripts (the FreeBSD
//! tcp-testsuite) that runs each script against a TCP implementation in virtual time.
//!
//! * [`script`] parses a `.pkt` file into events;
//! * [`sut`] is the interface a TCP implementation offers the runner;
//! * [`runner`] runs a parsed script against it and judges the result;
//! * [`packet`] builds and parses IPv4/TCP packets (independently of the core's `wire`);
//! * [`bsd`] holds FreeBSD's values for the symbols scripts use.

pub mod bsd;
pub mod core_sut;
pub mod packet;
pub mod runner;
pub mod script;
pub mod sut;

use std::io;
use std::path::{Path, PathBuf};

pub use runner::{run, run_text, Outcome};
pub use sut::{Call, CallResult, Sut, TcpInfo};

/// A fresh system under test for one script (the binary calls it once per script): a HydraNet
/// core stack in virtual time.
pub fn new_sut() -> Box<dyn Sut> {
    Box::new(core_sut::CoreSut::new())
}

/// Reads, parses and runs one script file with the given `#ifdef` definitions.
pub fn run_file(path: &Path, defines: &[&str], sut: &mut dyn Sut) -> Outcome {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            return Outcome::Fail {
                line: 0,
                message: format!("cannot read script: {e}"),
            }
        }
    };
    match script::parse_with_defines(&text, defines) {
        Ok(s) => runner::run(&s, sut),
        Err(e) => runner::parse_error_outcome(&e),
    }
}

/// The `.pkt` files named by `paths`: files as given, folders searched recursively; sorted and
/// without duplicates.
pub fn collect_scripts(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "pkt") {
            out.push(path);
        }
    }
    Ok(())
}
