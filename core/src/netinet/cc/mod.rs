//! Congestion control, shaped like FreeBSD's modular framework (`sys/netinet/cc/cc.h`,
//! `cc.c` and the `cc_*` wrappers in `tcp_input.c` / `tcp_timer.c`).
//!
//! Two layers, as in FreeBSD:
//!
//! * [`NewReno`] and [`Cubic`] implement [`CcAlgo`]: the `struct cc_algo` hooks, which only do
//!   what FreeBSD's `cc_newreno.c` / `cc_cubic.c` do.
//! * [`CcAlgorithm`] is what a connection holds. Its [`CcAlgo`] impl performs the bookkeeping that
//!   FreeBSD keeps outside the modules (ABC accounting, `CCF_CWND_LIMITED`, recovery flags,
//!   `snd_recover`, the spurious-RTO undo state) and then dispatches to the algorithm. The stack
//!   should call the hooks through [`CcAlgorithm`] only.
//!
//! Dispatch is an enum rather than `dyn` so the core needs neither `alloc` nor vtables.

pub mod cubic;
pub mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

use crate::netinet::tcp_seq::{seq_geq, Seq};

/// Largest unscaled window (FreeBSD `TCP_MAXWIN`).
pub const TCP_MAXWIN: u32 = 65535;
/// Largest window-scale shift (RFC 7323, FreeBSD `TCP_MAX_WINSHIFT`).
pub const TCP_MAX_WINSHIFT: u8 = 14;

/// FreeBSD `tcp_compute_initwnd`: the initial window, also used as the restart window.
///
/// With `initcwnd_segs` = 10 (`net.inet.tcp.initcwnd_segments`' default) this is RFC 6928's
/// `min(10*mss, max(2*mss, 14600))`; with 0 it falls back to RFC 3390's
/// `min(4*mss, max(2*mss, 4380))`, which is what FreeBSD does when the sysctl is zeroed (and
/// `net.inet.tcp.rfc3390` keeps its default of 1).
pub fn tcp_compute_initial_window(maxseg: u32, initcwnd_segs: u32) -> u32 {
    let two = maxseg.saturating_mul(2);
    if initcwnd_segs != 0 {
        // FreeBSD scales the byte cap by 1460, the RFC 6928 "standard" segment size.
        maxseg
            .saturating_mul(initcwnd_segs)
            .min(two.max(initcwnd_segs.saturating_mul(1460)))
    } else {
        maxseg.saturating_mul(4).min(two.max(4380))
    }
}

/// Which kind of ACK the hook is told about (FreeBSD `CC_ACK` / `CC_DUPACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CcAckType {
    /// An ACK that advanced `snd_una`.
    Ack,
    /// A duplicate ACK.
    DupAck,
}

/// Congestion signals (FreeBSD `CC_NDUPACK`, `CC_ECN`, `CC_RTO`, `CC_RTO_ERR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CcSignal {
    /// The duplicate-ACK threshold was reached: enter fast recovery.
    NDupAck,
    /// ECN-Echo seen.
    Ecn,
    /// Retransmission timeout. Signal it after incrementing `t_rxtshift`, as
    /// `tcp_timer_rexmt` does, so the first timeout of a series is recognisable.
    Rto,
    /// The last RTO was spurious (RFC 4015 / Eifel or the `t_badrxtwin` check): undo it.
    RtoErr,
}

/// The connection flags the framework and algorithms consult (`t_flags` recovery bits and
/// `ccv->flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CcFlags {
    /// `IN_FASTRECOVERY` (`TF_FASTRECOVERY`).
    pub in_recovery: bool,
    /// `IN_CONGRECOVERY` (`TF_CONGRECOVERY`).
    pub in_cong_recovery: bool,
    /// `CCF_CWND_LIMITED`; recomputed by [`CcAlgorithm`] on every ACK.
    pub cwnd_limited: bool,
    /// `CCF_ABC_SENTAWND`: a whole cwnd has been acknowledged since the last CA increase.
    pub abc_sentawnd: bool,
    /// SACK is in use on this connection (`TF_SACK_PERMIT`): pipe accounts for the scoreboard.
    pub use_sack: bool,
    /// `TF_WASFRECOVERY`: fast recovery was active at the first RTO (restored by `RtoErr`).
    pub was_recovery: bool,
    /// `TF_WASCRECOVERY`.
    pub was_cong_recovery: bool,
    /// `TF_PREVVALID`: the `*_prev` values hold the state from before the first RTO.
    pub prev_valid: bool,
}

impl CcFlags {
    /// FreeBSD `IN_RECOVERY`: fast or congestion recovery.
    pub fn in_any_recovery(&self) -> bool {
        self.in_recovery || self.in_cong_recovery
    }
    /// FreeBSD `ENTER_RECOVERY`: fast recovery implies congestion recovery.
    pub fn enter_recovery(&mut self) {
        self.in_recovery = true;
        self.in_cong_recovery = true;
    }
    /// FreeBSD `EXIT_RECOVERY`. The stack calls this once the ACK that ends recovery has been
    /// fully processed (after `post_recovery` and `ack_received`), as `tcp_do_segment` does.
    pub fn exit_recovery(&mut self) {
        self.in_recovery = false;
        self.in_cong_recovery = false;
    }
}

