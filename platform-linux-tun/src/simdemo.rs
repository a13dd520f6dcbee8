//! The replicated demo in the deterministic simulator: a client downloads a file from a
//! service replicated on three host servers while the primary, and then the next primary,
//! are killed; then an interactive echo session runs across a third kill. It reports what a
//! user of HydraNet-FT cares about: every byte arrived, the content is identical, no reset,
//! and how long the client was stalled.
//!
//! This is the same scenario the namespace demo (issue 4) runs with real Linux clients; the
//! simulator stands in where namespaces and TUN devices are not available, and says so.

use std::fmt::Write as _;
use std::path::Path;

use hydranet_core::sim::service::bulk_byte;
use hydranet_core::sim::{ServiceKind, Sim, SimConfig};
use hydranet_core::{Duration, Errno, Instant};
use sha2::{Digest, Sha256};

/// What the demo measured.
pub struct Report {
    pub bytes: usize,
    pub expected: usize,
    pub sha_equal: bool,
    pub resets: u64,
    pub violations: usize,
    pub longest_stall_ms: u64,
    pub virtual_secs: f64,
    pub primaries: Vec<(f64, usize)>,
    pub kills: Vec<(f64, usize)>,
    pub echo_ok: bool,
    pub samples: Vec<(f64, usize)>,
}

/// Runs the download with kills at one and two thirds, then an echo session across a kill.
pub fn run(size: usize, progress: &mut dyn FnMut(&str)) -> Report {
    let cfg = SimConfig {
        replicas: 3,
        service: ServiceKind::Bulk { bytes: size },
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    let c = sim.connect().expect("the simulated client opens a socket");
    let mut got: Vec<u8> = Vec::with_capacity(size);
    let mut buf = vec![0u8; 65536];
    let mut kills: Vec<(f64, usize)> = Vec::new();
    let mut primaries: Vec<(f64, usize)> = Vec::new();
    let mut samples: Vec<(f64, usize)> = Vec::new();
    let mut last_byte_at = Instant::ZERO;
    let mut longest = Duration::ZERO;
    let mut last_report = 0usize;
    let secs = |t: Instant| t.total_micros() as f64 / 1e6;
    let deadline = Instant::from_millis(600_000);
    loop {
        if let Some(p) = sim.primary() {
            if primaries.last().map(|x| x.1) != Some(p) {
                primaries.push((secs(sim.now), p));
            }
        }
        let third = kills.len() + 1;
        if kills.len() < 2 && got.len() * 3 >= size * third {
            if let Some(p) = sim.primary() {
                sim.crash(p);
                kills.push((secs(sim.now), p));
                progress(&format!(
                    "  killed replica {p} (the primary) at {:.3} s, {} of {} bytes received",
                    secs(sim.now),
                    got.len(),
                    size
                ));
            }
        }
        match sim.client.recv(sim.now, c, &mut buf, 0) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                longest = longest.max(sim.now - last_byte_at);
                last_byte_at = sim.now;
                samples.push((secs(sim.now), got.len()));
            }
            Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => {}
            Err(_) => break,
        }
        if got.len() >= last_report + size / 10 {
            last_report = got.len();
            progress(&format!(
                "  {:>3}% received at {:.3} s (virtual)",
                got.len() * 100 / size.max(1),
                secs(sim.now)
            ));
        }
        if sim.now > deadline || !sim.step() {
            break;
        }
    }
    let mut expected = Sha256::new();
    let mut chunk = Vec::with_capacity(65536);
    for i in 0..size {
        chunk.push(bulk_byte(i));
        if chunk.len() == 65536 {
            expected.update(&chunk);
            chunk.clear();
        }
    }
    expected.update(&chunk);
    let sha_equal = got.len() == size && Sha256::digest(&got) == expected.finalize();
    let virtual_secs = secs(last_byte_at);
    let resets = sim.client_resets;
    let violations = sim.violations.len();
    let echo_ok = echo_session(progress);
    Report {
        bytes: got.len(),
        expected: size,
        sha_equal,
        resets,
        violations,
        longest_stall_ms: longest.total_millis(),
        virtual_secs,
        primaries,
        kills,
        echo_ok,
        samples,
    }
}

