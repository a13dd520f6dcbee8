//! TCP timers (FreeBSD `tcp_timer.h` / `tcp_timer.c`): constants, the backoff tables and a table
//! of absolute deadlines, one per timer.
//!
//! deviation: FreeBSD arms callouts; the sans-IO core stores deadlines and the stack fires the
//! earliest due one from `handle_timeout`. The behaviour on expiry is FreeBSD's.

use crate::time::{Duration, Instant};

/// Milliseconds: FreeBSD's ticks at hz=1000.
pub const TCPTV_SRTTBASE: u32 = 0;
pub const TCPTV_RTOBASE: u32 = 1000;
pub const TCPTV_PERSMIN: u32 = 5000;
pub const TCPTV_PERSMAX: u32 = 60_000;
pub const TCPTV_REXMTMAX: u32 = 64_000;
pub const TCPTV_TWTRUNC: u32 = 8;
pub const TCPTV_FINWAIT2_TIMEOUT: u32 = 60_000;

pub const TCP_MAXRXTSHIFT: u32 = 12;
/// After this many retransmissions the RTT estimate is thrown away (`TCP_RTT_INVALIDATE`).
pub const TCP_RTT_INVALIDATE: u32 = TCP_MAXRXTSHIFT / 4;

/// `t_srtt` is kept scaled by 2^TCP_RTT_SHIFT, `t_rttvar` by 2^TCP_RTTVAR_SHIFT.
pub const TCP_RTT_SHIFT: u32 = 5;
pub const TCP_RTTVAR_SHIFT: u32 = 4;
pub const TCP_DELTA_SHIFT: u32 = 2;

/// `tcp_backoff[]`: the multiplier of the RTO after each retransmission.
pub const TCP_BACKOFF: [u32; (TCP_MAXRXTSHIFT + 1) as usize] =
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 512, 512, 512];
/// `tcp_syn_backoff[]`, used by the syncache's SYN-ACK retransmissions.
pub const TCP_SYN_BACKOFF: [u32; (TCP_MAXRXTSHIFT + 1) as usize] =
    [1, 1, 1, 1, 1, 2, 4, 8, 16, 32, 64, 64, 64];
/// Sum of `tcp_backoff[]`: bounds the total time spent retransmitting.
pub const TCP_TOTBACKOFF: u32 = 2559;

pub fn backoff(shift: u32) -> u32 {
    TCP_BACKOFF[(shift.min(TCP_MAXRXTSHIFT)) as usize]
}

/// `TCPT_RANGESET`: FreeBSD adds `rexmit_slop` before clamping, so every computed RTO carries
/// 200 ms of slack for delayed ACKs by default.
pub fn rangeset(value: u32, slop: u32, min: u32, max: u32) -> u32 {
    value.saturating_add(slop).max(min).min(max)
}

/// The timers a tcpcb carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TimerKind {
    Rexmt = 0,
    Persist = 1,
    Keep = 2,
    TwoMsl = 3,
    Delack = 4,
}

pub const TIMER_KINDS: [TimerKind; 5] = [
    TimerKind::Delack,
    TimerKind::Rexmt,
    TimerKind::Persist,
    TimerKind::Keep,
    TimerKind::TwoMsl,
];

#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimerTable {
    deadline: [Option<Instant>; 5],
}

impl TimerTable {
    /// `tcp_timer_activate`: arm `kind` to fire `ms` milliseconds from `now`; 0 stops it.
    pub fn activate(&mut self, kind: TimerKind, now: Instant, ms: u32) {
        self.deadline[kind as usize] = if ms == 0 {
            None
        } else {
            Some(now + Duration::from_millis(ms as u64))
        };
    }
    pub fn stop(&mut self, kind: TimerKind) {
        self.deadline[kind as usize] = None;
    }
    pub fn active(&self, kind: TimerKind) -> bool {
        self.deadline[kind as usize].is_some()
    }
    pub fn deadline(&self, kind: TimerKind) -> Option<Instant> {
        self.deadline[kind as usize]
    }
    pub fn stop_all(&mut self) {
        self.deadline = [None; 5];
    }
    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadline.iter().flatten().min().copied()
    }
    /// A timer due at `now`, taking it off the table. Delayed ACK is fired first, as FreeBSD's
    /// callouts would at equal times.
    pub fn take_due(&mut self, now: Instant) -> Option<TimerKind> {
        for kind in TIMER_KINDS {
            if let Some(d) = self.deadline[kind as usize] {
                if d <= now {
                    self.deadline[kind as usize] = None;
                    return Some(kind);
                }
            }
        }
        None
    }
}

use crate::netinet::cc::CcSignal;
use crate::netinet::tcp_cc::cc_cong_signal;
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_input::{
    keepidle, keepinit, keepintvl, maxidle, rexmtval, tcp_close, tcp_drop, tcp_respond,
};
use crate::netinet::tcp_output::{tcp_setpersist, TcpCtx};
use crate::netinet::tcp_var::tf;
use crate::socket::socketvar::Socket;
use crate::wire::tcp::TcpFlags;
use crate::Errno;