/// The connection variables the algorithms read and write: FreeBSD's `struct cc_var` plus the
/// `tcpcb` fields it reaches through `CCV()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CcVar {
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    /// Sender MSS in bytes (`t_maxseg`). Zero is treated as one to keep divisions defined.
    pub t_maxseg: u32,
    /// Peer's advertised window (already scaled).
    pub snd_wnd: u32,
    /// Cumulative ACK point. For hooks driven by an ACK, set it to that ACK's `th_ack`
    /// (FreeBSD's `ccv->curack`) before calling.
    pub snd_una: Seq,
    /// Next sequence to send; after an RTO it is pulled back to `snd_una`, which is how the
    /// slow-start ABC limit recognises post-RTO slow start.
    pub snd_nxt: Seq,
    pub snd_max: Seq,
    pub snd_recover: Seq,
    /// Send window scale (`snd_scale`); cwnd is capped at `TCP_MAXWIN << snd_scale`.
    pub snd_scale: u8,
    /// Retransmit backoff count (`t_rxtshift`); 1 on the first RTO of a series.
    pub t_rxtshift: u32,
    /// Bytes newly acknowledged by this ACK (`BYTES_THIS_ACK`).
    pub bytes_this_ack: u32,
    /// Segments this ACK covers (for ABC); treated as at least 1.
    pub nsegs: u32,
    /// ABC accumulator (`t_bytes_acked`).
    pub t_bytes_acked: u32,
    /// Smoothed RTT in ms (0 = no estimate yet).
    pub t_srtt_ticks: u32,
    /// Now, in ms (FreeBSD `ticks` at hz=1000; wraps).
    pub ticks: u32,
    pub flags: CcFlags,
    /// SACK scoreboard: bytes SACKed above `snd_una` (`sackhint.sacked_bytes`).
    pub sacked_bytes: u32,
    /// SACK scoreboard: bytes retransmitted from holes (`sackhint.sack_bytes_rexmit`).
    pub sack_bytes_rexmit: u32,
    /// State saved at the first RTO, restored by [`CcSignal::RtoErr`].
    pub snd_cwnd_prev: u32,
    pub snd_ssthresh_prev: u32,
    pub snd_recover_prev: Seq,
    /// `net.inet.tcp.abc_l_var` (default 2).
    pub abc_l_var: u32,
    /// `net.inet.tcp.initcwnd_segments` (default 10; 0 selects RFC 3390).
    pub initial_window_segs: u32,
}

impl CcVar {
    /// Fresh variables as `tcp_newtcpcb` leaves them: cwnd and ssthresh "infinite" until
    /// `conn_init` sets the initial window.
    pub fn new(t_maxseg: u32) -> Self {
        let inf = TCP_MAXWIN << TCP_MAX_WINSHIFT;
        CcVar {
            snd_cwnd: inf,
            snd_ssthresh: inf,
            t_maxseg,
            snd_wnd: 0,
            snd_una: Seq(0),
            snd_nxt: Seq(0),
            snd_max: Seq(0),
            snd_recover: Seq(0),
            snd_scale: 0,
            t_rxtshift: 0,
            bytes_this_ack: 0,
            nsegs: 1,
            t_bytes_acked: 0,
            t_srtt_ticks: 0,
            ticks: 0,
            flags: CcFlags::default(),
            sacked_bytes: 0,
            sack_bytes_rexmit: 0,
            snd_cwnd_prev: 0,
            snd_ssthresh_prev: 0,
            snd_recover_prev: Seq(0),
            abc_l_var: 2,
            initial_window_segs: 10,
        }
    }

    /// The MSS, never zero.
    #[inline]
    pub fn mss(&self) -> u32 {
        self.t_maxseg.max(1)
    }

    /// `TCP_MAXWIN << snd_scale`, the ceiling slow start and NewReno CA grow cwnd to.
    #[inline]
    pub fn max_cwnd(&self) -> u32 {
        TCP_MAXWIN << self.snd_scale.min(TCP_MAX_WINSHIFT)
    }

    /// `snd_max - snd_una`, or 0 if the two are inconsistent.
    #[inline]
    pub fn flight(&self) -> u32 {
        if seq_geq(self.snd_max, self.snd_una) {
            self.snd_max - self.snd_una
        } else {
            0
        }
    }

    /// FreeBSD `tcp_compute_pipe` (RFC 6675 pipe without the lost-bytes refinement): the data
    /// the sender believes is in the network.
    pub fn pipe(&self) -> u32 {
        let flight = self.flight();
        if self.flags.use_sack {
            flight
                .saturating_sub(self.sacked_bytes)
                .saturating_add(self.sack_bytes_rexmit)
        } else {
            flight
        }
    }

    /// The initial / restart window for the current MSS.
    pub fn initial_window(&self) -> u32 {
        tcp_compute_initial_window(self.mss(), self.initial_window_segs)
    }

    /// `max(2, bytes * num / den / mss) * mss`: FreeBSD's ssthresh rounding.
    pub(crate) fn ssthresh_from(&self, bytes: u32, num: u64, den: u64) -> u32 {
        let mss = u64::from(self.mss());
        let segs = (u64::from(bytes) * num / den.max(1) / mss).max(2);
        u32::try_from(segs.saturating_mul(mss)).unwrap_or(u32::MAX)
    }
}

/// The `struct cc_algo` hooks.
pub trait CcAlgo {
    /// Connection established: set up per-connection state (`conn_init`).
    fn conn_init(&mut self, v: &mut CcVar);
    /// An ACK arrived (`ack_received`).
    fn ack_received(&mut self, v: &mut CcVar, ty: CcAckType);
    /// Congestion was detected (`cong_signal`).
    fn cong_signal(&mut self, v: &mut CcVar, sig: CcSignal);
    /// The ACK ending fast recovery arrived (`post_recovery`).
    fn post_recovery(&mut self, v: &mut CcVar);
    /// Sending resumes after an idle period longer than the RTO (`after_idle`).
    fn after_idle(&mut self, v: &mut CcVar);
}

