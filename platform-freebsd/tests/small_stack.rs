//! The module on a small stack. A FreeBSD kernel thread has 16 KiB of stack; the module's
//! entry points run on it. Here a thread with a 64 KiB stack (128 KiB in an unoptimised build,
//! whose frames are much larger) loads three fake hosts, fills each one's group table
//! ([`MAX_GROUPS`] groups) and carries a replicated echo connection through them, with the
//! client, the redirector and the network of the test on that stack too.
//!
//! Before the core's tables could live on the heap (`hydranet_core::store`) a group alone was
//! 450 KiB by value and `ft_group` overflowed this stack. Measured with `HYDRANET_STACK_KIB`
//! (another size, to find how much the path needs): 28 KiB suffice in a release build, 64 KiB
//! in a debug one. A stack overflow aborts the test binary, hence a binary of its own.

mod fake;

use fake::net::{echo, host_addr, pattern, Net, KEY, ORIGIN, PARAMS_AT, PORT};
use fake::{ctl, PID};
use hydranet_core::ft::host::{Role, MAX_GROUPS};
use hydranet_platform_freebsd::{Caller, Storage};

const HOSTS: usize = 3;

/// Every host joins a group for each of the ports after `PORT` too, until its table is full.
fn fill_group_tables(net: &mut Net) {
    let members: Vec<String> = (0..HOSTS)
        .map(|i| format!("{i}@{}", host_addr(i)))
        .collect();
    let members = members.join(",");
    let caller = Caller { pid: PID };
    for (i, n) in net.nodes.iter_mut().enumerate() {
        let m = n.m.as_mut().unwrap();
        for k in 1..MAX_GROUPS as u16 {
            let port = PORT + k;
            let line = format!("group {ORIGIN} {port} {} {i} {KEY} {members}", 7 + k);
            assert_eq!(ctl(m, &n.k, PID, &line).unwrap(), "ok");
            let mode = if i == 0 { 1 } else { 2 };
            m.sys_setportopt(&caller, u64::from(port), mode, PARAMS_AT)
                .unwrap();
        }
        for k in 0..MAX_GROUPS as u16 {
            let want = if i == 0 { Role::Primary } else { Role::Backup };
            assert_eq!(m.host.role(ORIGIN, PORT + k), Some(want));
        }
        // The table is full: one more group is refused.
        let port = PORT + MAX_GROUPS as u16;
        let line = format!("group {ORIGIN} {port} 99 {i} {KEY} {members}");
        let answer = ctl(m, &n.k, PID, &line).unwrap();
        assert!(answer.starts_with("err ENOSPC"), "{answer}");
    }
}

#[test]
fn replicated_connection_with_full_group_tables_fits_a_small_stack() {
    let kib: usize = std::env::var("HYDRANET_STACK_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 128 } else { 64 });
    // The packet buffers and relay rings (about 1.1 MiB a host) are a static in the kernel:
    // made here, on the test's own stack, not on the small one.
    let storages: Vec<&'static mut Storage> = (0..HOSTS)
        .map(|_| Box::leak(Box::<Storage>::default()))
        .collect();
    let small = std::thread::Builder::new()
        .stack_size(kib << 10)
        .spawn(move || {
            let mut storages = storages.into_iter();
            let mut net = Net::with_storage(HOSTS, true, &mut || {
                storages.next().expect("a storage per host")
            });
            fill_group_tables(&mut net);
            let total = 100_000;
            let got = echo(&mut net, total, &mut |_, _| {});
            assert!(got == pattern(total), "echo differs");
            assert_eq!(net.rst_to_client, 0);
            for n in &net.nodes {
                let st = n.k.st();
                let (_, r) = st.relays.iter().next().expect("a relay per replica");
                assert!(r.received == pattern(total), "server input differs");
            }
        })
        .unwrap();
    small.join().expect("the module's path on a small stack");
}