/// Runs the expiry routine of `kind` (`tcp_timer_delack`, `_rexmt`, `_persist`, `_keep`,
/// `_2msl`). Output it asks for is left to the next `tcp_output` run.
pub fn tcp_timer_fire(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>, kind: TimerKind) {
    let ticks = ctx.ticks();
    let cfg = ctx.cfg;
    match kind {
        TimerKind::Delack => {
            so.tp.t_flags |= tf::ACKNOW;
            ctx.stat.delack += 1;
            so.output_wanted = true;
        }
        TimerKind::Rexmt => {
            let tp = &mut so.tp;
            tp.t_rxtshift += 1;
            if tp.t_rxtshift > TCP_MAXRXTSHIFT {
                tp.t_rxtshift = TCP_MAXRXTSHIFT;
                ctx.stat.timeoutdrop += 1;
                tcp_drop(so, ctx, Some(Errno::ETIMEDOUT));
                return;
            }
            if tp.t_state == TcpState::SynSent {
                // A lost SYN: start with a one-segment window (cc_conn_init reads this).
                tp.snd_cwnd = 1;
            } else if tp.t_rxtshift == 1 {
                tp.snd_cwnd_prev = tp.snd_cwnd;
                tp.snd_ssthresh_prev = tp.snd_ssthresh;
                tp.snd_recover_prev = tp.snd_recover;
                tp.cc_flags.was_recovery = tp.cc_flags.in_recovery;
                tp.cc_flags.was_cong_recovery = tp.cc_flags.in_cong_recovery;
                tp.t_badrxtwin = ticks.wrapping_add(tp.t_srtt >> (TCP_RTT_SHIFT + 1));
                tp.cc_flags.prev_valid = true;
            } else {
                tp.cc_flags.prev_valid = false;
            }
            ctx.stat.rexmttimeo += 1;
            let rexmt = if matches!(tp.t_state, TcpState::SynSent | TcpState::SynReceived) {
                cfg.rexmit_initial.saturating_mul(backoff(tp.t_rxtshift))
            } else {
                rexmtval(tp).saturating_mul(backoff(tp.t_rxtshift))
            };
            tp.t_rxtcur = rangeset(rexmt, cfg.rexmit_slop, tp.t_rttmin, TCPTV_REXMTMAX);
            // Broken middleboxes drop SYNs with options: give up on them after three tries.
            if cfg.rexmit_drop_options && tp.t_state == TcpState::SynSent && tp.t_rxtshift == 3 {
                tp.t_flags &= !(tf::REQ_SCALE | tf::REQ_TSTMP | tf::SACK_PERMIT);
            }
            if tp.t_rxtshift > TCP_RTT_INVALIDATE {
                tp.t_rttvar = tp.t_rttvar.saturating_add(tp.t_srtt >> TCP_DELTA_SHIFT);
                tp.t_srtt = 0;
            }
            tp.snd_nxt = tp.snd_una;
            tp.snd_recover = tp.snd_max;
            tp.t_flags |= tf::ACKNOW;
            tp.t_rtttime = None;
            // The scoreboard is stale after a timeout (RFC 6675 section 5.1).
            tp.snd_holes.clear();
            if tp.t_state.have_established() {
                cc_cong_signal(tp, cfg, ticks, None, CcSignal::Rto);
            }
            so.output_wanted = true;
        }
        TimerKind::Persist => {
            ctx.stat.persisttimeo += 1;
            let idle = ticks.wrapping_sub(so.tp.t_rcvtime);
            if so.tp.t_rxtshift >= TCP_MAXRXTSHIFT
                && idle >= rexmtval(&so.tp).saturating_mul(TCP_TOTBACKOFF)
            {
                ctx.stat.persistdrop += 1;
                tcp_drop(so, ctx, Some(Errno::ETIMEDOUT));
                return;
            }
            if so.tp.t_state > TcpState::CloseWait && idle >= TCPTV_PERSMAX {
                ctx.stat.persistdrop += 1;
                tcp_drop(so, ctx, Some(Errno::ETIMEDOUT));
                return;
            }
            tcp_setpersist(&mut so.tp, cfg, ctx.now);
            so.tp.t_flags |= tf::FORCEDATA;
            so.output_wanted = true;
        }
        TimerKind::Keep => {
            ctx.stat.keeptimeo += 1;
            if so.tp.t_state < TcpState::Established {
                ctx.stat.keepdrops += 1;
                tcp_drop(so, ctx, Some(Errno::ETIMEDOUT));
                return;
            }
            let keepalive = cfg.always_keepalive
                || so.so_options & crate::socket::socketvar::so::KEEPALIVE != 0;
            if keepalive && so.tp.t_state <= TcpState::Closing {
                if ticks.wrapping_sub(so.tp.t_rcvtime)
                    >= keepidle(so, cfg).saturating_add(maxidle(so, cfg))
                {
                    ctx.stat.keepdrops += 1;
                    tcp_drop(so, ctx, Some(Errno::ETIMEDOUT));
                    return;
                }
                // A probe one byte left of the window forces the peer to answer.
                ctx.stat.keepprobe += 1;
                let (ack, seq) = (so.tp.ack_point(), so.tp.snd_una - 1);
                tcp_respond(so, ctx, ack, seq, TcpFlags::ACK);
                let t = keepintvl(so, cfg);
                so.tp.t_timers.activate(TimerKind::Keep, ctx.now, t);
            } else {
                let t = keepidle(so, cfg);
                so.tp.t_timers.activate(TimerKind::Keep, ctx.now, t);
            }
        }
        TimerKind::TwoMsl => {
            if so.tp.t_state == TcpState::TimeWait {
                tcp_close(so, ctx);
                return;
            }
            if cfg.fast_finwait2_recycle
                && so.tp.t_state == TcpState::FinWait2
                && so.so_rcv_cantrcvmore
            {
                ctx.stat.finwait2_drops += 1;
                tcp_close(so, ctx);
                return;
            }
            if ticks.wrapping_sub(so.tp.t_rcvtime) <= maxidle(so, cfg) {
                let t = keepintvl(so, cfg);
                so.tp.t_timers.activate(TimerKind::TwoMsl, ctx.now, t);
            } else {
                tcp_close(so, ctx);
            }
        }
    }
    let _ = keepinit;
}