/// The algorithm a connection uses, plus the framework code around the hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CcAlgorithm {
    NewReno(NewReno),
    Cubic(Cubic),
}

impl Default for CcAlgorithm {
    /// NewReno, the classic default and the simplest to reason about in tests.
    fn default() -> Self {
        CcAlgorithm::NewReno(NewReno::default())
    }
}

impl CcAlgorithm {
    pub fn newreno() -> Self {
        CcAlgorithm::NewReno(NewReno::default())
    }

    pub fn cubic() -> Self {
        CcAlgorithm::Cubic(Cubic::default())
    }

    /// What a stock FreeBSD 14 connection gets: `net.inet.tcp.cc.algorithm` defaults to
    /// `cubic` since 14.0 (it was `newreno` before). The stack configuration decides whether to
    /// use this or [`Default`].
    pub fn default_for_freebsd14() -> Self {
        Self::cubic()
    }

    /// The name FreeBSD gives the module (`net.inet.tcp.cc.available`).
    pub fn name(&self) -> &'static str {
        match self {
            CcAlgorithm::NewReno(_) => "newreno",
            CcAlgorithm::Cubic(_) => "cubic",
        }
    }
}

/// Static dispatch to the selected algorithm's hook.
macro_rules! dispatch {
    ($self:ident, $a:ident => $call:expr) => {
        match $self {
            CcAlgorithm::NewReno($a) => $call,
            CcAlgorithm::Cubic($a) => $call,
        }
    };
}

impl CcAlgo for CcAlgorithm {
    /// `cc_conn_init`: initial window, then the algorithm's own init.
    fn conn_init(&mut self, v: &mut CcVar) {
        // FreeBSD marks a lost SYN / SYN-ACK by leaving snd_cwnd at 1; start with one segment.
        v.snd_cwnd = if v.snd_cwnd == 1 {
            v.mss()
        } else {
            v.initial_window()
        };
        v.t_bytes_acked = 0;
        dispatch!(self, a => a.conn_init(v));
    }

    /// `cc_ack_received`: cwnd-limited test and ABC accounting, then the algorithm.
    fn ack_received(&mut self, v: &mut CcVar, ty: CcAckType) {
        v.nsegs = v.nsegs.max(1);
        // net.inet.tcp.newcwv defaults to off, so "cwnd limited" is just cwnd <= snd_wnd.
        v.flags.cwnd_limited = v.snd_cwnd <= v.snd_wnd;
        if ty == CcAckType::Ack {
            if v.snd_cwnd > v.snd_ssthresh {
                v.t_bytes_acked = v.t_bytes_acked.saturating_add(v.bytes_this_ack);
                if v.t_bytes_acked >= v.snd_cwnd {
                    v.t_bytes_acked -= v.snd_cwnd;
                    v.flags.abc_sentawnd = true;
                }
            } else {
                v.flags.abc_sentawnd = false;
                v.t_bytes_acked = 0;
            }
        }
        dispatch!(self, a => a.ack_received(v, ty));
    }

    /// `cc_cong_signal`, with the RTO bookkeeping `tcp_timer_rexmt` does before calling it.
    fn cong_signal(&mut self, v: &mut CcVar, sig: CcSignal) {
        match sig {
            CcSignal::NDupAck => {
                if !v.flags.in_recovery {
                    v.snd_recover = v.snd_max;
                }
            }
            CcSignal::Ecn => {
                // A CE mark on data sent after the last reduction ends the old episode, so the
                // algorithm may react again.
                if !v.flags.in_cong_recovery || seq_geq(v.snd_una, v.snd_recover) {
                    v.flags.in_cong_recovery = false;
                    v.snd_recover = v.snd_max + 1;
                }
            }
            CcSignal::Rto => {
                // deviation: FreeBSD saves the undo state in tcp_timer_rexmt; it is done here so
                // that RtoErr's restore and the save live side by side. t_rxtshift 0 counts as a
                // first timeout too, for callers that signal before incrementing.
                if v.t_rxtshift <= 1 {
                    v.snd_cwnd_prev = v.snd_cwnd;
                    v.snd_ssthresh_prev = v.snd_ssthresh;
                    v.snd_recover_prev = v.snd_recover;
                    v.flags.was_recovery = v.flags.in_recovery;
                    v.flags.was_cong_recovery = v.flags.in_cong_recovery;
                    v.flags.prev_valid = true;
                } else {
                    v.flags.prev_valid = false;
                }
                v.t_bytes_acked = 0;
                v.flags.exit_recovery();
            }
            CcSignal::RtoErr => {
                // Only undo what was saved; FreeBSD's callers check TF_PREVVALID first.
                if !v.flags.prev_valid {
                    return;
                }
                v.snd_cwnd = v.snd_cwnd_prev.max(v.mss());
                v.snd_ssthresh = v.snd_ssthresh_prev;
                v.snd_recover = v.snd_recover_prev;
                if v.flags.was_recovery {
                    v.flags.in_recovery = true;
                }
                if v.flags.was_cong_recovery {
                    v.flags.in_cong_recovery = true;
                }
                v.snd_nxt = v.snd_max;
                v.flags.prev_valid = false;
                v.t_rxtshift = 0;
            }
        }
        dispatch!(self, a => a.cong_signal(v, sig));
    }

