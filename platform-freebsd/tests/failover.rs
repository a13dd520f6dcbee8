//! A replicated connection through three fake FreeBSD hosts running the module: the client's
//! stream carries on byte for byte, without a reset, when the primary's module is unloaded
//! (`kldunload -f`: no goodbye, the group must notice by itself).

mod fake;

use fake::net::{pattern, Net, ORIGIN, PORT};
use hydranet_core::ft::host::Role;

/// Echo through the group; `kill` is called once when `kill_at` bytes came back.
fn echo(net: &mut Net, total: usize, kill_at: usize, kill: &mut dyn FnMut(&mut Net)) -> Vec<u8> {
    let mut killed = false;
    fake::net::echo(net, total, &mut |net, got| {
        if !killed && got >= kill_at {
            killed = true;
            kill(net);
        }
    })
}

#[test]
fn replicated_echo_without_failure() {
    let mut net = Net::new(3, true);
    let got = echo(&mut net, 100_000, usize::MAX, &mut |_| {});
    assert!(got == pattern(100_000), "echo differs");
    assert_eq!(net.rst_to_client, 0);
    for n in &net.nodes {
        let m = n.m.as_ref().unwrap();
        let role = m.host.role(ORIGIN, PORT).unwrap();
        assert_eq!(role == Role::Primary, n.addr == fake::net::host_addr(0));
        // Every replica's server saw the whole stream, through its own relay.
        let st = n.k.st();
        let (_, r) = st.relays.iter().next().expect("a relay per replica");
        assert!(r.received == pattern(100_000), "server input differs");
        assert!(r.closed && r.eof_sent);
    }
}

#[test]
fn primary_unloaded_mid_stream_backup_takes_over() {
    let mut net = Net::new(3, true);
    let mut report = None;
    let total = 300_000;
    let got = echo(&mut net, total, total / 3, &mut |net| {
        report = Some(net.unload(0));
    });
    let report = report.expect("primary unloaded");
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert_eq!(report.reset, 0);
    assert_eq!(got.len(), total);
    assert!(got == pattern(total), "stream differs after takeover");
    assert_eq!(net.rst_to_client, 0, "client saw a reset");
    eprintln!(
        "packets {}, verdicts {:?}, callouts re-armed for the instant they fired in {}",
        net.packets, net.verdicts, net.same_instant_rearms
    );
    // The unloaded module's callout is stopped and its relay closed.
    let k0 = &net.nodes[0].k;
    assert_eq!(k0.st().callout, None);
    assert!(k0.st().relays.values().all(|r| r.closed));
    // Rank 1 took over; rank 2 follows it.
    let m1 = net.nodes[1].m.as_ref().unwrap();
    assert_eq!(m1.host.role(ORIGIN, PORT), Some(Role::Primary));
    assert!(m1.host.stats.takeovers >= 1);
    let m2 = net.nodes[2].m.as_ref().unwrap();
    assert_eq!(m2.host.role(ORIGIN, PORT), Some(Role::Backup));
    // The new primary says so on its control interface.
    let (m1, k1) = {
        let n = &mut net.nodes[1];
        (n.m.as_mut().unwrap(), n.k.clone())
    };
    let status = fake::ctl(m1, &k1, fake::PID, "status").unwrap();
    assert!(status.contains("role@192.0.2.80:80=primary"), "{status}");
}

#[test]
fn second_failure_leaves_the_last_replica_serving() {
    let mut net = Net::new(3, true);
    let total = 200_000;
    let mut stage = 0;
    let data = pattern(total);
    let got = fake::net::echo(&mut net, total, &mut |net, got| {
        if stage == 0 && got >= total / 4 {
            stage = 1;
            net.unload(0);
        } else if stage == 1 && got >= total / 2 {
            stage = 2;
            net.unload(1);
        }
    });
    assert_eq!(stage, 2);
    assert!(got == data, "stream differs after two takeovers");
    assert_eq!(net.rst_to_client, 0);
    let m2 = net.nodes[2].m.as_ref().unwrap();
    assert_eq!(m2.host.role(ORIGIN, PORT), Some(Role::Primary));
}
