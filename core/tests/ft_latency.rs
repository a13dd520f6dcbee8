//! Failover latency in virtual time (issue 3): the client-visible stall after the primary
//! crashes, per failure-detector setting and workload, over many seeds, with a 10 ms client
//! RTT. Print the table with
//! `cargo test -p hydranet-core --release --features sim --test ft_latency -- --nocapture`.
#![cfg(feature = "sim")]

use hydranet_core::ft::params::DetectorParams;
use hydranet_core::sim::schedule::pattern;
use hydranet_core::sim::service::bulk_byte;
use hydranet_core::sim::{ServiceKind, Sim, SimConfig};
use hydranet_core::{Duration, Errno, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Load {
    Download,
    Upload,
    RequestResponse,
}

/// Longest the measurement waits for the stream to resume.
const GIVE_UP: Duration = Duration::from_millis(10_000);

/// Runs one workload, crashes the primary once traffic flows, and returns the stall: the time
/// from the crash to the next new byte the client reads (`None`: none within [`GIVE_UP`]),
/// and whether the client saw a reset.
fn stall(load: Load, detector: DetectorParams, seed: u64) -> (Option<Duration>, bool) {
    let service = match load {
        Load::Download => ServiceKind::Bulk { bytes: 4_000_000 },
        Load::Upload => ServiceKind::Echo,
        Load::RequestResponse => ServiceKind::KeyValue,
    };
    let mut sim = Sim::new(SimConfig {
        seed,
        service,
        detector,
        replicas: 3,
        ..SimConfig::default()
    });
    let c = sim.connect().unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0usize;
    let mut sent = 0usize;
    let mut req = 0u64;
    let mut awaiting = false;
    let mut line = Vec::new();
    // Crash after a seed-dependent warm-up, 200..=400 ms into the transfer.
    let crash_at = Instant::from_millis(200 + seed % 201);
    let mut crashed: Option<Instant> = None;
    let mut result = None;
    loop {
        let now = sim.now;
        if crashed.is_none() && now >= crash_at {
            sim.crash(0);
            crashed = Some(now);
        }
        match load {
            Load::Upload => loop {
                let data: Vec<u8> = (sent..sent + 4096).map(pattern).collect();
                match sim.client.send(now, c, &data, 0) {
                    Ok(n) => sent += n,
                    _ => break,
                }
            },
            Load::RequestResponse => {
                if !awaiting {
                    let r = format!("SET k{} v{req}\n", req % 5);
                    if sim.client.send(now, c, r.as_bytes(), 0).is_ok() {
                        awaiting = true;
                        req += 1;
                    }
                }
            }
            Load::Download => {}
        }
        loop {
            match sim.client.recv(now, c, &mut buf, 0) {
                Ok(0) => panic!("{load:?} seed {seed}: early end of stream"),
                Ok(n) => {
                    for (k, &b) in buf[..n].iter().enumerate() {
                        let want = match load {
                            Load::Download => bulk_byte(got + k),
                            Load::Upload => pattern(got + k),
                            Load::RequestResponse => b,
                        };
                        assert_eq!(b, want, "{load:?} seed {seed}: byte {}", got + k);
                    }
                    got += n;
                    if load == Load::RequestResponse {
                        line.extend_from_slice(&buf[..n]);
                        while let Some(p) = line.iter().position(|&b| b == b'\n') {
                            assert_eq!(&line[..=p], b"OK\n");
                            line.drain(..=p);
                            awaiting = false;
                        }
                    }
                    if let Some(t) = crashed {
                        if result.is_none() {
                            result = Some(now - t);
                        }
                    }
                }
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => return (None, e == Errno::ECONNRESET || sim.client_resets > 0),
            }
        }
        if result.is_some() {
            break;
        }
        if crashed.is_some_and(|t| now - t > GIVE_UP) || !sim.step() {
            break;
        }
    }
    (result, sim.client_resets > 0)
}

fn pct(sorted: &[Option<Duration>], p: f64) -> String {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    match sorted[i] {
        Some(d) => format!("{:.1}", d.total_micros() as f64 / 1000.0),
        None => "never".into(),
    }
}

#[test]
fn failover_latency_table() {
    let seeds: u64 = std::env::var("HYDRANET_LATENCY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 8 } else { 100 });
    let detectors = [
        (
            "heartbeat only (10/30 ms)",
            DetectorParams {
                retransmit_threshold: 0,
                ..DetectorParams::default()
            },
        ),
        (
            "client retransmissions only (2 in 1 s)",
            DetectorParams {
                heartbeat_interval_ms: 0,
                ..DetectorParams::default()
            },
        ),
        ("both (default)", DetectorParams::default()),
    ];
    println!("failover stall after a primary crash, ms of virtual time, {seeds} seeds, 10 ms RTT");
    println!(
        "{:<44} {:<17} {:>8} {:>8} {:>8} {:>7}",
        "detector", "workload", "p50", "p99", "max", "resets"
    );
    let mut default_ok = true;
    for (name, d) in detectors {
        for load in [Load::Download, Load::Upload, Load::RequestResponse] {
            let mut v = Vec::new();
            let mut resets = 0;
            for seed in 1..=seeds {
                let (s, r) = stall(load, d, seed);
                v.push(s);
                resets += r as u32;
            }
            // `None` (never resumed) sorts last.
            v.sort_by_key(|s| s.map_or(u64::MAX, |d| d.total_micros()));
            println!(
                "{:<44} {:<17} {:>8} {:>8} {:>8} {:>7}",
                name,
                format!("{load:?}"),
                pct(&v, 0.5),
                pct(&v, 0.99),
                pct(&v, 1.0),
                resets
            );
            if d == DetectorParams::default() {
                let p99 = v[((v.len() as f64 - 1.0) * 0.99).round() as usize];
                default_ok &= resets == 0 && p99.is_some_and(|p| p < Duration::from_millis(100));
            }
        }
    }
    assert!(
        default_ok,
        "default detector: p99 must be under 100 ms and no reset"
    );
}
