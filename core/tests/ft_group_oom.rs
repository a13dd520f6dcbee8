//! `Host::ft_group` when the heap cannot hold the new group (with `alloc` the group table grows
//! on the heap, fallibly: see `hydranet_core::store`). It must answer `ENOMEM` and leave
//! nothing of the group behind, rather than answer `Ok` without the group.
//!
//! Out of memory is made by this test binary's global allocator, which refuses every
//! allocation of the calling thread while told to (as `malloc(9)` with `M_NOWAIT` may refuse in
//! the FreeBSD module). It lives here, in its own test binary, because the core forbids unsafe
//! code and a `GlobalAlloc` needs it; the other tests of this binary's threads are unaffected.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::ptr;

use common::*;
use hydranet_core::ft::host::{listen_on, GroupConfig, Host, Member, Role};
use hydranet_core::ft::params::{DetectorParams, PortMode};
use hydranet_core::stack::Stack;
use hydranet_core::wire::ipip;
use hydranet_core::{Errno, Instant};

thread_local! {
    static REFUSE: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, except that it refuses the allocations of a thread that set `REFUSE`.
struct Refusing;

fn refused() -> bool {
    REFUSE.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded unchanged to `System`, or answered with null (an allocation
// failure, which `GlobalAlloc` allows).
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused() {
            return ptr::null_mut();
        }
        // SAFETY: the caller's guarantees for `layout`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused() {
            return ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `p` came from `System` (this allocator never hands out anything else).
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refused() {
            return ptr::null_mut();
        }
        // SAFETY: as in `dealloc`, and the caller's guarantees for `new_size`.
        unsafe { System.realloc(p, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Refusing = Refusing;

/// `f()` with every allocation of this thread refused.
fn without_memory<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            REFUSE.with(|r| r.set(false));
        }
    }
    REFUSE.with(|r| r.set(true));
    let _restore = Restore;
    f()
}

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const REDIR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const MEMBERS: [Member; 1] = [Member { rank: 0, addr: ME }];

fn config() -> GroupConfig<'static> {
    GroupConfig {
        group_id: 1,
        local_rank: 0,
        members: &MEMBERS,
        key: [9; 32],
        incarnation: 1,
    }
}

/// A host serving VIP behind REDIR with a listener on VIP:80, and no group yet.
fn host() -> Host<'static> {
    let mut h = Host::new(Stack::new_alloc([5; 16]), ME).unwrap();
    h.v_host(VIP).unwrap();
    h.add_redirector(REDIR).unwrap();
    listen_on(&mut h.stack, VIP, 80, 8).unwrap();
    h
}

/// The SYN-ACK `h` answers a tunnelled client SYN from `sport` with.
fn syn_ack(h: &mut Host<'_>, now: Instant, sport: u16) -> Vec<u8> {
    let syn = build_packet(
        CLIENT,
        VIP,
        sport,
        80,
        fl("S"),
        1000,
        0,
        65535,
        &opt::mss(1460),
        &[],
    );
    let mut tunnelled = vec![0u8; syn.len() + 20];
    let n = ipip::encapsulate(REDIR, ME, &syn, 64, &mut tunnelled).unwrap();
    h.handle_packet(now, &tunnelled[..n]);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Some(n) = h.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
    out.into_iter()
        .find(|p| parse_out(now, p).flags == fl("S."))
        .expect("no SYN-ACK")
}

#[test]
fn a_group_without_memory_is_enomem_and_leaves_nothing_behind() {
    let now = Instant::from_millis(1);
    let mut failed = host();
    assert_eq!(
        without_memory(|| failed.ft_group(VIP, 80, &config())),
        Err(Errno::ENOMEM)
    );
    assert_eq!(failed.role(VIP, 80), None, "a group without memory");
    assert_eq!(
        failed.setportopt(VIP, 80, PortMode::Primary, DetectorParams::default()),
        Err(Errno::ENOENT)
    );

    // Nor the port's ISN key (set before the group is pushed): the host answers a SYN exactly
    // as a host that never had a group does.
    let mut plain = host();
    assert_eq!(
        syn_ack(&mut failed, now, 40000),
        syn_ack(&mut plain, now, 40000)
    );

    // With memory again the same group is made (no EEXIST from a half-made one), and its key
    // does show in the SYN-ACK: the comparison above can tell.
    assert_eq!(failed.ft_group(VIP, 80, &config()), Ok(()));
    assert_eq!(failed.role(VIP, 80), Some(Role::Primary));
    let keyed = parse_out(now, &syn_ack(&mut failed, now, 40001)).seq;
    let unkeyed = parse_out(now, &syn_ack(&mut plain, now, 40001)).seq;
    assert_ne!(
        keyed, unkeyed,
        "the group's ISN key does not change the ISS"
    );
}