    /// `cc_post_recovery`. Recovery itself is left for the caller to exit (see
    /// [`CcFlags::exit_recovery`]) so the ACK's `ack_received` still sees it, as in FreeBSD.
    fn post_recovery(&mut self, v: &mut CcVar) {
        dispatch!(self, a => a.post_recovery(v));
        v.t_bytes_acked = 0;
    }

    fn after_idle(&mut self, v: &mut CcVar) {
        dispatch!(self, a => a.after_idle(v));
    }
}

/// Slow-start increase shared by both algorithms (the slow-start half of FreeBSD's
/// `newreno_cc_ack_received`, which `cubic_does_slow_start` repeats).
pub(crate) fn slow_start_increment(v: &CcVar) -> u32 {
    let mss = v.mss();
    // After an RTO snd_nxt is pulled back to snd_una; RFC 3465 forbids L > 1 SMSS then.
    let limit = if v.snd_nxt == v.snd_max {
        v.nsegs
            .max(1)
            .saturating_mul(v.abc_l_var)
            .saturating_mul(mss)
    } else {
        mss
    };
    v.bytes_this_ack.min(limit)
}

/// `min(cwnd + incr, TCP_MAXWIN << snd_scale)`.
pub(crate) fn grow_cwnd(v: &mut CcVar, incr: u32) {
    if incr > 0 {
        v.snd_cwnd = v.snd_cwnd.saturating_add(incr).min(v.max_cwnd());
    }
}

