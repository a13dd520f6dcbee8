//! HydraNet-FT end to end in the simulator: a client, a redirector and replicas.
#![cfg(feature = "sim")]

use hydranet_core::sim::service::bulk_byte;
use hydranet_core::sim::{ServiceKind, Sim, SimConfig};
use hydranet_core::{Duration, Errno, Instant};

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7919) >> 3) as u8
}

/// Uploads `size` bytes to the echo service and reads them back; optionally crashes hosts at
/// given fractions of the transfer. Returns the longest stall (no new byte received).
fn echo_run(cfg: SimConfig, size: usize, crashes: &[(f64, usize)]) -> (Sim, Duration) {
    let mut sim = Sim::new(cfg);
    let c = sim.connect().unwrap();
    let mut sent = 0usize;
    let mut got: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut crashes: Vec<(f64, usize)> = crashes.to_vec();
    let mut last_progress = sim.now;
    let mut longest = Duration::ZERO;
    while got.len() < size {
        assert!(
            sim.now < Instant::from_millis(120_000),
            "stuck at {} of {size}; violations {:?}",
            got.len(),
            sim.violations
        );
        if let Some(&(frac, h)) = crashes.first() {
            if got.len() as f64 >= frac * size as f64 {
                sim.crash(h);
                crashes.remove(0);
            }
        }
        while sent < size {
            let end = (sent + 4096).min(size);
            let data: Vec<u8> = (sent..end).map(pattern).collect();
            match sim.client.send(sim.now, c, &data, 0) {
                Ok(n) => sent += n,
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => panic!("client send: {e}"),
            }
        }
        loop {
            match sim.client.recv(sim.now, c, &mut buf, 0) {
                Ok(0) => panic!("unexpected EOF after {} bytes", got.len()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    longest = longest.max(sim.now - last_progress);
                    last_progress = sim.now;
                }
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => panic!(
                    "client recv after {} bytes: {e}; violations {:?}",
                    got.len(),
                    sim.violations
                ),
            }
        }
        if !sim.step() {
            panic!("simulation idle at {} of {size}", got.len());
        }
        if std::env::var_os("FT_TRACE").is_some() && sim.steps.is_multiple_of(500) {
            eprintln!(
                "step {} t={}ms sent {sent} got {} inflight-ish primary {:?} stats0 {:?}",
                sim.steps,
                sim.now.total_millis(),
                got.len(),
                sim.primary(),
                sim.hosts[0].host.stats
            );
        }
    }
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "echo corrupted"
    );
    (sim, longest)
}

#[test]
fn debug_small_echo() {
    let mut sim = Sim::new(SimConfig::default());
    let c = sim.connect().unwrap();
    let mut buf = vec![0u8; 100];
    let mut sent = false;
    for step in 0..400 {
        if !sent
            && sim.client_state(c) == Some(hydranet_core::netinet::tcp_fsm::TcpState::Established)
        {
            sim.client.send(sim.now, c, b"hello", 0).unwrap();
            sent = true;
        }
        if let Ok(n) = sim.client.recv(sim.now, c, &mut buf, 0) {
            eprintln!("got {:?}", &buf[..n]);
        }
        if !sim.step() {
            break;
        }
        if step % 20 == 0 {
            eprintln!(
                "t={} inflight? state {:?} primary {:?}",
                sim.now.total_micros(),
                sim.client_state(c),
                sim.primary()
            );
        }
    }
    eprintln!("{:?} {:?}", sim.violations, sim.hosts[0].host.stats);
}

#[test]
fn echo_through_three_replicas_without_faults() {
    let (sim, _) = echo_run(SimConfig::default(), 200_000, &[]);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
}

#[test]
fn echo_survives_primary_crash() {
    let (sim, stall) = echo_run(SimConfig::default(), 300_000, &[(0.3, 0)]);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
    assert_eq!(sim.primary(), Some(1));
    eprintln!("longest stall {} ms", stall.total_millis());
}

#[test]
fn echo_survives_two_successive_primary_crashes() {
    let (sim, _) = echo_run(SimConfig::default(), 300_000, &[(0.3, 0), (0.6, 1)]);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
    assert_eq!(sim.primary(), Some(2));
}

#[test]
fn download_survives_primary_crash() {
    let size = 500_000;
    let cfg = SimConfig {
        service: ServiceKind::Bulk { bytes: size },
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    let c = sim.connect().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut crashed = false;
    loop {
        assert!(
            sim.now < Instant::from_millis(60_000),
            "stuck at {}",
            got.len()
        );
        if !crashed && got.len() > size / 3 {
            sim.crash(0);
            crashed = true;
        }
        match sim.client.recv(sim.now, c, &mut buf, 0) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => {}
            Err(e) => panic!("recv: {e}"),
        }
        if !sim.step() {
            panic!("idle at {}", got.len());
        }
    }
    assert_eq!(got.len(), size);
    assert!(got.iter().enumerate().all(|(i, &b)| b == bulk_byte(i)));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
}
