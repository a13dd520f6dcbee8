//! An attacker on the ack-channel link, without the group key, injects forged, replayed and
//! modified ack-channel frames (issue 3): none moves the acknowledgement point, changes the
//! primary or makes a replica drop data, and every one is dropped and counted.
#![cfg(feature = "sim")]

use hydranet_core::ft::ackchan::{AckChanConfig, AckChannel};
use hydranet_core::ft::host::ACKCHAN_PORT;
use hydranet_core::ft::msg::{ConnKey, FtMsg, MSG_LEN};
use hydranet_core::netinet::tcp_seq::Seq;
use hydranet_core::sim::schedule::pattern;
use hydranet_core::sim::service::histories_agree;
use hydranet_core::sim::{host_addr, Sim, SimConfig, CLIENT, ORIGIN, SERVICE_PORT};
use hydranet_core::wire::{ipv4, udp};
use hydranet_core::{Duration, Errno, Instant};

fn udp_to(from: usize, to: usize, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let n = udp::emit_ipv4_udp(
        host_addr(from),
        host_addr(to),
        ACKCHAN_PORT,
        ACKCHAN_PORT,
        payload,
        64,
        &mut buf,
    )
    .unwrap();
    buf.truncate(n);
    buf
}

fn udp_payload(pkt: &[u8]) -> Vec<u8> {
    let (ip, seg) = ipv4::Ipv4Header::parse(pkt).unwrap();
    let (_, data) = udp::parse_datagram(seg, ip.src, ip.dst, false).unwrap();
    data.to_vec()
}

#[test]
fn forged_replayed_and_modified_frames_are_dropped_and_counted() {
    let size = 400_000;
    let mut sim = Sim::new(SimConfig::default());
    sim.tap_chan = true;
    let c = sim.connect().unwrap();
    let port = sim.client.local_addr(c).map(|a| a.port()).unwrap_or(0);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16384];
    let mut attacks = 0u32;
    // The attacker's own channel: right group id and replica ids, wrong key.
    let mut evil = AckChannel::new(1, 7, [0x5a; 32], 99, AckChanConfig::default());
    evil.add_peer(0).unwrap();
    evil.add_peer(2).unwrap();
    evil.set_epoch(0xffff_fff0);
    let mut next_attack = Instant::from_millis(30);
    while got.len() < size {
        assert!(
            sim.now < Instant::from_millis(30_000),
            "stuck at {}",
            got.len()
        );
        let now = sim.now;
        while sent < size {
            let data: Vec<u8> = (sent..(sent + 8192).min(size)).map(pattern).collect();
            match sim.client.send(now, c, &data, 0) {
                Ok(n) => sent += n,
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        loop {
            match sim.client.recv(now, c, &mut buf, 0) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                Ok(_) => panic!("early EOF"),
                Err(Errno::EWOULDBLOCK) | Err(Errno::ENOTCONN) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        if now >= next_attack && !sim.chan_tap.is_empty() {
            next_attack = now + Duration::from_millis(7);
            attacks += 1;
            // 1. Replays of every authentic frame seen so far (old sequence numbers,
            //    heartbeat counters).
            let tap: Vec<_> = sim.chan_tap.clone();
            for (from, to, pkt) in tap.iter().rev().take(20) {
                sim.inject_to_host(*to, pkt.clone());
                let _ = from;
            }
            // 2. Modified frames: raise the epoch, bend a payload byte.
            for (from, to, pkt) in tap.iter().rev().take(10) {
                let mut p = udp_payload(pkt);
                p[8..12].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
                sim.inject_to_host(*to, udp_to(*from, *to, &p));
                let mut q = udp_payload(pkt);
                if q.len() > 62 {
                    q[46 + 8] ^= 0xff; // inside the first message (e.g. rcv_nxt)
                } else {
                    q[30] ^= 0x01;
                }
                sim.inject_to_host(*to, udp_to(*from, *to, &q));
            }
            // 3. Forged frames from "backup 1": PROGRESS claiming the whole stream, DELIVER
            //    and MISSING to the primary and to backup 2, heartbeats claiming primary at a
            //    huge epoch.
            let conn = ConnKey { addr: CLIENT, port };
            let mut m = [0u8; 3 * MSG_LEN];
            let mut k = 0;
            for msg in [
                FtMsg::Progress {
                    conn,
                    rcv_nxt: Seq(0x7fff_0000),
                    edge: Seq(0x7fff_ffff),
                },
                FtMsg::Deliver {
                    conn,
                    upto: Seq(0x7fff_0000),
                },
                FtMsg::Missing { conn },
            ] {
                k += msg.encode(&mut m[k..]).unwrap();
            }
            evil.send(now, 0, &m[..k]).unwrap();
            evil.send(now, 2, &m[..k]).unwrap();
            evil.heartbeat(now, &[1, 1]).unwrap();
            let mut f = vec![0u8; 2048];
            while let Some((to, n)) = evil.poll_transmit(now, &mut f) {
                sim.inject_to_host(to as usize, udp_to(1, to as usize, &f[..n]));
            }
        }
        assert!(sim.step(), "idle");
    }
    // Let the close settle and the last acknowledgements flow.
    let end = sim.now + Duration::from_millis(500);
    sim.run_until(end);
    assert!(attacks >= 5, "only {attacks} attack rounds");
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "echo corrupted"
    );
    // Invariants 1 (acknowledgement point), 3, 4 and 5 held after every step.
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.client_resets, 0);
    // The primary never changed and no view moved.
    assert_eq!(sim.primary(), Some(0));
    for (i, h) in sim.hosts.iter().enumerate() {
        assert_eq!(
            h.host.epoch(ORIGIN, SERVICE_PORT),
            Some(0),
            "host {i} epoch"
        );
        assert_eq!(h.host.stats.takeovers, 0, "host {i} took over");
        assert_eq!(h.host.stats.step_downs, 0, "host {i} stepped down");
        assert_eq!(h.host.stats.deliveries_lost, 0, "host {i} lost deliveries");
        assert_eq!(h.host.stats.missing_rcvd, 0, "host {i} acted on MISSING");
    }
    // No replica dropped data: every replica read the whole stream in the same order.
    let reference = sim.hosts[0].service.history.clone();
    for h in &sim.hosts[1..] {
        assert!(histories_agree(&reference, &h.service.history));
        let total: usize = h
            .service
            .history
            .iter()
            .map(|e| match e {
                hydranet_core::sim::service::HistEntry::Data(_, v) => v.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, size, "a backup read {total} of {size} bytes");
    }
    // Every attack frame was dropped and counted.
    let mut forged = 0;
    let mut replayed = 0;
    for h in &sim.hosts {
        let s = h.host.chan_stats(ORIGIN, SERVICE_PORT).unwrap();
        forged += s.forged;
        replayed += s.replayed + s.duplicates + s.stale_epoch;
    }
    eprintln!("attack rounds {attacks}: forged {forged}, replayed/duplicate/stale {replayed}");
    assert!(
        forged >= attacks as u64 * 20,
        "forged frames counted: {forged}"
    );
    assert!(replayed >= attacks as u64, "replays counted: {replayed}");
}
