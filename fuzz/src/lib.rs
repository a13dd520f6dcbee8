//! Fuzz targets on `hydranet-core`: the target bodies live here so that tests (and the
//! regression replay) can call them without libFuzzer.
//!
//! * [`wire::ipv4`] — `wire_ipv4`
//! * [`wire::tcp`] — `wire_tcp`
//! * [`stack_input::run`] — `stack_input`
//! * [`two_stacks::run`] — `two_stacks`
//! * [`ackchan::run`] — `ackchan_frames`
//! * [`ipip::run`] — `ipip_redirector`
//! * [`ctl::run`] — `ctl_protocol`
//! * [`ft_group::run`] — `ft_group`
//! * [`pkt_script::run`] — `pkt_script`

pub mod ackchan;
pub mod ctl;
pub mod ft_group;
pub mod ipip;
pub mod net;
pub mod pkt_script;
pub mod rd;
pub mod stack_input;
pub mod two_stacks;
pub mod wire;

/// Whether the harnesses steer around known core bug `n` (numbered as in
/// `regressions/README.md`), so that a long run can look for new ones.
/// `HYDRANET_FUZZ_AVOID_KNOWN=1` (or `all`) steers around every known bug,
/// `HYDRANET_FUZZ_AVOID_KNOWN=bugs:1,4` around the ones listed; unset or `0`, around none: a
/// known bug then fails the run.
pub fn avoid(n: u32) -> bool {
    static AVOID: std::sync::OnceLock<Option<Vec<u32>>> = std::sync::OnceLock::new();
    let set = AVOID.get_or_init(|| {
        let v = std::env::var("HYDRANET_FUZZ_AVOID_KNOWN").unwrap_or_default();
        match v.trim() {
            "" | "0" => Some(Vec::new()),
            "1" | "all" => None,
            list => Some(
                list.trim_start_matches("bugs:")
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .collect(),
            ),
        }
    });
    set.as_ref().is_none_or(|bugs| bugs.contains(&n))
}

/// Known bug 1 (regressions/README.md): `shutdown(SHUT_WR)` in SYN_SENT with data queued.
pub fn known_shutdown_in_syn_sent(
    stack: &hydranet_core::stack::Stack<'_>,
    h: hydranet_core::stack::SocketHandle,
) -> bool {
    avoid(1)
        && stack.state(h) == Ok(hydranet_core::netinet::tcp_fsm::TcpState::SynSent)
        && stack.send_queue(h).unwrap_or(0) > 0
}

/// With `HYDRANET_FUZZ_TRACE` set, prints a tcpdump-like line for a delivered packet (for
/// replaying one input by hand: `cargo test` in fuzz/ with a regression file).
pub fn trace(now: hydranet_core::Instant, dir: &str, pkt: &[u8]) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("HYDRANET_FUZZ_TRACE").is_some()) {
        return;
    }
    use hydranet_core::wire::{ipv4::Ipv4Header, tcp};
    let Ok((ip, p)) = Ipv4Header::parse(pkt) else {
        eprintln!("{:>12} {dir} (not IPv4)", now.total_micros());
        return;
    };
    match tcp::parse_segment(p, ip.src, ip.dst, false) {
        Ok(t) => eprintln!(
            "{:>12} {dir} {} seq {} ack {} win {} len {}",
            now.total_micros(),
            t.header.flags,
            t.header.seq,
            t.header.ack,
            t.header.window,
            t.payload.len()
        ),
        Err(e) => eprintln!("{:>12} {dir} (bad TCP: {e})", now.total_micros()),
    }
}

/// FreeBSD accepts a syncookie only when the syncache overflowed recently or
/// `syncookies_only` is set (`syncache_expand()`, `tcps_sc_spurcookie` otherwise). Known bug 4
/// (regressions/README.md): the core accepts one whenever an ACK matches no syncache entry.
pub fn check_no_spurious_cookie(stack: &hydranet_core::stack::Stack<'_>) {
    let st = &stack.tcpstat;
    if avoid(4)
        || stack.sysctl.syncookies_only
        || st.sc_bucketoverflow != 0
        || st.sc_cacheoverflow != 0
    {
        return;
    }
    assert_eq!(
        st.sc_recvcookie, 0,
        "a syncookie was accepted though the syncache never overflowed (FreeBSD counts \
         tcps_sc_spurcookie and resets)"
    );
}