/// RFC 6582 §3.2 step 3 exit from fast recovery, shared by both algorithms: if less than
/// ssthresh is in flight, restart from pipe + 1 MSS (never below 2 MSS) instead of bursting.
/// Returns `None` when the algorithm's own full-window value applies.
pub(crate) fn post_recovery_pipe_limited(v: &CcVar) -> Option<u32> {
    let pipe = if v.flags.use_sack {
        v.pipe()
    } else {
        // Without SACK FreeBSD uses snd_max - curack; snd_una carries curack here.
        v.flight()
    };
    if pipe < v.snd_ssthresh {
        Some(pipe.max(v.mss()).saturating_add(v.mss()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::cubic::{cubic_k_ms, icbrt, w_cubic};
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const MSS: u32 = 1000;

    fn setup(cc: CcAlgorithm, mss: u32) -> (CcAlgorithm, CcVar) {
        let mut cc = cc;
        let mut v = CcVar::new(mss);
        v.snd_wnd = 1 << 30;
        v.snd_scale = TCP_MAX_WINSHIFT;
        v.snd_una = Seq(1000);
        v.snd_nxt = Seq(1000);
        v.snd_max = Seq(1000);
        v.snd_recover = Seq(1000);
        cc.conn_init(&mut v);
        (cc, v)
    }

    /// One ACK for `bytes` (in order, window full), advancing time by `dt` ms.
    fn ack(cc: &mut CcAlgorithm, v: &mut CcVar, bytes: u32, nsegs: u32, dt: u32) {
        v.ticks = v.ticks.wrapping_add(dt);
        v.snd_una += bytes;
        v.bytes_this_ack = bytes;
        v.nsegs = nsegs;
        cc.ack_received(v, CcAckType::Ack);
        // The sender refills the window at once.
        v.snd_max = v.snd_una + v.snd_cwnd;
        v.snd_nxt = v.snd_max;
    }

    /// A round trip: one ACK per MSS for the whole current window, spread over `rtt` ms.
    fn round(cc: &mut CcAlgorithm, v: &mut CcVar, rtt: u32) {
        let n = (v.snd_cwnd / v.mss()).max(1);
        v.t_srtt_ticks = rtt;
        for i in 0..n {
            let dt = rtt * (i + 1) / n - rtt * i / n;
            ack(cc, v, v.mss(), 1, dt);
        }
    }

    #[test]
    fn initial_window_matches_freebsd() {
        assert_eq!(tcp_compute_initial_window(1460, 10), 14600);
        assert_eq!(tcp_compute_initial_window(536, 10), 5360);
        assert_eq!(tcp_compute_initial_window(9000, 10), 18000);
        assert_eq!(tcp_compute_initial_window(1460, 0), 4380);
        assert_eq!(tcp_compute_initial_window(536, 0), 2144);
        assert_eq!(tcp_compute_initial_window(4000, 0), 8000);
        assert_eq!(tcp_compute_initial_window(u32::MAX, u32::MAX), u32::MAX);
        let (_, v) = setup(CcAlgorithm::newreno(), 1460);
        assert_eq!(v.snd_cwnd, 14600);
    }

    #[test]
    fn lost_syn_starts_with_one_segment() {
        let mut cc = CcAlgorithm::newreno();
        let mut v = CcVar::new(1460);
        v.snd_cwnd = 1;
        cc.conn_init(&mut v);
        assert_eq!(v.snd_cwnd, 1460);
    }

    #[test]
    fn slow_start_doubles_per_rtt() {
        for algo in [CcAlgorithm::newreno(), CcAlgorithm::cubic()] {
            let (mut cc, mut v) = setup(algo, MSS);
            let mut expect = 10 * MSS;
            for _ in 0..5 {
                assert_eq!(v.snd_cwnd, expect, "{}", cc.name());
                round(&mut cc, &mut v, 50);
                expect *= 2;
            }
        }
    }

    #[test]
    fn abc_limits_slow_start_increase() {
        let (mut cc, mut v) = setup(CcAlgorithm::newreno(), MSS);
        // A stretch ACK for 8 segments counted as one: L = abc_l_var (2) segments.
        ack(&mut cc, &mut v, 8 * MSS, 1, 1);
        assert_eq!(v.snd_cwnd, 12 * MSS);
        // The same ACK known to cover 8 segments (LRO): the limit scales with nsegs.
        ack(&mut cc, &mut v, 8 * MSS, 8, 1);
        assert_eq!(v.snd_cwnd, 20 * MSS);
        // A partial-segment ACK grows by what it acknowledged only.
        ack(&mut cc, &mut v, 100, 1, 1);
        assert_eq!(v.snd_cwnd, 20 * MSS + 100);
        // Slow start after an RTO (snd_nxt pulled back): L = 1 SMSS.
        v.snd_nxt = v.snd_una;
        v.snd_una += 8 * MSS;
        v.bytes_this_ack = 8 * MSS;
        v.nsegs = 8;
        cc.ack_received(&mut v, CcAckType::Ack);
        assert_eq!(v.snd_cwnd, 21 * MSS + 100);
    }

    #[test]
    fn cwnd_capped_by_window_scale() {
        let (mut cc, mut v) = setup(CcAlgorithm::newreno(), MSS);
        v.snd_scale = 0;
        v.snd_cwnd = 64_000;
        ack(&mut cc, &mut v, 2 * MSS, 2, 1);
        assert_eq!(v.snd_cwnd, TCP_MAXWIN);
    }

    #[test]
    fn newreno_congestion_avoidance_one_mss_per_rtt() {
        let (mut cc, mut v) = setup(CcAlgorithm::newreno(), MSS);
        v.snd_cwnd = 20 * MSS;
        v.snd_ssthresh = 10 * MSS;
        for r in 1..=10 {
            round(&mut cc, &mut v, 100);
            assert_eq!(v.snd_cwnd, (20 + r) * MSS);
        }
        // Stretch ACKs carry the remainder over in t_bytes_acked rather than losing it.
        let before = v.snd_cwnd;
        for _ in 0..(before / (3 * MSS) + 1) {
            ack(&mut cc, &mut v, 3 * MSS, 3, 10);
        }
        assert_eq!(v.snd_cwnd, before + MSS);
    }

    #[test]
    fn no_growth_when_not_cwnd_limited_or_in_recovery_or_dupack() {
        let (mut cc, mut v) = setup(CcAlgorithm::newreno(), MSS);
        v.snd_wnd = 5 * MSS;
        ack(&mut cc, &mut v, MSS, 1, 1);
        assert_eq!(v.snd_cwnd, 10 * MSS);
        v.snd_wnd = 1 << 30;
        v.flags.enter_recovery();
        ack(&mut cc, &mut v, MSS, 1, 1);
        assert_eq!(v.snd_cwnd, 10 * MSS);
        v.flags.exit_recovery();
        v.bytes_this_ack = MSS;
        cc.ack_received(&mut v, CcAckType::DupAck);
        assert_eq!(v.snd_cwnd, 10 * MSS);
    }

    #[test]
    fn newreno_loss_halves_and_recovers() {
        let (mut cc, mut v) = setup(CcAlgorithm::newreno(), MSS);
        v.snd_cwnd = 41 * MSS + 500;
        v.snd_max = v.snd_una + v.snd_cwnd;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        // Half of cwnd, rounded down to whole segments.
        assert_eq!(v.snd_ssthresh, 20 * MSS);
        assert!(v.flags.in_recovery && v.flags.in_cong_recovery);
        assert_eq!(v.snd_recover, v.snd_max);
        // Further dupacks in recovery change nothing.
        let saved = v;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        assert_eq!(v, saved);
        // Full ACK with plenty still in flight: cwnd = ssthresh.
        v.snd_una = v.snd_recover;
        v.snd_max = v.snd_una + 30 * MSS;
        cc.post_recovery(&mut v);
        assert_eq!(v.snd_cwnd, 20 * MSS);
        // Little in flight: pipe + 1 MSS, never below 2 MSS.
        v.snd_max = v.snd_una + 5 * MSS;
        cc.post_recovery(&mut v);
        assert_eq!(v.snd_cwnd, 6 * MSS);
        v.snd_max = v.snd_una;
        cc.post_recovery(&mut v);
        assert_eq!(v.snd_cwnd, 2 * MSS);
        v.flags.exit_recovery();
        // Tiny windows still leave ssthresh at 2 MSS.
        v.snd_cwnd = MSS;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        assert_eq!(v.snd_ssthresh, 2 * MSS);
    }

    #[test]
    fn post_recovery_uses_sack_pipe() {
        let (mut cc, mut v) = setup(CcAlgorithm::newreno(), MSS);
        v.snd_cwnd = 40 * MSS;
        v.snd_max = v.snd_una + 40 * MSS;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        v.flags.use_sack = true;
        v.snd_una += 10 * MSS;
        v.sacked_bytes = 25 * MSS;
        v.sack_bytes_rexmit = 2 * MSS;
        assert_eq!(v.pipe(), 7 * MSS);
        cc.post_recovery(&mut v);
        assert_eq!(v.snd_cwnd, 8 * MSS);
    }

    #[test]
    fn rto_collapses_to_one_mss_and_undo_restores() {
        for algo in [CcAlgorithm::newreno(), CcAlgorithm::cubic()] {
            let (mut cc, mut v) = setup(algo, MSS);
            v.snd_cwnd = 40 * MSS;
            v.snd_ssthresh = 30 * MSS;
            v.snd_max = v.snd_una + 36 * MSS;
            v.snd_wnd = 64 * MSS;
            let before = v;
            v.t_rxtshift = 1;
            cc.cong_signal(&mut v, CcSignal::Rto);
            assert_eq!(v.snd_cwnd, MSS);
            let want = match cc {
                CcAlgorithm::NewReno(_) => 18 * MSS,
                CcAlgorithm::Cubic(_) => 25 * MSS,
            };
            assert_eq!(v.snd_ssthresh, want, "{}", cc.name());
            assert!(v.flags.prev_valid);
            // Backed-off timeouts do not measure the path again.
            v.t_rxtshift = 2;
            cc.cong_signal(&mut v, CcSignal::Rto);
            assert_eq!(v.snd_ssthresh, want);
            assert!(!v.flags.prev_valid);
            // Undo is only possible straight after the first timeout.
            cc.cong_signal(&mut v, CcSignal::RtoErr);
            assert_eq!(v.snd_cwnd, MSS);

            let (mut cc, mut v) = setup(cc, MSS);
            v.snd_cwnd = before.snd_cwnd;
            v.snd_ssthresh = before.snd_ssthresh;
            v.snd_max = before.snd_max;
            v.snd_wnd = before.snd_wnd;
            v.flags.enter_recovery();
            let snap = cc.clone();
            v.t_rxtshift = 1;
            cc.cong_signal(&mut v, CcSignal::Rto);
            assert!(!v.flags.in_any_recovery());
            v.snd_nxt = v.snd_una;
            cc.cong_signal(&mut v, CcSignal::RtoErr);
            assert_eq!(v.snd_cwnd, 40 * MSS);
            assert_eq!(v.snd_ssthresh, 30 * MSS);
            assert!(v.flags.in_recovery && v.flags.in_cong_recovery);
            assert_eq!(v.snd_nxt, v.snd_max);
            assert_eq!(v.t_rxtshift, 0);
            if let (CcAlgorithm::Cubic(a), CcAlgorithm::Cubic(b)) = (&cc, &snap) {
                assert_eq!(a.w_max(), b.w_max());
                assert_eq!(a.k_ms(), b.k_ms());
                assert_eq!(a.w_est(), b.w_est());
                assert_eq!(a.t_epoch(), b.t_epoch());
                assert_eq!(a.num_cong_events(), b.num_cong_events());
            }
        }
    }

    #[test]
    fn ecn_reduces_once_per_window() {
        for algo in [CcAlgorithm::newreno(), CcAlgorithm::cubic()] {
            let (mut cc, mut v) = setup(algo, MSS);
            v.snd_cwnd = 40 * MSS;
            v.snd_max = v.snd_una + 40 * MSS;
            cc.cong_signal(&mut v, CcSignal::Ecn);
            let reduced = v.snd_cwnd;
            assert!(reduced == 20 * MSS || reduced == 28 * MSS);
            assert_eq!(v.snd_ssthresh, reduced);
            assert!(v.flags.in_cong_recovery && !v.flags.in_recovery);
            // Another mark on data from the same window is ignored.
            cc.cong_signal(&mut v, CcSignal::Ecn);
            assert_eq!(v.snd_cwnd, reduced);
            // A mark once everything up to snd_recover is acknowledged reacts again.
            v.snd_una = v.snd_recover;
            v.snd_max = v.snd_una + reduced;
            cc.cong_signal(&mut v, CcSignal::Ecn);
            assert!(v.snd_cwnd < reduced);
        }
    }

    #[test]
    fn after_idle_restarts_from_initial_window() {
        for algo in [CcAlgorithm::newreno(), CcAlgorithm::cubic()] {
            let (mut cc, mut v) = setup(algo, MSS);
            v.snd_cwnd = 100 * MSS;
            v.snd_ssthresh = 20 * MSS;
            cc.after_idle(&mut v);
            assert_eq!(v.snd_cwnd, 10 * MSS);
            assert_eq!(v.snd_ssthresh, 75 * MSS);
            v.snd_cwnd = 4 * MSS;
            cc.after_idle(&mut v);
            assert_eq!(v.snd_cwnd, 4 * MSS);
        }
    }

    #[test]
    fn default_algorithms() {
        assert_eq!(CcAlgorithm::default().name(), "newreno");
        assert_eq!(CcAlgorithm::default_for_freebsd14().name(), "cubic");
    }

    #[test]
    fn cube_root_is_exact() {
        let check = |x: u64| {
            let y = u128::from(icbrt(x));
            assert!(y * y * y <= u128::from(x), "{x}");
            assert!((y + 1) * (y + 1) * (y + 1) > u128::from(x), "{x}");
        };
        for x in 0..200_000u64 {
            check(x);
        }
        for n in 0..=2_642_245u64 {
            if n % 997 == 0 || n > 2_642_000 {
                let c = n * n * n;
                check(c);
                check(c.saturating_sub(1));
                check(c.saturating_add(1));
            }
        }
        for s in 0..64 {
            check(1u64 << s);
            check((1u64 << s) - 1);
        }
        check(u64::MAX);
        assert_eq!(icbrt(u64::MAX), 2_642_245);
    }

    #[test]
    fn cubic_k_and_curve() {
        // W_max 100 segments, cwnd_epoch 70: K = cbrt(30 / 0.4) s = 4.217 s.
        let k = cubic_k_ms(30 * MSS, MSS);
        assert_eq!(k, 4217);
        assert_eq!(cubic_k_ms(0, MSS), 0);
        assert_eq!(w_cubic(u64::from(k), k, 100 * MSS, MSS), 100 * MSS);
        // At t = 0 the curve starts from about cwnd_epoch.
        let w0 = w_cubic(0, k, 100 * MSS, MSS);
        assert!((69 * MSS..=71 * MSS).contains(&w0), "{w0}");
        // Symmetric around K.
        let above = w_cubic(u64::from(k) + 2000, k, 100 * MSS, MSS) - 100 * MSS;
        let below = 100 * MSS - w_cubic(u64::from(k) - 2000, k, 100 * MSS, MSS);
        assert!(above.abs_diff(below) <= 1);
        // Extremes saturate instead of overflowing.
        assert_eq!(w_cubic(u64::MAX, 0, u32::MAX, u32::MAX), u32::MAX);
        assert_eq!(w_cubic(0, u32::MAX, u32::MAX, u32::MAX), 0);
        let _ = cubic_k_ms(u32::MAX, 1);
    }

    #[test]
    fn cubic_loss_multiplies_by_0_7_with_fast_convergence() {
        let (mut cc, mut v) = setup(CcAlgorithm::cubic(), MSS);
        v.snd_cwnd = 100 * MSS;
        v.snd_max = v.snd_una + 100 * MSS;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        assert_eq!(v.snd_ssthresh, 70 * MSS);
        v.snd_una = v.snd_recover;
        v.snd_max = v.snd_una + 70 * MSS;
        cc.post_recovery(&mut v);
        v.flags.exit_recovery();
        assert_eq!(v.snd_cwnd, 70 * MSS);
        let CcAlgorithm::Cubic(c) = &cc else {
            unreachable!()
        };
        assert_eq!(c.w_max(), 100 * MSS);
        // A second loss below the previous W_max releases bandwidth: W_max = 0.85 cwnd.
        v.snd_cwnd = 90 * MSS;
        v.snd_max = v.snd_una + 90 * MSS;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        assert_eq!(v.snd_ssthresh, 63 * MSS);
        let CcAlgorithm::Cubic(c) = &cc else {
            unreachable!()
        };
        assert_eq!(c.w_max(), 76_500);
        assert_eq!(c.num_cong_events(), 2);
    }

    /// cwnd sampled once per RTT after a loss at 100 segments, RTT 100 ms.
    fn cubic_trace(start_ticks: u32, rounds: usize) -> (Vec<u32>, u32) {
        let (mut cc, mut v) = setup(CcAlgorithm::cubic(), MSS);
        v.ticks = start_ticks;
        v.t_srtt_ticks = 100;
        v.snd_cwnd = 100 * MSS;
        v.snd_max = v.snd_una + 100 * MSS;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        v.snd_una = v.snd_recover;
        v.snd_max = v.snd_una + 70 * MSS;
        cc.post_recovery(&mut v);
        v.flags.exit_recovery();
        assert_eq!(v.snd_cwnd, 70 * MSS);
        let mut trace = Vec::new();
        for _ in 0..rounds {
            trace.push(v.snd_cwnd);
            round(&mut cc, &mut v, 100);
        }
        let CcAlgorithm::Cubic(c) = &cc else {
            unreachable!()
        };
        (trace, c.k_ms())
    }

    #[test]
    fn cubic_concave_then_convex_around_w_max() {
        let (trace, k) = cubic_trace(5_000, 80);
        // FreeBSD slow-starts while cwnd <= ssthresh, so the epoch begins one ACK later at 71
        // segments.
        assert_eq!(k, cubic_k_ms(29 * MSS, MSS));
        let at = |ms: u32| trace[(ms / 100) as usize];
        // Concave: fast at first, slowing towards the plateau.
        let g1 = at(1000) - at(0);
        let g2 = at(2000) - at(1000);
        let g3 = at(3000) - at(2000);
        let g4 = at(4000) - at(3000);
        assert!(g1 > g2 && g2 > g3 && g3 > g4, "{g1} {g2} {g3} {g4}");
        // At K the window is back at W_max (within a segment or so).
        let wk = at(4200);
        assert!(wk.abs_diff(100 * MSS) <= 2 * MSS, "{wk}");
        // Convex beyond: accelerating probing.
        let h1 = at(5200) - at(4200);
        let h2 = at(6200) - at(5200);
        let h3 = at(7200) - at(6200);
        assert!(h1 < h2 && h2 < h3, "{h1} {h2} {h3}");
        // Never shrinks in CA.
        assert!(trace.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn cubic_unaffected_by_tick_wrap() {
        let (a, _) = cubic_trace(5_000, 60);
        let (b, _) = cubic_trace(u32::MAX - 2_000, 60);
        assert_eq!(a, b);
    }

    #[test]
    fn cubic_reno_friendly_region_on_short_rtt() {
        // With a tiny RTT the cubic curve barely moves per round trip; W_est (Reno-like growth)
        // must carry the window instead.
        let (mut cc, mut v) = setup(CcAlgorithm::cubic(), MSS);
        v.t_srtt_ticks = 1;
        v.snd_cwnd = 100 * MSS;
        v.snd_max = v.snd_una + 100 * MSS;
        cc.cong_signal(&mut v, CcSignal::NDupAck);
        v.snd_una = v.snd_recover;
        v.snd_max = v.snd_una + 70 * MSS;
        cc.post_recovery(&mut v);
        v.flags.exit_recovery();
        assert_eq!(v.snd_cwnd, 70 * MSS);
        for _ in 0..17 {
            round(&mut cc, &mut v, 1);
        }
        // α = 9/17 segment per RTT over 17 RTTs: about 9 segments.
        let grown = v.snd_cwnd - 70 * MSS;
        assert!((8 * MSS..=10 * MSS).contains(&grown), "{grown}");
        let CcAlgorithm::Cubic(c) = &cc else {
            unreachable!()
        };
        assert!(c.w_est() >= v.snd_cwnd - MSS);
    }

    #[test]
    fn cubic_without_rtt_estimate_keeps_slow_starting() {
        let (mut cc, mut v) = setup(CcAlgorithm::cubic(), MSS);
        v.snd_ssthresh = 5 * MSS;
        ack(&mut cc, &mut v, MSS, 1, 1);
        assert_eq!(v.snd_cwnd, 11 * MSS);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        for algo in [CcAlgorithm::newreno(), CcAlgorithm::cubic()] {
            let (mut cc, mut v) = setup(algo, 1);
            v.snd_cwnd = u32::MAX - 1;
            v.snd_ssthresh = 1;
            v.snd_wnd = u32::MAX;
            v.t_srtt_ticks = u32::MAX;
            v.ticks = u32::MAX;
            v.bytes_this_ack = u32::MAX;
            v.nsegs = u32::MAX;
            v.abc_l_var = u32::MAX;
            v.t_bytes_acked = u32::MAX;
            for _ in 0..3 {
                cc.ack_received(&mut v, CcAckType::Ack);
                v.ticks = v.ticks.wrapping_add(u32::MAX / 2);
            }
            assert!(v.snd_cwnd >= 1);
            v.snd_max = v.snd_una + u32::MAX / 2;
            cc.cong_signal(&mut v, CcSignal::NDupAck);
            cc.post_recovery(&mut v);
            cc.cong_signal(&mut v, CcSignal::Ecn);
            v.t_rxtshift = 1;
            cc.cong_signal(&mut v, CcSignal::Rto);
            cc.cong_signal(&mut v, CcSignal::RtoErr);
            cc.after_idle(&mut v);
            v.t_maxseg = 0;
            cc.cong_signal(&mut v, CcSignal::NDupAck);
            cc.ack_received(&mut v, CcAckType::Ack);
            cc.post_recovery(&mut v);
            assert!(v.snd_cwnd >= 1);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Ack { bytes: u32, nsegs: u32, dt: u32 },
        DupAck,
        Signal(u8),
        PostRecovery,
        ExitRecovery,
        AfterIdle,
        Window(u32),
        Srtt(u32),
        Sack(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u32..200_000, 0u32..64, 0u32..5_000)
                .prop_map(|(bytes, nsegs, dt)| Op::Ack { bytes, nsegs, dt }),
            2 => Just(Op::DupAck),
            2 => (0u8..4).prop_map(Op::Signal),
            1 => Just(Op::PostRecovery),
            1 => Just(Op::ExitRecovery),
            1 => Just(Op::AfterIdle),
            1 => any::<u32>().prop_map(Op::Window),
            1 => prop_oneof![Just(0u32), 1u32..2_000, Just(u32::MAX)].prop_map(Op::Srtt),
            1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Op::Sack(a, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn random_hook_sequences_keep_cwnd_at_least_one_mss(
            cubic in any::<bool>(),
            mss in 1u32..=65535,
            scale in 0u8..=14,
            segs in 0u32..=20,
            start in any::<u32>(),
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let algo = if cubic { CcAlgorithm::cubic() } else { CcAlgorithm::newreno() };
            let mut cc = algo;
            let mut v = CcVar::new(mss);
            v.snd_scale = scale;
            v.initial_window_segs = segs;
            v.snd_wnd = 1 << 20;
            v.ticks = start;
            v.snd_una = Seq(start);
            v.snd_nxt = Seq(start);
            v.snd_max = Seq(start);
            cc.conn_init(&mut v);
            prop_assert!(v.snd_cwnd >= mss);
            for op in ops {
                match op {
                    Op::Ack { bytes, nsegs, dt } => {
                        ack(&mut cc, &mut v, bytes, nsegs, dt);
                    }
                    Op::DupAck => {
                        v.bytes_this_ack = 0;
                        cc.ack_received(&mut v, CcAckType::DupAck);
                    }
                    Op::Signal(s) => {
                        let sig = [CcSignal::NDupAck, CcSignal::Ecn, CcSignal::Rto,
                                   CcSignal::RtoErr][usize::from(s)];
                        if sig == CcSignal::Rto {
                            v.t_rxtshift = v.t_rxtshift.saturating_add(1);
                        }
                        cc.cong_signal(&mut v, sig);
                    }
                    Op::PostRecovery => cc.post_recovery(&mut v),
                    Op::ExitRecovery => {
                        v.flags.exit_recovery();
                        v.t_rxtshift = 0;
                    }
                    Op::AfterIdle => cc.after_idle(&mut v),
                    Op::Window(w) => v.snd_wnd = w,
                    Op::Srtt(r) => v.t_srtt_ticks = r,
                    Op::Sack(s, r) => {
                        v.flags.use_sack = true;
                        v.sacked_bytes = s;
                        v.sack_bytes_rexmit = r;
                    }
                }
                prop_assert!(v.snd_cwnd >= mss, "cwnd {} < mss {}", v.snd_cwnd, mss);
            }
        }
    }
}
