//! Segment arrival for an existing connection (FreeBSD `tcp_input.c`: `tcp_do_segment`,
//! `tcp_dooptions`, `tcp_xmit_timer`, `tcp_dropwithreset`) and TIME_WAIT (`tcp_twcheck`).
//!
//! The demultiplexing half of `tcp_input` (finding the socket, listeners, the syncache) lives
//! in the stack; everything that touches one tcpcb is here, in FreeBSD's order.
//!
//! deviation: no header prediction fast path. It is an optimisation whose outcome equals the
//! slow path's; leaving it out keeps one path to audit.
//! deviation: urgent data (URG/`th_urp`) is accepted as ordinary in-line data; the core has no
//! out-of-band receive path (SO_OOBINLINE behaviour).

use core::net::Ipv4Addr;

use crate::netinet::cc::{CcAckType, CcSignal};
use crate::netinet::tcp_cc::{cc_ack_received, cc_cong_signal, cc_conn_init, cc_post_recovery};
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_output::{tcp_setpersist, TcpCtx};
use crate::netinet::tcp_seq::{seq_geq, seq_gt, seq_leq, seq_lt, tstmp_gt, tstmp_lt, Seq};
use crate::netinet::tcp_subr::{drop_errno, Reply};
use crate::netinet::tcp_timer::{
    rangeset, TimerKind, TCPTV_REXMTMAX, TCP_DELTA_SHIFT, TCP_RTTVAR_SHIFT, TCP_RTT_INVALIDATE,
    TCP_RTT_SHIFT,
};
use crate::netinet::tcp_var::{tf, tf2, tof, TcpCb, TcpOpt, TCP_MAXWIN, TCP_MAX_WINSHIFT};
use crate::socket::socketvar::{ss, Socket};
use crate::wire::ipv4::Ecn;
use crate::wire::tcp::{self as wtcp, TcpFlags, TcpOption};
use crate::Errno;

/// Duplicate ACKs that trigger fast retransmit (`tcprexmtthresh`).
pub const TCPREXMTTHRESH: u32 = 3;
/// RFC 7323 PAWS: timestamps older than 24 days are invalid.
pub const TCP_PAWS_IDLE: u32 = 24 * 24 * 60 * 60 * 1000;

/// A parsed inbound segment, addressed to us.
#[derive(Clone, Debug)]
pub struct Seg<'p> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub th_seq: Seq,
    pub th_ack: Seq,
    pub th_flags: TcpFlags,
    pub th_win: u16,
    pub options: &'p [u8],
    pub data: &'p [u8],
    pub ecn: Ecn,
}

impl Seg<'_> {
    /// Segment length in sequence space, counting SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.data.len() as u32
            + self.th_flags.contains(TcpFlags::SYN) as u32
            + self.th_flags.contains(TcpFlags::FIN) as u32
    }
}

/// How `tcp_do_segment` wants the segment finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Answer with a RST (`goto dropwithreset`).
    DropWithReset,
}

/// `tcp_dooptions`: the options FreeBSD honours. Malformed options end the walk; options of
/// the wrong length are skipped. MSS, window scale and SACK-permitted count only on a SYN.
pub fn tcp_dooptions(raw: &[u8], is_syn: bool) -> TcpOpt {
    let mut to = TcpOpt::default();
    for opt in wtcp::options(raw) {
        let Ok(opt) = opt else { break };
        match opt {
            TcpOption::Eol => break,
            TcpOption::Nop => {}
            TcpOption::Mss(m) if is_syn => {
                to.to_flags |= tof::MSS;
                to.to_mss = m;
            }
            TcpOption::WindowScale(s) if is_syn => {
                to.to_flags |= tof::SCALE;
                to.to_wscale = s.min(TCP_MAX_WINSHIFT);
            }
            TcpOption::SackPermitted if is_syn => to.to_flags |= tof::SACKPERM,
            TcpOption::Timestamp { tsval, tsecr } => {
                to.to_flags |= tof::TS;
                to.to_tsval = tsval;
                to.to_tsecr = tsecr;
            }
            TcpOption::Sack(blocks) if !is_syn => {
                let mut n = 0;
                for b in blocks.iter() {
                    if n < to.to_sacks.len() {
                        to.to_sacks[n] = b;
                        n += 1;
                    }
                }
                if n > 0 {
                    to.to_flags |= tof::SACK;
                    to.to_nsacks = n as u8;
                }
            }
            _ => {}
        }
    }
    to
}

/// `tcp_xmit_timer`: fold an RTT sample (ms) into the fixed-point estimator and recompute the
/// RTO.
pub fn tcp_xmit_timer(
    tp: &mut TcpCb,
    rtt: u32,
    slop: u32,
    stat: &mut crate::netinet::tcp_stat::TcpStat,
) {
    stat.rttupdated += 1;
    tp.t_rttupdated = tp.t_rttupdated.wrapping_add(1);
    if tp.t_srtt != 0 && tp.t_rxtshift <= TCP_RTT_INVALIDATE {
        let mut delta: i64 = ((rtt as i64 - 1) << TCP_DELTA_SHIFT)
            - ((tp.t_srtt >> (TCP_RTT_SHIFT - TCP_DELTA_SHIFT)) as i64);
        let srtt = tp.t_srtt as i64 + delta;
        tp.t_srtt = if srtt <= 0 {
            1
        } else {
            srtt.min(u32::MAX as i64) as u32
        };
        if delta < 0 {
            delta = -delta;
        }
        delta -= (tp.t_rttvar >> (TCP_RTTVAR_SHIFT - TCP_DELTA_SHIFT)) as i64;
        let rttvar = tp.t_rttvar as i64 + delta;
        tp.t_rttvar = if rttvar <= 0 {
            1
        } else {
            rttvar.min(u32::MAX as i64) as u32
        };
    } else {
        tp.t_srtt = rtt.saturating_mul(1 << TCP_RTT_SHIFT);
        tp.t_rttvar = rtt.saturating_mul(1 << (TCP_RTTVAR_SHIFT - 1));
    }
    tp.t_rtttime = None;
    tp.t_rxtshift = 0;
    tp.t_rxtcur = rangeset(
        rexmtval(tp),
        slop,
        tp.t_rttmin.max(rtt.saturating_add(2)),
        TCPTV_REXMTMAX,
    );
    tp.t_softerror = None;
}

/// `TCP_REXMTVAL`: srtt + 4 * rttvar, in ms, floored at `t_rttmin`.
pub fn rexmtval(tp: &TcpCb) -> u32 {
    let v = (tp.t_srtt >> (TCP_RTT_SHIFT - TCP_DELTA_SHIFT)).saturating_add(tp.t_rttvar)
        >> TCP_DELTA_SHIFT;
    v.max(tp.t_rttmin)
}

/// `DELAY_ACK`.
fn delay_ack(tp: &TcpCb, tlen: u32, cfg_delack: bool) -> bool {
    !tp.t_timers.active(TimerKind::Delack)
        && !tp.has_flag(tf::RXWIN0SENT)
        && tlen <= tp.t_maxseg
        && (cfg_delack || tp.has_flag(tf::NEEDSYN))
}