/// Lines typed into an echo service come back in order across a primary kill.
fn echo_session(progress: &mut dyn FnMut(&str)) -> bool {
    let mut sim = Sim::new(SimConfig {
        replicas: 3,
        service: ServiceKind::Echo,
        ..Default::default()
    });
    let c = match sim.connect() {
        Ok(c) => c,
        Err(_) => return false,
    };
    let lines = [
        "hello, replicated world\n",
        "the primary is about to die\n",
        "still here?\n",
        "yes, byte for byte\n",
    ];
    let mut echoed = Vec::new();
    let mut buf = [0u8; 4096];
    for (i, line) in lines.iter().enumerate() {
        if i == 2 {
            if let Some(p) = sim.primary() {
                sim.crash(p);
                progress(&format!("  echo session: killed replica {p} (the primary)"));
            }
        }
        let mut sent = false;
        let want = echoed.len() + line.len();
        let start = sim.now;
        while echoed.len() < want && sim.now < start + Duration::from_millis(10_000) {
            if !sent && sim.client.send(sim.now, c, line.as_bytes(), 0).is_ok() {
                sent = true;
            }
            if let Ok(n) = sim.client.recv(sim.now, c, &mut buf, 0) {
                echoed.extend_from_slice(&buf[..n]);
            }
            if !sim.step() {
                break;
            }
        }
        progress(&format!(
            "  echo session: sent {:?}, {} at {:.3} s",
            line.trim_end(),
            if echoed.ends_with(line.as_bytes()) {
                "echoed"
            } else {
                "NOT echoed"
            },
            sim.now.total_micros() as f64 / 1e6
        ));
    }
    echoed == lines.concat().as_bytes() && sim.client_resets == 0 && sim.violations.is_empty()
}

/// An SVG timeline of client bytes over (virtual) time, with the kills marked.
pub fn write_svg(r: &Report, title: &str, path: &Path) -> std::io::Result<()> {
    let (w, h, m) = (800.0, 400.0, 50.0);
    let tmax = r.samples.last().map(|s| s.0).unwrap_or(1.0).max(1e-6);
    let bmax = r.expected.max(1) as f64;
    let x = |t: f64| m + (w - 2.0 * m) * t / tmax;
    let y = |b: f64| h - m - (h - 2.0 * m) * b / bmax;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{m}" y="25" font-size="15">{title}</text>"#);
    let _ = write!(
        s,
        r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - m,
        w - m,
        h - m
    );
    let _ = write!(
        s,
        r#"<line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke="black"/>"#,
        h - m
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}">{:.3} s</text>"#,
        w - m - 40.0,
        h - m + 20.0,
        tmax
    );
    let _ = write!(s, r#"<text x="5" y="{}">{} B</text>"#, m - 5.0, r.expected);
    let mut pts = String::new();
    let step = (r.samples.len() / 2000).max(1);
    for (i, (t, b)) in r.samples.iter().enumerate() {
        if i % step == 0 || i + 1 == r.samples.len() {
            let _ = write!(pts, "{:.1},{:.1} ", x(*t), y(*b as f64));
        }
    }
    let _ = write!(
        s,
        r#"<polyline fill="none" stroke="steelblue" stroke-width="2" points="{pts}"/>"#
    );
    for (t, who) in &r.kills {
        let _ = write!(
            s,
            r#"<line x1="{0:.1}" y1="{m}" x2="{0:.1}" y2="{1}" stroke="crimson" stroke-dasharray="4"/><text x="{2:.1}" y="{3}" fill="crimson">kill replica {who}</text>"#,
            x(*t),
            h - m,
            x(*t) + 4.0,
            m + 15.0
        );
    }
    s.push_str("</svg>\n");
    std::fs::write(path, s)
}
