//! HydraNet-FT end to end in the simulator: a client, a redirector and replicas.
#![cfg(feature = "sim")]

use hydranet_core::ft::params::DetectorParams;
use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::sim::service::bulk_byte;
use hydranet_core::sim::{ServiceKind, Sim, SimConfig};
use hydranet_core::wire::ipv4;
use hydranet_core::wire::tcp::{self as wtcp, TcpFlags};
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

/// The paper's failure detector alone: two client retransmissions within a second, no
/// heartbeats.
fn paper_detector() -> DetectorParams {
    DetectorParams {
        retransmit_threshold: 2,
        retransmit_window_ms: 1000,
        heartbeat_interval_ms: 0,
        ..DetectorParams::default()
    }
}

/// The paper's detector alone (client retransmissions, no heartbeats): after the first
/// takeover the last replica has never heard from anyone that the first primary is gone, yet
/// when the second primary dies it must take over too — the view it adopted says that every
/// rank below the new primary was gone.
#[test]
fn echo_survives_two_crashes_with_the_retransmission_detector_alone() {
    let cfg = SimConfig {
        detector: paper_detector(),
        ..Default::default()
    };
    let (sim, _) = echo_run(cfg, 300_000, &[(0.3, 0), (0.6, 1)]);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
    assert_eq!(sim.primary(), Some(2));
}

