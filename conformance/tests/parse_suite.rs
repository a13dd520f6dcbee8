//! Every IPv4 script of the FreeBSD tcp-testsuite parses without error.

use std::path::PathBuf;

mod common;
use common::suite;

use hydranet_conformance::script::{self, Action};
use hydranet_conformance::sut::NoSut;
use hydranet_conformance::{collect_scripts, run_file, Outcome};

fn ipv4_scripts(dir: &PathBuf) -> Vec<PathBuf> {
    collect_scripts(std::slice::from_ref(dir))
        .expect("list the testsuite")
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().contains("ipv6"))
        .collect()
}

#[test]
fn every_ipv4_script_parses() {
    let Some(dir) = suite() else { return };
    let scripts = ipv4_scripts(&dir);
    assert!(
        scripts.len() >= 343,
        "only {} IPv4 scripts found",
        scripts.len()
    );
    let mut errors = Vec::new();
    let mut events = 0;
    for path in &scripts {
        let text = std::fs::read_to_string(path).unwrap();
        match script::parse(&text) {
            Ok(s) => {
                assert!(!s.events.is_empty(), "{}: no events", path.display());
                events += s.events.len();
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        errors.is_empty(),
        "{} scripts failed to parse:\n{}",
        errors.len(),
        errors.join("\n")
    );
    eprintln!("{} scripts, {events} events parsed", scripts.len());
}

#[test]
fn both_preprocessor_branches_parse() {
    let Some(dir) = suite() else { return };
    for path in ipv4_scripts(&dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = script::parse_with_defines(&text, &["STANDARD"]) {
            panic!("{} (STANDARD): {e}", path.display());
        }
    }
}

#[test]
fn only_known_host_commands_remain() {
    // The only shell commands are sysctl, sockstat and tcpdrop; all are understood.
    let Some(dir) = suite() else { return };
    let mut sysctls = std::collections::BTreeSet::new();
    for path in ipv4_scripts(&dir) {
        let s = script::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for e in s.events {
            if let Action::Sysctl { name, .. } = e.action {
                sysctls.insert(name);
            }
        }
    }
    assert!(sysctls.contains("net.inet.tcp.hostcache.purgenow"));
    eprintln!("sysctl names used: {sysctls:?}");
}

#[test]
fn placeholder_sut_never_passes() {
    let Some(dir) = suite() else { return };
    for path in ipv4_scripts(&dir) {
        let o = run_file(&path, &["FreeBSD"], &mut NoSut);
        assert!(
            matches!(o, Outcome::Unsupported { .. }),
            "{}: {o}",
            path.display()
        );
    }
    // Not even a script the placeholder could not fail passes.
    let s = script::parse("0 < S 0:0(0) win 1000").unwrap();
    assert!(matches!(
        hydranet_conformance::run(&s, &mut NoSut),
        Outcome::Unsupported { .. }
    ));
}