/// The RST `tcp_dropwithreset` sends in answer to `seg` (none for a RST, or to a broadcast).
pub fn tcp_dropwithreset_reply(seg: &Seg<'_>) -> Option<Reply> {
    if seg.th_flags.contains(TcpFlags::RST)
        || seg.dst.is_broadcast()
        || seg.dst.is_multicast()
        || seg.src.is_unspecified()
    {
        return None;
    }
    let (seq, ack, flags) = if seg.th_flags.contains(TcpFlags::ACK) {
        (seg.th_ack, Seq(0), TcpFlags::RST)
    } else {
        (
            Seq(0),
            seg.th_seq + seg.seq_len(),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    Some(Reply {
        src: seg.dst,
        dst: seg.src,
        sport: seg.dport,
        dport: seg.sport,
        seq,
        ack,
        flags,
        win: 0,
        ts: None,
        syn_opts: None,
        ecn: 0,
    })
}

/// Queues a reply; when the queue is full the reply is counted and lost, as an overloaded
/// interface queue would lose it.
pub fn queue_reply(ctx: &mut TcpCtx<'_>, r: Reply) {
    if ctx.replies.push_back(r).is_err() {
        ctx.stat.sndreplydrop += 1;
    }
}

/// `tcp_respond` for a connection: an ACK-like control segment with our timestamp.
pub fn tcp_respond(so: &Socket<'_>, ctx: &mut TcpCtx<'_>, ack: Seq, seq: Seq, flags: TcpFlags) {
    let tp = &so.tp;
    let win = if flags.contains(TcpFlags::RST) {
        0
    } else {
        // The right edge: our buffer's, but never past the FT layer's bound for the group.
        let mut right = tp.rcv_nxt + so.so_rcv.space() as u32;
        if let Some(e) = tp.ft.edge_limit {
            if seq_lt(e, right) {
                right = e;
            }
        }
        let w = if seq_gt(right, ack) {
            (right - ack) >> tp.rcv_scale
        } else {
            0
        };
        w.min(65535) as u16
    };
    let ts = if tp.has_flag(tf::RCVD_TSTMP) && !flags.contains(TcpFlags::RST) {
        Some((ctx.ticks().wrapping_add(tp.ts_offset), tp.ts_recent))
    } else {
        None
    };
    queue_reply(
        ctx,
        Reply {
            src: so.inp.laddr,
            dst: so.inp.faddr,
            sport: so.inp.lport,
            dport: so.inp.fport,
            seq,
            ack,
            flags,
            win,
            ts,
            syn_opts: None,
            ecn: 0,
        },
    );
}

/// `tcp_send_challenge_ack` (RFC 5961 section 7 rate limit per connection).
pub fn tcp_send_challenge_ack(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>) {
    let ticks = ctx.ticks();
    let tp = &mut so.tp;
    if ctx.cfg.ack_war_timewindow > 0 && ctx.cfg.ack_war_cnt > 0 {
        if tstmp_geq_ticks(ticks, tp.t_challenge_ack_end) {
            tp.t_challenge_ack_end = ticks.wrapping_add(ctx.cfg.ack_war_timewindow);
            tp.t_challenge_ack_cnt = 0;
        }
        if tp.t_challenge_ack_cnt >= ctx.cfg.ack_war_cnt {
            return;
        }
        tp.t_challenge_ack_cnt += 1;
    }
    let (ack, seq) = (tp.ack_point(), tp.snd_nxt);
    tcp_respond(so, ctx, ack, seq, TcpFlags::ACK);
    so.tp.last_ack_sent = ack;
}

fn tstmp_geq_ticks(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// `tcp_close`: the connection is gone. The stack frees the slot once no handle refers to it.
pub fn tcp_close(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>) {
    so.tp.t_timers.stop_all();
    if so.tp.t_state != TcpState::Closed {
        ctx.stat.closed += 1;
    }
    so.tp.t_state = TcpState::Closed;
    so.output_wanted = false;
    so.soisdisconnected();
}

/// `tcp_drop`: abort with `errno`, telling the peer with a RST if it knows of us.
pub fn tcp_drop(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>, errno: Option<Errno>) {
    if so.tp.t_state.have_rcvd_syn() {
        let (ack, seq) = (so.tp.ack_point(), so.tp.snd_max);
        let tp = &so.tp;
        let ts = if tp.has_flag(tf::RCVD_TSTMP) {
            Some((ctx.ticks().wrapping_add(tp.ts_offset), tp.ts_recent))
        } else {
            None
        };
        queue_reply(
            ctx,
            Reply {
                src: so.inp.laddr,
                dst: so.inp.faddr,
                sport: so.inp.lport,
                dport: so.inp.fport,
                seq,
                ack,
                flags: TcpFlags::RST | TcpFlags::ACK,
                win: 0,
                ts,
                syn_opts: None,
                ecn: 0,
            },
        );
        ctx.stat.drops += 1;
    } else {
        ctx.stat.conndrops += 1;
    }
    if let Some(e) = errno {
        so.so_error = Some(drop_errno(&so.tp, e));
    }
    tcp_close(so, ctx);
}

/// `tcp_twstart`: enter TIME_WAIT for 2*MSL.
pub fn tcp_twstart(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>) {
    so.tp.t_state = TcpState::TimeWait;
    so.tp.t_timers.stop_all();
    so.tp
        .t_timers
        .activate(TimerKind::TwoMsl, ctx.now, ctx.cfg.msl.saturating_mul(2));
    so.soisdisconnected();
    if so.tp.has_flag(tf::ACKNOW) {
        so.output_wanted = true;
    }
}

/// Applies the RFC 3168 receiver and sender rules for one segment (`tcp_ecn_input_segment`).
fn ecn_input_segment(
    so: &mut Socket<'_>,
    ctx: &mut TcpCtx<'_>,
    flags: TcpFlags,
    ecn: Ecn,
    th_ack: Seq,
) {
    let tp = &mut so.tp;
    if tp.t_flags2 & tf2::ECN_PERMIT == 0 {
        return;
    }
    match ecn {
        Ecn::Ce => {
            ctx.stat.ecn_ce += 1;
            tp.t_flags2 |= tf2::ECN_SND_ECE;
            tp.t_flags |= tf::ACKNOW;
        }
        Ecn::Ect0 => ctx.stat.ecn_ect0 += 1,
        Ecn::Ect1 => ctx.stat.ecn_ect1 += 1,
        Ecn::NotEct => {}
    }
    if flags.contains(TcpFlags::CWR) {
        tp.t_flags2 &= !tf2::ECN_SND_ECE;
    }
    if flags.contains(TcpFlags::ECE) && !flags.contains(TcpFlags::SYN) && !tp.in_congrecovery() {
        ctx.stat.ecn_rcwnd += 1;
        cc_cong_signal(tp, ctx.cfg, ctx.now.ticks(), Some(th_ack), CcSignal::Ecn);
        tp.t_flags2 |= tf2::ECN_SND_CWR;
    }
}

/// `tcp_do_segment`: RFC 793's SEGMENT ARRIVES for every state but LISTEN, as FreeBSD does it.
pub fn tcp_do_segment(so: &mut Socket<'_>, seg: &Seg<'_>, ctx: &mut TcpCtx<'_>) -> Verdict {
    let ticks = ctx.ticks();
    let cfg = ctx.cfg;
    let mut thflags = seg.th_flags;
    let mut th_seq = seg.th_seq;
    let th_ack = seg.th_ack;
    let mut data = seg.data;
    let mut to = tcp_dooptions(seg.options, thflags.contains(TcpFlags::SYN));
    let needoutput = false;
    // A window override an earlier segment scheduled (fast retransmit, limited transmit) stays
    // pending until tcp_output runs, even when several segments arrive before it does.

    // Receive window: buffer space, but never less than what we already advertised.
    {
        let win = so.so_rcv.space() as u32;
        let adv = if seq_gt(so.tp.rcv_adv, so.tp.rcv_nxt) {
            so.tp.rcv_adv - so.tp.rcv_nxt
        } else {
            0
        };
        so.tp.rcv_wnd = win.max(adv);
    }

    if so.tp.t_state.have_established() || so.tp.t_state == TcpState::SynReceived {
        ecn_input_segment(so, ctx, thflags, seg.ecn, th_ack);
    }

    so.tp.t_rcvtime = ticks;
    if so.tp.t_state.have_established() {
        let idle = keepidle(so, cfg);
        so.tp.t_timers.activate(TimerKind::Keep, ctx.now, idle);
    }

    let tiwin: u32 = if thflags.contains(TcpFlags::SYN) {
        seg.th_win as u32
    } else {
        (seg.th_win as u32) << so.tp.snd_scale
    };

    // Timestamps were negotiated but this segment has none (RFC 7323 section 3.2).
    if so.tp.t_state > TcpState::SynSent
        && so.tp.has_flag(tf::RCVD_TSTMP)
        && to.to_flags & tof::TS == 0
        && !cfg.tolerate_missing_ts
    {
        if thflags.contains(TcpFlags::RST) {
            return Verdict::Done;
        }
        return dropafterack(so, ctx, thflags, th_ack);
    }

    // Our TSvals carry ts_offset; take it off the echo, and ignore echoes from the future.
    if to.to_flags & tof::TS != 0 && to.to_tsecr != 0 {
        // A backup adopts the clock whose values the peer echoes, never moving it back.
        if so.tp.ft.follow_ts {
            let want = to.to_tsecr.wrapping_sub(ticks);
            if (want.wrapping_sub(so.tp.ts_offset) as i32) > 0 {
                so.tp.ts_offset = want;
            }
        }
        to.to_tsecr = to.to_tsecr.wrapping_sub(so.tp.ts_offset);
        if tstmp_gt(to.to_tsecr, ticks) {
            to.to_tsecr = 0;
        }
    }

    // An ACK that is not for our SYN is refused before the segment's options may change the
    // connection, so the SYN is retransmitted exactly as before.
    if so.tp.t_state == TcpState::SynSent
        && thflags.contains(TcpFlags::ACK)
        && (seq_leq(th_ack, so.tp.iss) || seq_gt(th_ack, so.tp.snd_max))
    {
        return Verdict::DropWithReset;
    }

    // Options settle on the SYN-ACK of an active open.
    if so.tp.t_state == TcpState::SynSent && thflags.contains(TcpFlags::SYN) {
        // A SYN crossing ours that asks for ECN (tcp_ecn_input_parallel_syn).
        if !thflags.contains(TcpFlags::ACK)
            && cfg.ecn_enable != 0
            && thflags.contains(TcpFlags::ECE | TcpFlags::CWR)
        {
            so.tp.t_flags2 |= tf2::ECN_PERMIT;
            ctx.stat.ecn_shs += 1;
        }
        let tp = &mut so.tp;
        if to.to_flags & tof::SCALE != 0 && tp.has_flag(tf::REQ_SCALE) && !tp.has_flag(tf::NOOPT) {
            tp.t_flags |= tf::RCVD_SCALE;
            tp.snd_scale = to.to_wscale;
        } else {
            tp.t_flags &= !tf::REQ_SCALE;
        }
        tp.snd_wnd = seg.th_win as u32;
        if to.to_flags & tof::TS != 0 && tp.has_flag(tf::REQ_TSTMP) && !tp.has_flag(tf::NOOPT) {
            tp.t_flags |= tf::RCVD_TSTMP;
            tp.ts_recent = to.to_tsval;
            tp.ts_recent_age = ticks;
        } else {
            tp.t_flags &= !tf::REQ_TSTMP;
        }
        if to.to_flags & tof::MSS != 0 {
            crate::netinet::tcp_subr::tcp_mss(
                so,
                cfg,
                ctx.mtu,
                ctx.encap_overhead,
                to.to_mss as u32,
            );
        }
        let tp = &mut so.tp;
        if tp.has_flag(tf::SACK_PERMIT)
            && (to.to_flags & tof::SACKPERM == 0 || tp.has_flag(tf::NOOPT))
        {
            tp.t_flags &= !tf::SACK_PERMIT;
        }
    }

    match so.tp.t_state {
        // deviation: a replica's ACK may run ahead of its own output (see `ft_ack_ahead`);
        // it is not an ACK for something never sent.
        TcpState::SynReceived
            if thflags.contains(TcpFlags::ACK)
                && !thflags.contains(TcpFlags::RST)
                && (seq_leq(th_ack, so.tp.snd_una)
                    || (seq_gt(th_ack, so.tp.snd_max) && !so.tp.ft_ack_may_lead())) =>
        {
            return Verdict::DropWithReset;
        }
        TcpState::SynSent => {
            let tp = &mut so.tp;
            if thflags.contains(TcpFlags::ACK)
                && (seq_leq(th_ack, tp.iss) || seq_gt(th_ack, tp.snd_max))
            {
                return Verdict::DropWithReset;
            }
            if thflags.contains(TcpFlags::RST | TcpFlags::ACK) {
                tcp_drop(so, ctx, Some(Errno::ECONNREFUSED));
                return Verdict::Done;
            }
            if thflags.contains(TcpFlags::RST) || !thflags.contains(TcpFlags::SYN) {
                return Verdict::Done;
            }
            tp.irs = th_seq;
            tp.rcv_nxt = th_seq + 1;
            tp.rcv_adv = tp.rcv_nxt;
            if thflags.contains(TcpFlags::ACK) {
                // ECN-setup SYN-ACK (RFC 3168 6.1.1): ECE without CWR.
                if cfg.ecn_enable == 1
                    && thflags.contains(TcpFlags::ECE)
                    && !thflags.contains(TcpFlags::CWR)
                {
                    tp.t_flags2 |= tf2::ECN_PERMIT;
                    ctx.stat.ecn_shs += 1;
                }
                ctx.stat.connects += 1;
                if tp.has_flag(tf::RCVD_SCALE) && tp.has_flag(tf::REQ_SCALE) {
                    tp.rcv_scale = tp.request_r_scale;
                }
                tp.rcv_adv += tp.rcv_wnd.min(65535u32 << tp.rcv_scale);
                tp.snd_una += 1;
                if delay_ack(tp, data.len() as u32, cfg.delayed_ack) && !data.is_empty() {
                    tp.t_timers
                        .activate(TimerKind::Delack, ctx.now, cfg.delacktime);
                } else {
                    tp.t_flags |= tf::ACKNOW;
                }
                tp.t_starttime = ticks;
                if tp.has_flag(tf::NEEDFIN) {
                    tp.t_state = TcpState::FinWait1;
                    tp.t_flags &= !tf::NEEDFIN;
                    thflags &= !TcpFlags::SYN;
                } else {
                    tp.t_state = TcpState::Established;
                    cc_conn_init(tp, cfg, ticks);
                    let idle = keepidle(so, cfg);
                    so.tp.t_timers.activate(TimerKind::Keep, ctx.now, idle);
                }
                so.soisconnected();
            } else {
                // Simultaneous open: SYN-SENT -> SYN-RECEIVED, answer with SYN-ACK.
                tp.t_flags |= tf::ACKNOW | tf::NEEDSYN;
                tp.t_timers.stop(TimerKind::Rexmt);
                tp.t_state = TcpState::SynReceived;
            }
            let tp = &mut so.tp;
            th_seq += 1;
            if data.len() as u32 > tp.rcv_wnd {
                let keep = tp.rcv_wnd as usize;
                ctx.stat.rcvpackafterwin += 1;
                ctx.stat.rcvbyteafterwin += (data.len() - keep) as u64;
                data = &data[..keep];
                thflags &= !TcpFlags::FIN;
            }
            tp.snd_wl1 = th_seq - 1;
            tp.rcv_up = th_seq;
            if thflags.contains(TcpFlags::ACK) {
                return process_ack_and_rest(
                    so, ctx, seg, thflags, th_seq, data, &to, tiwin, needoutput, true,
                );
            }
            return step6(so, ctx, thflags, th_seq, th_ack, data, tiwin, needoutput);
        }
        _ => {}
    }

    // RST processing (RFC 5961 section 3).
    if thflags.contains(TcpFlags::RST) {
        let tp = &so.tp;
        let in_window = (seq_geq(th_seq, tp.last_ack_sent)
            && seq_lt(th_seq, tp.last_ack_sent + tp.rcv_wnd))
            || (tp.rcv_wnd == 0 && tp.last_ack_sent == th_seq);
        if in_window {
            if cfg.insecure_rst || tp.last_ack_sent == th_seq {
                ctx.stat.drops += 1;
                match tp.t_state {
                    TcpState::SynReceived => {
                        so.so_error = Some(Errno::ECONNREFUSED);
                        tcp_close(so, ctx);
                    }
                    TcpState::Established
                    | TcpState::FinWait1
                    | TcpState::FinWait2
                    | TcpState::CloseWait
                    | TcpState::Closing
                    | TcpState::LastAck => {
                        so.so_error = Some(Errno::ECONNRESET);
                        tcp_close(so, ctx);
                    }
                    _ => {}
                }
            } else {
                ctx.stat.badrst += 1;
                ctx.stat.rstchallenge += 1;
                tcp_send_challenge_ack(so, ctx);
            }
        } else {
            ctx.stat.badrst += 1;
        }
        return Verdict::Done;
    }

    // RFC 5961 section 4: a SYN on a synchronized connection gets a challenge ACK.
    if thflags.contains(TcpFlags::SYN)
        && so.tp.t_state != TcpState::SynSent
        && so.tp.t_state != TcpState::SynReceived
    {
        ctx.stat.badsyn += 1;
        let tp = &so.tp;
        if cfg.insecure_syn
            && seq_geq(th_seq, tp.last_ack_sent)
            && seq_lt(th_seq, tp.last_ack_sent + tp.rcv_wnd)
        {
            tcp_drop(so, ctx, Some(Errno::ECONNRESET));
        } else {
            ctx.stat.synchallenge += 1;
            tcp_send_challenge_ack(so, ctx);
        }
        return Verdict::Done;
    }

    // PAWS (RFC 7323 section 5).
    if to.to_flags & tof::TS != 0 && so.tp.ts_recent != 0 && tstmp_lt(to.to_tsval, so.tp.ts_recent)
    {
        if ticks.wrapping_sub(so.tp.ts_recent_age) > TCP_PAWS_IDLE {
            so.tp.ts_recent = 0;
        } else {
            ctx.stat.rcvduppack += 1;
            ctx.stat.rcvdupbyte += data.len() as u64;
            ctx.stat.pawsdrop += 1;
            if !data.is_empty() {
                return dropafterack(so, ctx, thflags, th_ack);
            }
            return dropafterack(so, ctx, thflags, th_ack);
        }
    }

    // LAND defence: in SYN_RECEIVED the segment must not start before the peer's ISN.
    if so.tp.t_state == TcpState::SynReceived && seq_lt(th_seq, so.tp.irs) {
        return Verdict::DropWithReset;
    }

    // Trim what lies before rcv_nxt.
    let mut todrop = so.tp.rcv_nxt.diff(th_seq);
    if todrop > 0 {
        if thflags.contains(TcpFlags::SYN) {
            thflags &= !TcpFlags::SYN;
            th_seq += 1;
            todrop -= 1;
        }
        let tlen = data.len() as i32;
        if todrop > tlen || (todrop == tlen && !thflags.contains(TcpFlags::FIN)) {
            // A FIN here is a duplicate: drop it, and ACK to resynchronise.
            thflags &= !TcpFlags::FIN;
            so.tp.t_flags |= tf::ACKNOW;
            todrop = tlen;
            ctx.stat.rcvduppack += 1;
            ctx.stat.rcvdupbyte += todrop as u64;
            if tlen > 0 || thflags.contains(TcpFlags::FIN) {
                so.tp.t_rcvdupsegs = so.tp.t_rcvdupsegs.wrapping_add(1);
            }
        } else {
            so.tp.t_rcvdupsegs = so.tp.t_rcvdupsegs.wrapping_add(1);
            ctx.stat.rcvpartduppack += 1;
            ctx.stat.rcvpartdupbyte += todrop as u64;
        }
        let todrop = todrop.max(0) as usize;
        data = &data[todrop.min(data.len())..];
        th_seq += todrop as u32;
    }

    // Data after the user closed: nobody will read it, so reset.
    if !so.has_fd() && so.tp.t_state > TcpState::CloseWait && !data.is_empty() {
        ctx.stat.rcvafterclose += 1;
        tcp_close(so, ctx);
        return Verdict::DropWithReset;
    }

    // Trim what lies beyond the window.
    let todrop = (th_seq + data.len() as u32).diff(so.tp.rcv_nxt + so.tp.rcv_wnd);
    if todrop > 0 {
        ctx.stat.rcvpackafterwin += 1;
        let tlen = data.len() as i32;
        if todrop >= tlen {
            ctx.stat.rcvbyteafterwin += tlen as u64;
            // A closed window still takes a probe at its edge (and is ACKed).
            if so.tp.rcv_wnd == 0 && th_seq == so.tp.rcv_nxt {
                so.tp.t_flags |= tf::ACKNOW;
                ctx.stat.rcvwinprobe += 1;
            } else {
                return dropafterack(so, ctx, thflags, th_ack);
            }
        } else {
            ctx.stat.rcvbyteafterwin += todrop as u64;
        }
        let keep = (tlen - todrop).max(0) as usize;
        data = &data[..keep.min(data.len())];
        thflags &= !(TcpFlags::PSH | TcpFlags::FIN);
    }

    // Remember the peer's timestamp when this segment covers the last ACK we sent.
    if to.to_flags & tof::TS != 0
        && seq_leq(th_seq, so.tp.last_ack_sent)
        && seq_leq(
            so.tp.last_ack_sent,
            th_seq + data.len() as u32 + thflags.intersects(TcpFlags::SYN | TcpFlags::FIN) as u32,
        )
    {
        so.tp.ts_recent_age = ticks;
        so.tp.ts_recent = to.to_tsval;
    }

    if !thflags.contains(TcpFlags::ACK) {
        if so.tp.t_state == TcpState::SynReceived || so.tp.has_flag(tf::NEEDSYN) {
            return step6(so, ctx, thflags, th_seq, th_ack, data, tiwin, needoutput);
        } else if so.tp.has_flag(tf::ACKNOW) {
            return dropafterack(so, ctx, thflags, th_ack);
        }
        return Verdict::Done;
    }

    // ACK processing.
    if !ack_is_acceptable(so, ctx, th_ack) {
        return Verdict::Done;
    }
    if so.tp.t_state == TcpState::SynReceived {
        ctx.stat.connects += 1;
        let tp = &mut so.tp;
        if tp.has_flag(tf::RCVD_SCALE) && tp.has_flag(tf::REQ_SCALE) {
            tp.rcv_scale = tp.request_r_scale;
        }
        tp.snd_wnd = tiwin;
        tp.t_starttime = ticks;
        if tp.has_flag(tf::NEEDFIN) {
            tp.t_state = TcpState::FinWait1;
            tp.t_flags &= !tf::NEEDFIN;
        } else {
            tp.t_state = TcpState::Established;
            cc_conn_init(tp, cfg, ticks);
            let idle = keepidle(so, cfg);
            so.tp.t_timers.activate(TimerKind::Keep, ctx.now, idle);
        }
        so.soisconnected();
        so.tp.snd_wl1 = th_seq - 1;
        // Data that arrived before the handshake completed becomes readable now.
        tcp_reass_present(so, ctx);
    }
    process_ack_and_rest(
        so, ctx, seg, thflags, th_seq, data, &to, tiwin, needoutput, false,
    )
}

/// SEG.ACK validation (RFC 5961 section 5.2, FreeBSD's check guarded by
/// `net.inet.tcp.insecure_ack`): an ACK below `snd_una - max_sndwnd` is too old to come from
/// the peer, and while `snd_una` is still within one maximal window of the ISS, an ACK below
/// `ISS + 1` acknowledges bytes never sent (a "ghost" ACK); the larger of the two bounds
/// applies. Such a segment draws a rate-limited challenge ACK and is dropped whole, data
/// included. The upper bound (`snd_max`) is `rcvacktoomuch` in `process_ack_and_rest`.
/// Returns false when the segment was dropped.
fn ack_is_acceptable(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>, th_ack: Seq) -> bool {
    let tp = &mut so.tp;
    if seq_geq(tp.snd_una, tp.iss + (TCP_MAXWIN << tp.snd_scale)) {
        tp.t_flags2 |= tf2::NO_ISS_CHECK;
    }
    if ctx.cfg.insecure_ack {
        return true;
    }
    let too_old = tp.snd_una - tp.max_sndwnd;
    let ghost_min = tp.iss + 1;
    let (seq_min, ghost) = if tp.t_flags2 & tf2::NO_ISS_CHECK == 0 && seq_gt(ghost_min, too_old) {
        (ghost_min, true)
    } else {
        (too_old, false)
    };
    if !seq_lt(th_ack, seq_min) {
        return true;
    }
    if ghost {
        ctx.stat.rcvghostack += 1;
    } else {
        ctx.stat.rcvacktooold += 1;
    }
    tcp_send_challenge_ack(so, ctx);
    false
}

#[allow(clippy::too_many_arguments)]
fn process_ack_and_rest(
    so: &mut Socket<'_>,
    ctx: &mut TcpCtx<'_>,
    seg: &Seg<'_>,
    thflags: TcpFlags,
    th_seq: Seq,
    data: &[u8],
    to: &TcpOpt,
    tiwin: u32,
    mut needoutput: bool,
    from_syn_sent: bool,
) -> Verdict {
    let ticks = ctx.ticks();
    let cfg = ctx.cfg;
    // deviation: a replica whose group sent bytes it did not (a muted backup, or one that
    // took over) cannot have "too much" acknowledged: what its service already produced
    // counts as sent, and the excess waits in ack_ahead.
    let lead = so.tp.ft_ack_may_lead();
    if !from_syn_sent && lead && seq_gt(seg.th_ack, so.tp.snd_max) {
        ft_ack_ahead(so, seg.th_ack);
    }
    let th_ack = if lead && seq_gt(seg.th_ack, so.tp.snd_max) {
        so.tp.snd_max
    } else {
        seg.th_ack
    };
    let tlen = data.len() as u32;
    let maxseg = so.tp.maxseg();

    if !from_syn_sent {
        if seq_gt(th_ack, so.tp.snd_max) {
            ctx.stat.rcvacktoomuch += 1;
            return dropafterack(so, ctx, thflags, th_ack);
        }
        let mut sack_changed = false;
        if so.tp.has_flag(tf::SACK_PERMIT)
            && (to.to_flags & tof::SACK != 0 || !so.tp.snd_holes.is_empty())
        {
            let n = to.to_nsacks as usize;
            if n > 0 {
                ctx.stat.sack_rcv_blocks += 1;
            }
            let snd_max = so.tp.snd_max;
            sack_changed = so.tp.snd_holes.do_ack(th_ack, snd_max, &to.to_sacks[..n]);
        }
        // tcp_is_sack_recovery: SACK drives recovery only when the peer actually SACKs;
        // plain duplicate ACKs on a SACK connection take the NewReno path.
        let sack_recovery = so.tp.has_flag(tf::SACK_PERMIT)
            && (to.to_flags & tof::SACK != 0 || !so.tp.snd_holes.is_empty());

        if seq_leq(th_ack, so.tp.snd_una) {
            if tlen == 0 && (tiwin == so.tp.snd_wnd || so.tp.has_flag(tf::SACK_PERMIT)) {
                // The first FIN of a simultaneous close is not a duplicate.
                if thflags.contains(TcpFlags::FIN) && !so.tp.t_state.have_rcvd_fin() {
                    so.tp.t_dupacks = 0;
                } else {
                    ctx.stat.rcvdupack += 1;
                    let tp = &mut so.tp;
                    if !tp.t_timers.active(TimerKind::Rexmt) || th_ack != tp.snd_una {
                        tp.t_dupacks = 0;
                    } else {
                        tp.t_dupacks += 1;
                        if tp.t_dupacks > TCPREXMTTHRESH || tp.in_fastrecovery() {
                            cc_ack_received(tp, cfg, ticks, th_ack, 0, 1, CcAckType::DupAck);
                            if sack_recovery && tp.in_fastrecovery() {
                                let awnd = crate::netinet::tcp_output::pipe_bytes(tp);
                                if awnd < tp.snd_ssthresh {
                                    tp.snd_cwnd = (tp.snd_cwnd + maxseg).min(tp.snd_ssthresh);
                                }
                            } else {
                                tp.snd_cwnd = tp.snd_cwnd.saturating_add(maxseg);
                            }
                            so.output_wanted = true;
                            return Verdict::Done;
                        } else if tp.t_dupacks == TCPREXMTTHRESH {
                            let entered = enter_recovery(so, ctx, th_ack, sack_recovery);
                            if entered {
                                return Verdict::Done;
                            }
                        } else {
                            // RFC 3042 limited transmit: each of the first two duplicate ACKs
                            // lets one new segment out.
                            cc_ack_received(tp, cfg, ticks, th_ack, 0, 1, CcAckType::DupAck);
                            if tp.t_dupacks == 1 {
                                tp.snd_limited = 0;
                            }
                            let avail = so.so_snd.len() as i64 - (tp.snd_nxt - tp.snd_una) as i64;
                            if avail > 0 || tp.has_flag(tf::ACKNOW) {
                                tp.t_out_override = Some(crate::netinet::tcp_var::OutOverride {
                                    cwnd: (tp.snd_nxt - tp.snd_una)
                                        + tp.t_dupacks.saturating_sub(tp.snd_limited) * maxseg,
                                    restore_cwnd: tp.snd_cwnd,
                                    restore_nxt: None,
                                    limited_from: Some(tp.snd_max),
                                });
                                so.output_wanted = true;
                            }
                            return Verdict::Done;
                        }
                    }
                }
            }
            return step6(so, ctx, thflags, th_seq, th_ack, data, tiwin, needoutput);
        }

        so.tp.t_dupacks = 0;
        if so.tp.has_flag(tf::SACK_PERMIT) && to.to_flags & tof::SACK != 0 && sack_changed {
            so.tp.t_dupacks += 1;
            if !so.tp.in_fastrecovery()
                && so.tp.snd_holes.sacked_bytes() > (TCPREXMTTHRESH - 1) * maxseg
            {
                so.tp.t_dupacks = TCPREXMTTHRESH;
                enter_recovery(so, ctx, th_ack, sack_recovery);
            }
        }

        // Partial or full ACK during recovery.
        let tp = &mut so.tp;
        if tp.in_fastrecovery() {
            if seq_lt(th_ack, tp.snd_recover) {
                if sack_recovery {
                    // tcp_sack_partialack: keep cwnd to what is in flight plus two segments.
                    tp.t_timers.stop(TimerKind::Rexmt);
                    tp.t_rtttime = None;
                    let num = 2 * maxseg;
                    let flight = tp.snd_max - th_ack;
                    tp.snd_cwnd = (flight.saturating_sub(tp.snd_holes.sacked_bytes()) + num)
                        .min(tp.snd_ssthresh.max(num));
                    tp.t_flags |= tf::ACKNOW;
                    needoutput = true;
                } else {
                    // tcp_newreno_partial_ack: retransmit the next hole now.
                    tp.t_timers.stop(TimerKind::Rexmt);
                    tp.t_rtttime = None;
                    // Output runs after snd_una moves, so one segment from th_ack is `maxseg`.
                    let ocwnd = tp.snd_cwnd;
                    let acked = th_ack - tp.snd_una;
                    let onxt = tp.snd_nxt;
                    tp.snd_nxt = th_ack;
                    tp.t_out_override = Some(crate::netinet::tcp_var::OutOverride {
                        cwnd: maxseg,
                        restore_cwnd: ocwnd.saturating_sub(acked).saturating_add(maxseg),
                        restore_nxt: Some(onxt),
                        limited_from: None,
                    });
                    tp.t_flags |= tf::ACKNOW;
                    needoutput = true;
                }
            } else {
                cc_post_recovery(tp, cfg, ticks, th_ack);
            }
        } else if tp.in_congrecovery() && !seq_lt(th_ack, tp.snd_recover) {
            cc_post_recovery(tp, cfg, ticks, th_ack);
        }

        if tp.has_flag(tf::NEEDSYN) {
            // Our SYN of a simultaneous open is now acknowledged.
            tp.t_flags &= !tf::NEEDSYN;
            tp.snd_una += 1;
            if tp.has_flag(tf::RCVD_SCALE) && tp.has_flag(tf::REQ_SCALE) {
                tp.rcv_scale = tp.request_r_scale;
            }
        }
    }

    // process_ACK:
    let tp = &mut so.tp;
    let acked = th_ack - tp.snd_una;
    ctx.stat.rcvackpack += 1;
    ctx.stat.rcvackbyte += acked as u64;

    // A first retransmission answered within half an RTT was spurious: undo it.
    // deviation: with timestamps FreeBSD judges by the echoed TSval of the retransmission;
    // the core only applies the time-based test, and only without timestamps.
    if tp.t_rxtshift == 1
        && tp.cc_flags.prev_valid
        && !tp.has_flag(tf::RCVD_TSTMP)
        && (ticks.wrapping_sub(tp.t_badrxtwin) as i32) < 0
    {
        ctx.stat.sndrexmitbad += 1;
        cc_cong_signal(tp, cfg, ticks, Some(th_ack), CcSignal::RtoErr);
    }

    if tp.t_flags2 & tf2::SYNACK_REXMIT != 0 {
        // deviation: Karn's rule for the handshake. FreeBSD samples the echo of the ACK that
        // completes it, but after a lost ACK the peer echoes its first SYN,ACK (a SYN,ACK sent
        // again only draws a challenge ACK, which does not move ts_recent), so the sample counts
        // the seconds of SYN,ACK backoff as path delay and the first RTO of the connection grows
        // to tens of seconds. The next ACK gives the first sample instead.
        tp.t_flags2 &= !tf2::SYNACK_REXMIT;
    } else if to.to_flags & tof::TS != 0 && to.to_tsecr != 0 {
        let t = ticks.wrapping_sub(to.to_tsecr);
        if tp.t_rttlow == 0 || tp.t_rttlow > t {
            tp.t_rttlow = t;
        }
        tcp_xmit_timer(tp, t + 1, cfg.rexmit_slop, ctx.stat);
    } else if let Some(start) = tp.t_rtttime {
        if seq_gt(th_ack, tp.t_rtseq) {
            let t = ticks.wrapping_sub(start);
            if tp.t_rttlow == 0 || tp.t_rttlow > t {
                tp.t_rttlow = t;
            }
            tcp_xmit_timer(tp, t, cfg.rexmit_slop, ctx.stat);
        }
    }

    if th_ack == tp.snd_max {
        tp.t_timers.stop(TimerKind::Rexmt);
        needoutput = true;
    } else if !tp.t_timers.active(TimerKind::Persist) {
        tp.t_timers.activate(TimerKind::Rexmt, ctx.now, tp.t_rxtcur);
    }

    let mut ourfinisacked = false;
    if acked != 0 {
        cc_ack_received(
            tp,
            cfg,
            ticks,
            th_ack,
            acked,
            acked.div_ceil(maxseg.max(1)),
            CcAckType::Ack,
        );
        let sbavail = so.so_snd.len() as u32;
        let tp = &mut so.tp;
        if acked > sbavail {
            tp.snd_wnd = tp.snd_wnd.saturating_sub(sbavail);
            so.so_snd.drop_front(sbavail as usize);
            ourfinisacked = true;
        } else {
            so.so_snd.drop_front(acked as usize);
            tp.snd_wnd = tp.snd_wnd.saturating_sub(acked);
        }
        so.sowwakeup();
        let tp = &mut so.tp;
        if !tp.in_recovery()
            && seq_gt(tp.snd_una, tp.snd_recover)
            && seq_leq(th_ack, tp.snd_recover)
        {
            tp.snd_recover = th_ack - 1;
        }
        if tp.in_recovery() && seq_geq(th_ack, tp.snd_recover) {
            tp.cc_flags.exit_recovery();
        }
        tp.snd_una = th_ack;
        tp.snd_holes.cum_ack(th_ack);
        if tp.has_flag(tf::SACK_PERMIT) && seq_gt(tp.snd_una, tp.snd_recover) {
            tp.snd_recover = tp.snd_una;
        }
        if seq_lt(tp.snd_nxt, tp.snd_una) {
            tp.snd_nxt = tp.snd_una;
        }

        match tp.t_state {
            TcpState::FinWait1 if ourfinisacked => {
                if so.so_rcv_cantrcvmore {
                    so.soisdisconnected();
                    let t = maxidle(so, cfg).max(1);
                    so.tp.t_timers.activate(TimerKind::TwoMsl, ctx.now, t);
                }
                so.tp.t_state = TcpState::FinWait2;
            }
            TcpState::Closing if ourfinisacked => {
                // The peer's FIN was acknowledged when we entered CLOSING; nothing to answer.
                so.tp.t_flags &= !tf::ACKNOW;
                tcp_twstart(so, ctx);
                return Verdict::Done;
            }
            TcpState::LastAck if ourfinisacked => {
                tcp_close(so, ctx);
                return Verdict::Done;
            }
            _ => {}
        }
    }
    step6(so, ctx, thflags, th_seq, th_ack, data, tiwin, needoutput)
}

/// The sequence number after the last byte the service has written: data starts after our
/// SYN, which stays in sequence space until it is acknowledged.
fn ft_produced_end(so: &Socket<'_>) -> Seq {
    let syn = (so.tp.snd_una == so.tp.iss) as u32;
    so.tp.snd_una + syn + so.so_snd.len() as u32
}

/// A replica learns from the client's ACK that bytes were delivered which its own output
/// has not reached yet: bytes its service already produced count as sent; the rest of
/// the acknowledgement waits in `ack_ahead` for the service to catch up.
pub fn ft_ack_ahead(so: &mut Socket<'_>, th_ack: Seq) {
    let produced_end = ft_produced_end(so);
    let reach = if seq_lt(th_ack, produced_end) {
        th_ack
    } else {
        produced_end
    };
    if seq_gt(reach, so.tp.snd_max) {
        so.tp.snd_max = reach;
        if seq_lt(so.tp.snd_nxt, reach) {
            so.tp.snd_nxt = reach;
        }
    }
    if seq_gt(th_ack, reach) {
        so.tp.ft.ack_ahead = Some(th_ack);
    }
}

/// The service of a muted replica produced more bytes: those the client already acknowledged
/// (`ack_ahead`) are released at once, as if their ACK arrived now.
pub fn ft_apply_ack_ahead(so: &mut Socket<'_>) {
    let Some(a) = so.tp.ft.ack_ahead else { return };
    if !so.tp.t_state.have_established() {
        // The handshake's ACK applies it (through `ft_ack_ahead`).
        return;
    }
    let produced_end = ft_produced_end(so);
    let reach = if seq_lt(a, produced_end) {
        a
    } else {
        produced_end
    };
    let n = reach - so.tp.snd_una;
    if n > 0 && seq_gt(reach, so.tp.snd_una) {
        so.so_snd.drop_front(n as usize);
        so.tp.snd_una = reach;
        if seq_lt(so.tp.snd_nxt, reach) {
            so.tp.snd_nxt = reach;
        }
        if seq_lt(so.tp.snd_max, reach) {
            so.tp.snd_max = reach;
        }
        so.tp.snd_holes.cum_ack(reach);
        if so.tp.snd_una == so.tp.snd_max {
            so.tp.t_timers.stop(TimerKind::Rexmt);
        }
    }
    if reach == a {
        so.tp.ft.ack_ahead = None;
    }
}

/// Fast retransmit / entering loss recovery. Returns true when the segment is finished.
fn enter_recovery(
    so: &mut Socket<'_>,
    ctx: &mut TcpCtx<'_>,
    th_ack: Seq,
    sack_recovery: bool,
) -> bool {
    let ticks = ctx.ticks();
    let cfg = ctx.cfg;
    let tp = &mut so.tp;
    let maxseg = tp.maxseg();
    tp.t_dupacks = TCPREXMTTHRESH;
    if sack_recovery {
        if tp.in_fastrecovery() {
            tp.t_dupacks = 0;
            return false;
        }
    } else if seq_leq(th_ack, tp.snd_recover) {
        tp.t_dupacks = 0;
        return false;
    }
    cc_cong_signal(tp, cfg, ticks, Some(th_ack), CcSignal::NDupAck);
    cc_ack_received(tp, cfg, ticks, th_ack, 0, 1, CcAckType::DupAck);
    tp.t_timers.stop(TimerKind::Rexmt);
    tp.t_rtttime = None;
    if sack_recovery {
        ctx.stat.sack_recovery_episode += 1;
        tp.snd_recover = tp.snd_nxt;
        // deviation: FreeBSD 14 runs PRR (RFC 6937) here; the core sends one segment and then
        // lets the pipe (RFC 6675) clock recovery with cwnd at ssthresh.
        tp.t_out_override = Some(crate::netinet::tcp_var::OutOverride {
            cwnd: maxseg,
            restore_cwnd: tp.snd_ssthresh,
            restore_nxt: None,
            limited_from: None,
        });
        so.output_wanted = true;
        return !seq_gt(th_ack, so.tp.snd_una);
    }
    // NewReno: retransmit the first unacknowledged segment with cwnd of one segment, then
    // inflate cwnd by the segments that left the network.
    let onxt = tp.snd_nxt;
    tp.snd_nxt = th_ack;
    tp.t_out_override = Some(crate::netinet::tcp_var::OutOverride {
        cwnd: maxseg,
        restore_cwnd: tp.snd_ssthresh + maxseg * tp.t_dupacks.saturating_sub(tp.snd_limited),
        restore_nxt: Some(onxt),
        limited_from: None,
    });
    so.output_wanted = true;
    true
}

/// Window update, data, FIN, and output (FreeBSD's `step6` and `dodata`).
#[allow(clippy::too_many_arguments)]
fn step6(
    so: &mut Socket<'_>,
    ctx: &mut TcpCtx<'_>,
    mut thflags: TcpFlags,
    th_seq: Seq,
    th_ack: Seq,
    data: &[u8],
    tiwin: u32,
    mut needoutput: bool,
) -> Verdict {
    let ticks = ctx.ticks();
    let cfg = ctx.cfg;
    let tlen = data.len() as u32;
    {
        let tp = &mut so.tp;
        if thflags.contains(TcpFlags::ACK)
            && (seq_lt(tp.snd_wl1, th_seq)
                || (tp.snd_wl1 == th_seq
                    && (seq_lt(tp.snd_wl2, th_ack)
                        || (tp.snd_wl2 == th_ack && tiwin > tp.snd_wnd))))
        {
            if tlen == 0 && tp.snd_wl2 == th_ack && tiwin > tp.snd_wnd {
                ctx.stat.rcvwinupd += 1;
            }
            tp.snd_wnd = tiwin;
            tp.snd_wl1 = th_seq;
            tp.snd_wl2 = th_ack;
            if tp.snd_wnd > tp.max_sndwnd {
                tp.max_sndwnd = tp.snd_wnd;
            }
            needoutput = true;
        }
    }

    if (tlen > 0 || thflags.contains(TcpFlags::FIN)) && !so.tp.t_state.have_rcvd_fin() {
        let save_start = th_seq;
        let save_rnxt = so.tp.rcv_nxt;
        if th_seq == so.tp.rcv_nxt
            && so.tp.reass.is_empty()
            && so.tp.t_reass_fin.is_none()
            && so.tp.t_state.have_established()
        {
            if delay_ack(&so.tp, tlen, cfg.delayed_ack) {
                so.tp.t_flags |= tf::DELACK;
            } else {
                so.tp.t_flags |= tf::ACKNOW;
            }
            let n = if so.so_rcv_cantrcvmore {
                tlen as usize
            } else {
                so.so_rcv.append(data)
            };
            // A buffer that cannot hold what the window allowed would be a bug in the window;
            // accept only what fits so the ACK never covers lost bytes.
            so.tp.rcv_nxt += n as u32;
            if (n as u32) < tlen {
                ctx.stat.rcvmemdrop += 1;
                thflags &= !TcpFlags::FIN;
            }
            ctx.stat.rcvpack += 1;
            ctx.stat.rcvbyte += n as u64;
            if n > 0 {
                so.sorwakeup();
            }
            thflags &= TcpFlags::FIN | !TcpFlags::FIN;
        } else {
            thflags = tcp_reass(so, ctx, th_seq, data, thflags);
            so.tp.t_flags |= tf::ACKNOW;
        }
        if so.tp.has_flag(tf::SACK_PERMIT) && tlen > 0 && so.tp.t_state.have_established() {
            let rcv_nxt = so.tp.rcv_nxt;
            if seq_gt(save_start, rcv_nxt) {
                if let Some((s, e)) = so.tp.reass.last_inserted() {
                    so.tp.sackblks.update(rcv_nxt, s, e);
                }
            } else if seq_gt(rcv_nxt, save_rnxt) {
                so.tp.sackblks.clean(rcv_nxt);
            }
        }
    } else {
        thflags &= !TcpFlags::FIN;
    }

    if thflags.contains(TcpFlags::FIN) {
        if !so.tp.t_state.have_rcvd_fin() {
            so.socantrcvmore();
            if so.tp.has_flag(tf::NEEDSYN) {
                so.tp.t_flags |= tf::DELACK;
            } else {
                so.tp.t_flags |= tf::ACKNOW;
            }
            so.tp.rcv_nxt += 1;
        }
        match so.tp.t_state {
            TcpState::SynReceived | TcpState::Established => {
                if so.tp.t_state == TcpState::SynReceived {
                    so.tp.t_starttime = ticks;
                }
                so.tp.t_state = TcpState::CloseWait;
            }
            TcpState::FinWait1 => so.tp.t_state = TcpState::Closing,
            TcpState::FinWait2 => {
                tcp_twstart(so, ctx);
                return Verdict::Done;
            }
            _ => {}
        }
    }

    if needoutput || so.tp.has_flag(tf::ACKNOW) {
        so.output_wanted = true;
    }
    if so.tp.has_flag(tf::DELACK) {
        so.tp.t_flags &= !tf::DELACK;
        so.tp
            .t_timers
            .activate(TimerKind::Delack, ctx.now, cfg.delacktime);
    }
    Verdict::Done
}

/// `tcp_reass`: place out-of-order data in the receive buffer beyond its queued bytes and
/// deliver whatever became contiguous. Returns the flags with FIN kept only when the FIN is
/// now in order.
fn tcp_reass(
    so: &mut Socket<'_>,
    ctx: &mut TcpCtx<'_>,
    th_seq: Seq,
    data: &[u8],
    thflags: TcpFlags,
) -> TcpFlags {
    let established = so.tp.t_state.have_established();
    let rcv_nxt = so.tp.rcv_nxt;
    if data.is_empty() {
        // A bare FIN: in order only if it sits at rcv_nxt with nothing queued before it;
        // ahead of a hole it waits for the hole to fill (only a zero-length segment without
        // FIN is dropped here).
        if established && th_seq == rcv_nxt && so.tp.reass.is_empty() {
            return thflags & TcpFlags::FIN;
        }
        if established && thflags.contains(TcpFlags::FIN) && seq_gt(th_seq, rcv_nxt) {
            so.tp.t_reass_fin = Some(th_seq);
        }
        return TcpFlags(0);
    }
    // Nobody reads any more (shutdown SHUT_RD): out-of-order data is not kept.
    if so.so_rcv_cantrcvmore {
        return TcpFlags(0);
    }
    let off = (th_seq - rcv_nxt) as usize;
    let queued = so.so_rcv.len();
    let written = so.so_rcv.write_unqueued(queued + off, data);
    if written == 0 {
        ctx.stat.rcvmemdrop += 1;
        return TcpFlags(0);
    }
    let end = th_seq + written as u32;
    // Out of order, or before the handshake completed: hold it. FreeBSD presents nothing to
    // the user before ESTABLISHED, and a FIN that arrives then is dropped.
    if th_seq != rcv_nxt || !established {
        if so.tp.reass.insert(th_seq, end).is_err() {
            ctx.stat.rcvreassfull += 1;
            return TcpFlags(0);
        }
        if established && thflags.contains(TcpFlags::FIN) && written == data.len() {
            so.tp.t_reass_fin = Some(end);
        }
        ctx.stat.rcvoopack += 1;
        ctx.stat.rcvoobyte += written as u64;
        return TcpFlags(0);
    }
    // In-order data with a queue behind it: advance over everything now contiguous.
    let new_nxt = so.tp.reass.advance(end);
    let delivered = new_nxt - rcv_nxt;
    so.so_rcv.enqueue_unqueued(delivered as usize);
    so.tp.rcv_nxt = new_nxt;
    ctx.stat.rcvpack += 1;
    ctx.stat.rcvbyte += delivered as u64;
    so.sorwakeup();
    // The FIN belongs to this segment only if the segment's end is the new rcv_nxt; a FIN
    // that arrived earlier counts once the data reaches it.
    if so.tp.t_reass_fin == Some(new_nxt) {
        so.tp.t_reass_fin = None;
        return TcpFlags::FIN;
    }
    if end == new_nxt && written == data.len() {
        thflags & TcpFlags::FIN
    } else {
        TcpFlags(0)
    }
}

/// `tcp_reass(tp, NULL, ...)`: deliver queued data that is now in order.
fn tcp_reass_present(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>) {
    if so.tp.reass.is_empty() || !so.tp.t_state.have_established() {
        return;
    }
    let rcv_nxt = so.tp.rcv_nxt;
    let new_nxt = so.tp.reass.advance(rcv_nxt);
    let delivered = new_nxt - rcv_nxt;
    if delivered > 0 {
        so.so_rcv.enqueue_unqueued(delivered as usize);
        so.tp.rcv_nxt = new_nxt;
        ctx.stat.rcvbyte += delivered as u64;
        so.sorwakeup();
    }
}

/// `dropafterack`: ACK the segment (unless it is an unacceptable ACK in SYN_RECEIVED, which
/// gets a RST).
fn dropafterack(
    so: &mut Socket<'_>,
    _ctx: &mut TcpCtx<'_>,
    thflags: TcpFlags,
    th_ack: Seq,
) -> Verdict {
    if so.tp.t_state == TcpState::SynReceived
        && thflags.contains(TcpFlags::ACK)
        && (seq_gt(so.tp.snd_una, th_ack) || seq_gt(th_ack, so.tp.snd_max))
    {
        return Verdict::DropWithReset;
    }
    so.tp.t_flags |= tf::ACKNOW;
    so.output_wanted = true;
    Verdict::Done
}

/// `TP_KEEPIDLE`.
pub fn keepidle(so: &Socket<'_>, cfg: &crate::netinet::tcp_sysctl::TcpSysctl) -> u32 {
    if so.tp.t_keepidle != 0 {
        so.tp.t_keepidle
    } else {
        cfg.keepidle
    }
}
/// `TP_KEEPINTVL`.
pub fn keepintvl(so: &Socket<'_>, cfg: &crate::netinet::tcp_sysctl::TcpSysctl) -> u32 {
    if so.tp.t_keepintvl != 0 {
        so.tp.t_keepintvl
    } else {
        cfg.keepintvl
    }
}
/// `TP_KEEPINIT`.
pub fn keepinit(so: &Socket<'_>, cfg: &crate::netinet::tcp_sysctl::TcpSysctl) -> u32 {
    if so.tp.t_keepinit != 0 {
        so.tp.t_keepinit
    } else {
        cfg.keepinit
    }
}
/// `TP_KEEPCNT`.
pub fn keepcnt(so: &Socket<'_>, cfg: &crate::netinet::tcp_sysctl::TcpSysctl) -> u32 {
    if so.tp.t_keepcnt != 0 {
        so.tp.t_keepcnt
    } else {
        cfg.keepcnt
    }
}
/// `TP_MAXIDLE`: how long keepalive probes go unanswered before the connection is dropped.
pub fn maxidle(so: &Socket<'_>, cfg: &crate::netinet::tcp_sysctl::TcpSysctl) -> u32 {
    keepcnt(so, cfg).saturating_mul(keepintvl(so, cfg))
}

/// `tcp_twcheck`: a segment for a connection in TIME_WAIT. Returns true when the segment is a
/// new SYN that may reopen the port (the caller then closes this one and looks for a
/// listener).
pub fn tcp_twcheck(so: &mut Socket<'_>, seg: &Seg<'_>, ctx: &mut TcpCtx<'_>) -> bool {
    let thflags = seg.th_flags;
    let to = tcp_dooptions(seg.options, thflags.contains(TcpFlags::SYN));
    if thflags.contains(TcpFlags::RST) {
        // RFC 1337: TIME_WAIT ignores RSTs.
        return false;
    }
    if to.to_flags & tof::TS != 0 && so.tp.ts_recent != 0 && tstmp_lt(to.to_tsval, so.tp.ts_recent)
    {
        return false;
    }
    if thflags.contains(TcpFlags::SYN)
        && !thflags.contains(TcpFlags::ACK)
        && seq_gt(seg.th_seq, so.tp.rcv_nxt)
    {
        tcp_close(so, ctx);
        return true;
    }
    if !thflags.contains(TcpFlags::ACK) {
        return false;
    }
    if thflags.contains(TcpFlags::FIN) {
        let seq = seg.th_seq + seg.data.len() as u32 + thflags.contains(TcpFlags::SYN) as u32;
        if seq + 1 == so.tp.rcv_nxt {
            so.tp
                .t_timers
                .activate(TimerKind::TwoMsl, ctx.now, ctx.cfg.msl.saturating_mul(2));
        }
    }
    if thflags != TcpFlags::ACK
        || !seg.data.is_empty()
        || seg.th_seq != so.tp.rcv_nxt
        || seg.th_ack != so.tp.snd_nxt
    {
        let (ack, seq) = (so.tp.ack_point(), so.tp.snd_nxt);
        tcp_respond(so, ctx, ack, seq, TcpFlags::ACK);
    }
    false
}

/// Called by the persist timer and keepalive code paths that need `tcp_setpersist`.
pub fn setpersist(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>) {
    tcp_setpersist(&mut so.tp, ctx.cfg, ctx.now);
}

/// Marks the socket as having no user handle.
pub fn set_nofdref(so: &mut Socket<'_>) {
    so.so_state |= ss::NOFDREF;
}