/// An upload the service only reads (the client hears nothing but ACKs, as from a digest
/// service), with the paper's detector alone (no heartbeats), crashing host `h` once the
/// client has `at` bytes acknowledged, for each `(at, h)`. Returns the simulator and the
/// longest time the acknowledgement stood still.
fn sink_upload_without_heartbeats(crashes: &[(u32, usize)]) -> (Sim, Duration) {
    let cfg = SimConfig {
        service: ServiceKind::Sink,
        detector: paper_detector(),
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    let c = sim.connect().unwrap();
    let size = 600_000usize;
    let chunk: Vec<u8> = (0..4096).map(pattern).collect();
    let mut sent = 0usize;
    let mut crashes = crashes.to_vec();
    let mut last_una = sim.client_snd_una(c);
    let mut last_move = sim.now;
    let mut longest = Duration::ZERO;
    let start_una = last_una.unwrap_or_default();
    loop {
        while sent < size {
            match sim
                .client
                .send(sim.now, c, &chunk[..(size - sent).min(4096)], 0)
            {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        let una = sim.client_snd_una(c);
        if una != last_una {
            longest = longest.max(sim.now - last_move);
            last_move = sim.now;
            last_una = una;
        }
        let acked = una.map_or(0, |u| u.diff(start_una) as u32);
        if let Some(&(at, h)) = crashes.first() {
            if acked >= at {
                sim.crash(h);
                crashes.remove(0);
            }
        }
        if acked as usize >= size {
            break;
        }
        assert!(
            sim.now - last_move < Duration::from_millis(5_000),
            "acknowledgement stuck at {acked} of {size}; primary {:?}; violations {:?}",
            sim.primary(),
            sim.violations
        );
        assert!(sim.step(), "the simulation ran dry");
    }
    assert!(crashes.is_empty());
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
    (sim, longest)
}

/// Two primary crashes: each next rank takes over on the client's retransmissions, and not
/// before its time — the recovery retransmissions a new primary's first partial ACKs draw
/// once made the next rank take over from a live primary, which then waited on the backup
/// that died next.
#[test]
fn sink_upload_survives_two_crashes_with_the_retransmission_detector_alone() {
    let (sim, longest) = sink_upload_without_heartbeats(&[(150_000, 0), (350_000, 1)]);
    assert_eq!(sim.primary(), Some(2));
    assert_eq!(sim.hosts[2].host.stats.takeovers, 1);
    eprintln!("longest stall {} ms", longest.total_millis());
}

/// A backup crashes with heartbeats off: the primary still hears its backups' repeated
/// progress reports, so a backup silent for a whole detector window leaves the quorum and the
/// acknowledgement moves on.
#[test]
fn a_silent_backup_leaves_the_quorum_without_heartbeats() {
    let (sim, longest) = sink_upload_without_heartbeats(&[(150_000, 2)]);
    assert_eq!(sim.primary(), Some(0));
    assert_eq!(sim.hosts[0].host.stats.backups_dropped, 1);
    assert!(
        longest < Duration::from_millis(2_000),
        "stalled {} ms",
        longest.total_millis()
    );
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

/// The client's TCP flags and payload length in a packet it sent.
fn client_segment(pkt: &[u8]) -> Option<(TcpFlags, usize)> {
    let (ip, seg) = ipv4::Ipv4Header::parse(pkt).ok()?;
    let t = wtcp::parse_segment(seg, ip.src, ip.dst, false).ok()?;
    Some((t.header.flags, t.payload.len()))
}

/// Whether host `i` has an established connection from the client's port `port`.
fn host_has_conn(sim: &Sim, i: usize, port: u16) -> bool {
    sim.hosts[i]
        .host
        .stack
        .pcblist()
        .any(|p| p.fport == port && p.state.have_established())
}

/// A backup that lost the client's SYN must still end up with the connection: the primary's
/// SYN-ACK acknowledges the SYN, so it waits until every live backup holds it (the client's
/// SYN retransmission brings it). Otherwise that backup, taking over, resets the client.
#[test]
fn backup_that_lost_the_syn_still_carries_the_connection() {
    let mut sim = Sim::new(SimConfig::default());
    let mut dropped = false;
    sim.tunnel_drop = Some(Box::new(move |host, pkt| {
        let syn = client_segment(pkt).is_some_and(|(f, _)| f.contains(TcpFlags::SYN));
        if host == 1 && syn && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let c = sim.connect().unwrap();
    let port = sim.client.local_addr(c).unwrap().port();
    while sim.client_state(c) != Some(TcpState::Established) {
        assert!(sim.now < Instant::from_millis(10_000), "no handshake");
        assert!(sim.step());
    }
    // Let the handshake's ACK reach the replicas.
    sim.run_until(sim.now + Duration::from_millis(20));
    for i in 0..3 {
        assert!(
            host_has_conn(&sim, i, port),
            "host {i} lacks the connection"
        );
    }
    // The backup that had lost the SYN takes over and carries the exchange.
    sim.crash(0);
    let msg = b"after the takeover";
    sim.client.send(sim.now, c, msg, 0).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < msg.len() {
        assert!(sim.now < Instant::from_millis(30_000), "stuck at {got:?}");
        match sim.client.recv(sim.now, c, &mut buf, 0) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EWOULDBLOCK) => {}
            Err(e) => panic!("recv: {e}; violations {:?}", sim.violations),
        }
        assert!(sim.step());
    }
    assert_eq!(got, msg);
    assert_eq!(sim.primary(), Some(1));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
}

/// A backup that lost the handshake's ACK meets, in a download, only ACKs for data the primary
/// sent since (`th_ack` > ISS+1). It must complete the handshake from them and remember the
/// acknowledgement for bytes its service has not produced yet; FreeBSD's syncache would
/// refuse them, and that backup would reset the client when it takes over.
#[test]
fn backup_that_lost_the_handshake_ack_completes_it_from_a_later_ack() {
    let size = 200_000;
    let cfg = SimConfig {
        replicas: 2,
        service: ServiceKind::Bulk { bytes: size },
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    let mut dropped = false;
    sim.tunnel_drop = Some(Box::new(move |host, pkt| {
        let first_ack = client_segment(pkt).is_some_and(|(f, len)| {
            f.contains(TcpFlags::ACK) && !f.contains(TcpFlags::SYN) && len == 0
        });
        if host == 1 && first_ack && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let c = sim.connect().unwrap();
    let port = sim.client.local_addr(c).unwrap().port();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut crashed = false;
    loop {
        assert!(
            sim.now < Instant::from_millis(60_000),
            "stuck at {}; violations {:?}",
            got.len(),
            sim.violations
        );
        if !crashed && got.len() > size / 3 {
            assert!(
                host_has_conn(&sim, 1, port),
                "the backup lacks the connection"
            );
            sim.crash(0);
            crashed = true;
        }
        match sim.client.recv(sim.now, c, &mut buf, 0) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => {}
            Err(e) => panic!("recv: {e}; violations {:?}", sim.violations),
        }
        assert!(sim.step(), "idle at {}", got.len());
    }
    assert_eq!(got.len(), size);
    assert!(got.iter().enumerate().all(|(i, &b)| b == bulk_byte(i)));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
}

/// Whether a TCP segment carries a SACK option.
fn has_sack(pkt: &[u8]) -> bool {
    let Ok((ip, seg)) = ipv4::Ipv4Header::parse(pkt) else {
        return false;
    };
    let Ok(t) = wtcp::parse_segment(seg, ip.src, ip.dst, false) else {
        return false;
    };
    let o = t.options;
    let mut k = 0;
    while k < o.len() {
        match o[k] {
            0 => break,
            1 => k += 1,
            5 => return true,
            _ => k += o.get(k + 1).map_or(o.len(), |&l| (l as usize).max(2)),
        }
    }
    false
}

/// A SACK block acknowledges too: while the primary holds its ACK back for a backup, it must
/// not SACK bytes that backup may lack. A sender never retransmits SACKed bytes before its
/// RTO (RFC 6675), so a backup that lost them would wait while the primary's ACK waits for
/// it; at the end of an upload the client, in recovery with nothing left to resend, can stop
/// its retransmission timer and only probe the open window until it gives up (seed 7358).
/// Here the primary misses a segment near the end of an upload, so it holds later ones out
/// of order, and the backup misses the last one.
#[test]
fn primary_does_not_sack_what_a_backup_may_lack() {
    const MSS_DATA: usize = 1428;
    let size = 20 * MSS_DATA + 177;
    let cfg = SimConfig {
        replicas: 2,
        service: ServiceKind::Echo,
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    sim.tap_client = true;
    let dropped = std::rc::Rc::new(std::cell::Cell::new((false, false)));
    let seen = dropped.clone();
    let mut isn: Option<u32> = None;
    sim.tunnel_drop = Some(Box::new(move |host, pkt| {
        let Ok((ip, seg)) = ipv4::Ipv4Header::parse(pkt) else {
            return false;
        };
        let Ok(t) = wtcp::parse_segment(seg, ip.src, ip.dst, false) else {
            return false;
        };
        if t.header.flags.contains(TcpFlags::SYN) {
            isn = Some(t.header.seq);
            return false;
        }
        let Some(isn) = isn else { return false };
        let off = t.header.seq.wrapping_sub(isn.wrapping_add(1)) as usize;
        let (mut p, mut b) = dropped.get();
        let drop = if host == 0 && !p && off == size - 177 - 3 * MSS_DATA && !t.payload.is_empty() {
            p = true;
            true
        } else if host == 1 && !b && off == size - 177 && t.payload.len() == 177 {
            b = true;
            true
        } else {
            false
        };
        dropped.set((p, b));
        drop
    }));
    let c = sim.connect().unwrap();
    let data: Vec<u8> = (0..size).map(pattern).collect();
    let mut sent = 0;
    let mut shut = false;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    while got.len() < size {
        assert!(
            sim.now < Instant::from_millis(20_000),
            "stuck at {} of {size} (drops {:?}); violations {:?}",
            got.len(),
            seen.get(),
            sim.violations
        );
        while sent < size {
            match sim.client.send(sim.now, c, &data[sent..], 0) {
                Ok(n) => sent += n,
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        if sent == size && !shut {
            sim.client
                .shutdown(
                    sim.now,
                    c,
                    hydranet_core::netinet::tcp_usrreq::Shutdown::Write,
                )
                .unwrap();
            shut = true;
        }
        match sim.client.recv(sim.now, c, &mut buf, 0) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => {}
            Err(e) => panic!("recv after {} bytes: {e}", got.len()),
        }
        assert!(sim.step(), "idle at {}", got.len());
    }
    assert_eq!(
        seen.get(),
        (true, true),
        "the drops this test needs did not happen"
    );
    assert_eq!(got, data);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    let sacks = sim.client_tap.iter().filter(|(_, p)| has_sack(p)).count();
    assert_eq!(sacks, 0, "the primary SACKed while its backup lagged");
}

/// Client retransmissions while the primary's heartbeats happen to be lost make a backup
/// take over from a primary that is alive. That primary steps down when it hears the new
/// view, but it may lack client bytes the new primary holds: it must stay in the new
/// primary's acknowledgement quorum (the heartbeat timeout drops it if it is really gone),
/// or the new primary acknowledges bytes a live replica lacks (seed 1837).
#[test]
fn takeover_on_retransmissions_keeps_the_suspected_primary_in_the_quorum() {
    let size = 300_000;
    let cfg = SimConfig {
        replicas: 2,
        service: ServiceKind::Echo,
        // Long enough that the silence below never reaches it.
        detector: DetectorParams {
            heartbeat_timeout_ms: 400,
            ..DetectorParams::default()
        },
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    // Without timestamps the replayed segments below are duplicates, not PAWS failures.
    sim.client.sysctl.rfc1323 = 2;
    // From 100 ms the primary's frames to the backup are lost for less than the heartbeat
    // timeout, the primary misses the client's segments, and the backup sees two client
    // segments twice, as two retransmission timeouts would bring them (more than an eighth of
    // the detector window apart: closer duplicates count as one retransmission).
    let quiet = (Instant::from_millis(100), Instant::from_millis(260));
    sim.chan_drop = Some(Box::new(move |from, to, now| {
        from == 0 && to == 1 && now >= quiet.0 && now < quiet.1
    }));
    let last = std::rc::Rc::new(std::cell::RefCell::new(None::<Vec<u8>>));
    let seen = last.clone();
    sim.tunnel_drop = Some(Box::new(move |host, pkt| {
        let now = TUNNEL_CLOCK.with(|c| c.get());
        let data = client_segment(pkt).is_some_and(|(_, len)| len > 0);
        if data && host == 1 {
            *seen.borrow_mut() = Some(pkt.to_vec());
        }
        host == 0 && data && now >= quiet.0 + Duration::from_millis(5) && now < quiet.1
    }));
    let mut replays = vec![Instant::from_millis(110), Instant::from_millis(245)];
    let c = sim.connect().unwrap();
    let data: Vec<u8> = (0..size).map(pattern).collect();
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    while got.len() < size {
        assert!(
            sim.now < Instant::from_millis(30_000),
            "stuck at {}; violations {:?}",
            got.len(),
            sim.violations
        );
        TUNNEL_CLOCK.with(|c| c.set(sim.now));
        if replays.first().is_some_and(|&t| sim.now >= t) {
            replays.remove(0);
            let pkt = last.borrow().clone().expect("a client segment");
            sim.inject_to_host(1, pkt);
        }
        while sent < size {
            match sim.client.send(sim.now, c, &data[sent..], 0) {
                Ok(n) => sent += n,
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        match sim.client.recv(sim.now, c, &mut buf, 0) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => {}
            Err(e) => panic!("recv after {} bytes: {e}", got.len()),
        }
        assert!(sim.step(), "idle at {}", got.len());
    }
    assert_eq!(got, data);
    assert_eq!(
        sim.hosts[1].host.stats.takeovers, 1,
        "the scenario needs the backup to suspect the live primary"
    );
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

thread_local! {
    /// The simulator's clock, for filters that only see packets.
    static TUNNEL_CLOCK: std::cell::Cell<Instant> = const { std::cell::Cell::new(Instant::ZERO) };
}

/// Three heartbeats in a row from the primary are lost on the channel (2% loss makes that
/// happen in long runs): with the timeout at three intervals, silence alone would pass for
/// death and a backup would take over from a live primary. A peer whose heartbeat is
/// overdue is probed and answers at once, so only a peer that is really gone times out.
#[test]
fn lost_heartbeats_do_not_pass_for_a_death() {
    let mut sim = Sim::new(SimConfig {
        replicas: 2,
        ..Default::default()
    });
    let beats = [100, 110, 120].map(Instant::from_millis);
    sim.chan_drop = Some(Box::new(move |from, to, now| {
        from == 0 && to == 1 && beats.contains(&now)
    }));
    sim.run_until(Instant::from_millis(300));
    assert_eq!(
        sim.hosts[1].host.stats.takeovers, 0,
        "a live primary was taken over"
    );
    assert_eq!(sim.hosts[0].host.stats.step_downs, 0);
    assert_eq!(sim.primary(), Some(0));
    // A primary that is really gone still times out.
    sim.crash(0);
    sim.run_until(Instant::from_millis(400));
    assert_eq!(sim.primary(), Some(1));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

/// Bytes of client data a replica's service has read (all connections).
fn read_by(sim: &Sim, i: usize) -> usize {
    use hydranet_core::sim::service::HistEntry;
    sim.hosts[i]
        .service
        .history
        .iter()
        .map(|e| match e {
            HistEntry::Data(_, v) => v.len(),
            HistEntry::Eof(_) => 0,
        })
        .sum()
}

/// The primary's service answers only what every live backup's service will read in the
/// same order: a delivery reaches the primary's service once each backup acknowledged the
/// frame announcing it. Otherwise a primary that dies right after answering leaves backups
/// that order the pending input their own way, and a sequencer hands out a number the
/// client already saw (seed 6299). Here the announcement to the backup is lost for a while.
#[test]
fn primary_answers_only_what_backups_will_read_in_the_same_order() {
    let mut sim = Sim::new(SimConfig {
        replicas: 2,
        service: ServiceKind::Sequencer,
        ..Default::default()
    });
    let c = sim.connect().unwrap();
    while sim.client_state(c) != Some(TcpState::Established) {
        assert!(sim.step());
    }
    sim.run_until(sim.now + Duration::from_millis(20));
    let t0 = sim.now;
    sim.chan_drop = Some(Box::new(move |from, to, now| {
        from == 0 && to == 1 && now < t0 + Duration::from_millis(20)
    }));
    sim.client.send(sim.now, c, b"x\n", 0).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"\n") {
        assert!(sim.now < t0 + Duration::from_millis(2000), "no answer");
        assert!(sim.step());
        if let Ok(n) = sim.client.recv(sim.now, c, &mut buf, 0) {
            got.extend_from_slice(&buf[..n]);
            assert_eq!(
                read_by(&sim, 1),
                2,
                "the client got an answer the backup's service has not read the input of"
            );
        }
    }
    assert_eq!(got, b"1 x\n");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

/// Backups hold an announced delivery until the primary commits it (once every live backup
/// holds the announcement), and a new primary first re-announces what it holds uncommitted.
/// Otherwise one backup reads deliveries another never heard of, the primary dies, and the
/// other (ranked lower, so it takes over) orders the pending input its own way (seed 11717).
/// Here rank 1 hears nothing from the primary while rank 2 gets the announcements of a line
/// on each connection, in the order opposite to the one rank 1's table walks them when it
/// takes over.
#[test]
fn backups_read_only_deliveries_every_backup_holds() {
    let mut sim = Sim::new(SimConfig {
        replicas: 3,
        service: ServiceKind::Sequencer,
        ..Default::default()
    });
    let c1 = sim.connect().unwrap();
    let c2 = sim.connect().unwrap();
    while sim.client_state(c1) != Some(TcpState::Established)
        || sim.client_state(c2) != Some(TcpState::Established)
    {
        assert!(sim.step());
    }
    sim.run_until(sim.now + Duration::from_millis(20));
    sim.chan_drop = Some(Box::new(|from, to, _| from == 0 && to == 1));
    let base = sim.hosts[2].host.stats.deliver_rcvd;
    sim.client.send(sim.now, c1, b"a\n", 0).unwrap();
    while sim.hosts[2].host.stats.deliver_rcvd < base + 1 {
        assert!(sim.step());
    }
    sim.client.send(sim.now, c2, b"b\n", 0).unwrap();
    while sim.hosts[2].host.stats.deliver_rcvd < base + 2 {
        assert!(sim.step());
    }
    sim.crash(0);
    sim.chan_drop = None;
    let t0 = sim.now;
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 64];
    while !got1.ends_with(b"\n") || !got2.ends_with(b"\n") {
        assert!(sim.now < t0 + Duration::from_millis(3000), "no answer");
        assert!(sim.step());
        if let Ok(n) = sim.client.recv(sim.now, c1, &mut buf, 0) {
            got1.extend_from_slice(&buf[..n]);
        }
        if let Ok(n) = sim.client.recv(sim.now, c2, &mut buf, 0) {
            got2.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(sim.primary(), Some(1));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(read_by(&sim, 1), 4);
    assert_eq!(read_by(&sim, 2), 4);
}

/// A backup the primary dropped as dead and hears again (here the channel between them is cut
/// past the heartbeat timeout) rejoins the acknowledgement quorum of the connections it holds
/// everything acknowledged of. Otherwise the primary acknowledges a segment that backup lost
/// on the tunnel, the client never sends it again, and the backup, live and carrying the
/// connection, stays short of it for good (seed 12991: a 15 ms partition plus a lost and a
/// late heartbeat).
#[test]
fn backup_heard_again_rejoins_the_acknowledgement_quorum() {
    let mut sim = Sim::new(SimConfig::default());
    let c = sim.connect().unwrap();
    while sim.client_state(c) != Some(TcpState::Established) {
        assert!(sim.step());
    }
    sim.run_until(sim.now + Duration::from_millis(20));
    let t0 = sim.now;
    sim.chan_drop = Some(Box::new(move |from, to, now| {
        now < t0 + Duration::from_millis(60) && ((from, to) == (0, 2) || (from, to) == (2, 0))
    }));
    sim.run_until(t0 + Duration::from_millis(150));
    assert!(
        sim.hosts[0].host.stats.backups_dropped >= 1,
        "the primary never dropped host 2"
    );
    assert_eq!(sim.primary(), Some(0));
    let mut dropped = false;
    sim.tunnel_drop = Some(Box::new(move |host, pkt| {
        let data = host == 2 && !dropped && client_segment(pkt).is_some_and(|(_, n)| n > 0);
        dropped |= data;
        data
    }));
    sim.client.send(sim.now, c, b"hello\n", 0).unwrap();
    sim.run_until(sim.now + Duration::from_millis(1000));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(read_by(&sim, 2), 6);
}
