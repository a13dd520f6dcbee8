//! `tcp_output`: decides whether a connection has something to send and builds that segment
//! (FreeBSD `tcp_output.c`), plus `tcp_addoptions` and `tcp_setpersist`.
//!
//! deviation: FreeBSD's `tcp_output` loops (`goto again`) and hands mbufs to `ip_output`. Here
//! one call builds at most one segment into the caller's buffer and reports whether another
//! is ready (`sendalot`); the stack calls again until it says no.

use core::net::Ipv4Addr;

use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_seq::{seq_gt, seq_lt, Seq};
use crate::netinet::tcp_stat::TcpStat;
use crate::netinet::tcp_subr::{tcp_mssopt, Reply};
use crate::netinet::tcp_sysctl::TcpSysctl;
use crate::netinet::tcp_timer::{
    backoff, rangeset, TimerKind, TCPTV_PERSMAX, TCPTV_PERSMIN, TCP_MAXRXTSHIFT,
};
use crate::netinet::tcp_var::{tf, tf2, TcpCb, TCP_MAXWIN};
use crate::socket::socketvar::Socket;
use crate::time::Instant;
use crate::wire::ipv4::{self, Ecn, Ipv4Header};
use crate::wire::tcp::{self as wtcp, TcpFlags, TcpHeader};

/// What a protocol routine needs from the stack besides the connection.
pub struct TcpCtx<'c> {
    pub cfg: &'c TcpSysctl,
    pub stat: &'c mut TcpStat,
    pub now: Instant,
    /// MTU of the interface the connection uses.
    pub mtu: u32,
    /// Bytes of encapsulation to leave room for in the MSS we advertise.
    pub encap_overhead: u32,
    /// Connectionless replies (RSTs, challenge ACKs) waiting for `poll_transmit`.
    pub replies: &'c mut ReplyQueue,
}

/// Capacity of the connectionless reply queue.
pub const REPLY_QUEUE_LEN: usize = 32;
pub type ReplyQueue = crate::store::BoundedDeque<Reply, REPLY_QUEUE_LEN>;

impl TcpCtx<'_> {
    pub fn ticks(&self) -> u32 {
        self.now.ticks()
    }
}

/// Options to put on a segment (the output half of `struct tcpopt`).
#[derive(Default, Clone, Copy)]
pub struct OutOpts<'s> {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub ts: Option<(u32, u32)>,
    pub sacks: &'s [(u32, u32)],
}

/// `tcp_addoptions`: lays options out in FreeBSD's order and alignment (MSS; NOP + window
/// scale; SACK-permitted on an even offset; timestamps on an offset of 2 mod 4; SACK blocks
/// likewise), then pads with EOL to a 4-byte boundary. Returns the option length.
pub fn tcp_addoptions(opts: &OutOpts<'_>, out: &mut [u8; 40]) -> usize {
    let mut n = 0usize;
    if let Some(mss) = opts.mss {
        let [hi, lo] = mss.to_be_bytes();
        put(out, &mut n, [wtcp::TCPOPT_MAXSEG, 4, hi, lo]);
    }
    if let Some(ws) = opts.wscale {
        put(out, &mut n, [wtcp::TCPOPT_NOP, wtcp::TCPOPT_WINDOW, 3, ws]);
    }
    if opts.sack_permitted {
        while !n.is_multiple_of(2) {
            put(out, &mut n, [wtcp::TCPOPT_NOP]);
        }
        put(out, &mut n, [wtcp::TCPOPT_SACK_PERMITTED, 2]);
    }
    if let Some((val, ecr)) = opts.ts {
        while n == 0 || n % 4 != 2 {
            put(out, &mut n, [wtcp::TCPOPT_NOP]);
        }
        let mut ts = [0u8; 10];
        ts[0] = wtcp::TCPOPT_TIMESTAMP;
        ts[1] = 10;
        ts[2..6].copy_from_slice(&val.to_be_bytes());
        ts[6..].copy_from_slice(&ecr.to_be_bytes());
        put(out, &mut n, ts);
    }
    if !opts.sacks.is_empty() {
        while n == 0 || n % 4 != 2 {
            put(out, &mut n, [wtcp::TCPOPT_NOP]);
        }
        // Room left after the kind/length bytes decides how many blocks fit.
        let room = 40usize.saturating_sub(n + 2) / 8;
        let count = opts.sacks.len().min(room);
        if count > 0 {
            put(out, &mut n, [wtcp::TCPOPT_SACK, (2 + 8 * count) as u8]);
            for &(l, r) in &opts.sacks[..count] {
                let mut block = [0u8; 8];
                block[..4].copy_from_slice(&l.to_be_bytes());
                block[4..].copy_from_slice(&r.to_be_bytes());
                put(out, &mut n, block);
            }
        }
    }
    while !n.is_multiple_of(4) {
        put(out, &mut n, [wtcp::TCPOPT_EOL]);
    }
    n
}

/// Appends one option's bytes at `*n`, dropping whatever would run past the 40-byte option
/// space (no layout above gets there: the longest, MSS through two SACK blocks, is exactly 40).
/// A whole option at a time because this runs for every segment (the timestamp option on
/// each): an `N`-byte array that fits is a few stores rather than `N` checked byte writes.
fn put<const N: usize>(out: &mut [u8; 40], n: &mut usize, bytes: [u8; N]) {
    if let Some(dst) = out.get_mut(*n..*n + N) {
        dst.copy_from_slice(&bytes);
        *n += N;
    } else {
        for b in bytes {
            if let Some(slot) = out.get_mut(*n) {
                *slot = b;
                *n += 1;
            }
        }
    }
}

/// `tcp_setpersist`: arms the persist timer with the backed-off RTO.
pub fn tcp_setpersist(tp: &mut TcpCb, cfg: &TcpSysctl, now: Instant) {
    let t = (tp.t_srtt >> 2).saturating_add(tp.t_rttvar) >> 1;
    tp.t_flags &= !tf::PREVVALID;
    let tt = rangeset(
        t.saturating_mul(backoff(tp.t_rxtshift)),
        cfg.rexmit_slop,
        TCPTV_PERSMIN,
        TCPTV_PERSMAX,
    );
    tp.t_timers.activate(TimerKind::Persist, now, tt);
    if tp.t_rxtshift < TCP_MAXRXTSHIFT {
        tp.t_rxtshift += 1;
    }
}

/// Result of one `tcp_output` call.
pub enum Output {
    /// A segment of this many bytes is in the buffer; `more` when FreeBSD would `goto again`.
    Sent {
        len: usize,
        more: bool,
    },
    Nothing,
}

/// `tcp_output`.
pub fn tcp_output(so: &mut Socket<'_>, ctx: &mut TcpCtx<'_>, buf: &mut [u8]) -> Output {
    let ticks = ctx.ticks();
    let cfg = ctx.cfg;
    if matches!(so.tp.t_state, TcpState::Listen | TcpState::Closed) && !so.tp.has_flag(tf::NEEDSYN)
    {
        // deviation: FreeBSD's CLOSED outflags are RST|ACK for tcp_drop's benefit; the core
        // sends that RST from tcp_drop itself, so output in CLOSED has nothing to do.
        return Output::Nothing;
    }

    // RFC 5681 restart after idle: nothing outstanding and idle for more than an RTO.
    // FreeBSD decides "idle" once, before its `again:` loop; the segments of one burst (our
    // successive calls while `sendalot`) share that decision.
    let burst = so.tp.t_burst_idle.take();
    let mut idle = burst.unwrap_or(so.tp.has_flag(tf::LASTIDLE) || so.tp.snd_max == so.tp.snd_una);
    if burst.is_none() && idle && ticks.wrapping_sub(so.tp.t_rcvtime) >= so.tp.t_rxtcur {
        crate::netinet::tcp_cc::cc_after_idle(&mut so.tp, cfg, ticks);
    }
    so.tp.t_flags &= !tf::LASTIDLE;
    if idle && so.tp.has_flag(tf::MORETOCOME) {
        so.tp.t_flags |= tf::LASTIDLE;
        idle = false;
    }

    let sbused = so.so_snd.len() as u32;
    let tp = &mut so.tp;
    let mut off = tp.snd_nxt - tp.snd_una;
    let cwnd = tp.t_out_override.map_or(tp.snd_cwnd, |o| o.cwnd);
    let mut sendwin = tp.snd_wnd.min(cwnd);
    let mut flags = tp.t_state.outflags();
    let mut sendalot = false;
    let mut len: i64;

    // SACK recovery: retransmit from the first hole.
    let mut sack_rxmit: Option<Seq> = None;
    if tp.has_flag(tf::SACK_PERMIT) && tp.in_fastrecovery() && !tp.snd_holes.is_empty() {
        if let Some((rx, hole_len)) = tp.snd_holes.output() {
            // FreeBSD (without PRR): the window left after what was already retransmitted.
            let cwin = (tp.snd_wnd.min(cwnd) as i64 - tp.snd_holes.sack_bytes_rexmit as i64).max(0);
            let l = (hole_len as i64).min(cwin).min(tp.snd_wnd as i64);
            if l > 0 && seq_lt(rx, tp.snd_max) {
                off = rx - tp.snd_una;
                sack_rxmit = Some(rx);
                sendalot = true;
            }
            let _ = l;
        }
    }

    if tp.has_flag(tf::NEEDFIN) {
        flags |= TcpFlags::FIN;
    }
    if tp.has_flag(tf::NEEDSYN) {
        flags |= TcpFlags::SYN;
    }

    // A persist probe: pretend the window is one byte.
    if tp.has_flag(tf::FORCEDATA) {
        if sendwin == 0 {
            if off < sbused {
                flags &= !TcpFlags::FIN;
            }
            sendwin = 1;
        } else {
            tp.t_timers.stop(TimerKind::Persist);
            tp.t_rxtshift = 0;
        }
    }

    if let Some(rx) = sack_rxmit {
        let (_, hole_len) = tp.snd_holes.output().unwrap_or((rx, 0));
        let cwin = (tp.snd_wnd.min(cwnd) as i64 - tp.snd_holes.sack_bytes_rexmit as i64).max(0);
        len = (hole_len as i64).min(cwin).min(sbused as i64 - off as i64);
        if len <= 0 {
            sack_rxmit = None;
            off = tp.snd_nxt - tp.snd_una;
            len = (sbused.min(sendwin) as i64) - off as i64;
        }
    } else if tp.in_fastrecovery() && tp.has_flag(tf::SACK_PERMIT) && !tp.snd_holes.is_empty() {
        // New data during SACK recovery is limited by the pipe, not by cwnd alone.
        let pipe = pipe_bytes(tp);
        let cwin = (tp.snd_wnd.min(cwnd) as i64 - pipe as i64).max(0);
        len = ((sbused as i64 - off as i64).min(tp.snd_wnd as i64 - off as i64)).min(cwin);
    } else {
        len = (sbused.min(sendwin) as i64) - off as i64;
    }

    // SYN in SYN_SENT/SYN_RECEIVED already sent and not acknowledged: don't resend it unless
    // we are still in SYN_RECEIVED (its retransmission carries SYN|ACK).
    if flags.contains(TcpFlags::SYN) && seq_gt(tp.snd_nxt, tp.snd_una) {
        if tp.t_state != TcpState::SynReceived {
            flags &= !TcpFlags::SYN;
        }
        off = off.wrapping_sub(1);
        len += 1;
    }
    // No data on a SYN (we do not implement TCP Fast Open).
    if flags.contains(TcpFlags::SYN) {
        len = 0;
        flags &= !TcpFlags::FIN;
    }

    if len <= 0 {
        // The window shrank to zero under data we still have to send: pull snd_nxt back to
        // the closed window and probe it.
        len = 0;
        if sendwin == 0
            && tp.t_state.have_established()
            && off < sbused
            && !tp.t_timers.active(TimerKind::Persist)
        {
            tp.t_timers.stop(TimerKind::Rexmt);
            tp.t_rxtshift = 0;
            tp.snd_nxt = tp.snd_una;
            tcp_setpersist(tp, cfg, ctx.now);
        }
    }

    let optlen_est = if tp.has_flag(tf::RCVD_TSTMP) { 12 } else { 0 };
    let maxseg = tp.t_maxseg.saturating_sub(optlen_est).max(1) as i64;
    if len > maxseg {
        len = maxseg;
        sendalot = true;
    }
    let len_u = len as u32;
    if let Some(rx) = sack_rxmit {
        if seq_lt(rx + len_u, tp.snd_una + sbused) {
            flags &= !TcpFlags::FIN;
        }
    } else if seq_lt(
        tp.snd_nxt + len_u,
        // Data starts after the SYN while the SYN is unacknowledged.
        tp.snd_una + sbused + u32::from(!tp.t_state.have_established() && tp.snd_una == tp.iss),
    ) {
        flags &= !TcpFlags::FIN;
    }

    let mut recwin_raw = so.so_rcv.space() as u32;
    // The FT layer may cap the right edge at the group's smallest: the window we could open
    // is measured against that cap, or the window-update test below would fire forever.
    if let Some(e) = so.tp.ft.edge_limit {
        let cap = if seq_gt(e, so.tp.rcv_nxt) {
            e - so.tp.rcv_nxt
        } else {
            0
        };
        recwin_raw = recwin_raw.min(cap);
    }
    let tp = &mut so.tp;
    let hiwat = so.so_rcv.hiwat();
    let mut send = false;

    // Sender silly-window avoidance.
    if len_u > 0
        && (len >= maxseg
            || ((idle || tp.has_flag(tf::NODELAY))
                && !tp.has_flag(tf::NOPUSH)
                && len_u + off >= sbused)
            || tp.has_flag(tf::FORCEDATA)
            || (tp.max_sndwnd > 0 && len_u >= tp.max_sndwnd / 2)
            || seq_lt(tp.snd_nxt, tp.snd_max)
            || sack_rxmit.is_some())
    {
        send = true;
    }

    // Window update: worth sending when it opens by two segments and a good share of the buffer.
    if !send && recwin_raw > 0 && !flags.contains(TcpFlags::SYN) {
        let maxwin = TCP_MAXWIN << tp.rcv_scale;
        let mut adv = recwin_raw.min(maxwin);
        let oldwin = if seq_gt(tp.rcv_adv, tp.rcv_nxt) {
            tp.rcv_adv - tp.rcv_nxt
        } else {
            0
        };
        adv = adv.saturating_sub(oldwin);
        if (oldwin >> tp.rcv_scale) < ((adv + oldwin) >> tp.rcv_scale) {
            let ms = tp.t_maxseg;
            let big = adv >= 2 * ms
                && (adv >= hiwat / 4
                    || recwin_raw <= hiwat / 8
                    || hiwat <= 8 * ms
                    || adv >= maxwin);
            if big || 2 * adv >= hiwat {
                send = true;
            }
        }
    }
    if !send
        && (tp.has_flag(tf::ACKNOW)
            || flags.intersects(TcpFlags::RST)
            || (flags.contains(TcpFlags::SYN) && !tp.has_flag(tf::NEEDSYN))
            || seq_gt(tp.snd_up, tp.snd_una)
            || (flags.contains(TcpFlags::FIN)
                && (!tp.has_flag(tf::SENTFIN) || tp.snd_nxt == tp.snd_una)))
    {
        send = true;
    }
    if !send {
        // Data waiting and no timer to bring us back: start probing the window.
        if sbused > 0
            && !tp.t_timers.active(TimerKind::Rexmt)
            && !tp.t_timers.active(TimerKind::Persist)
        {
            tp.t_rxtshift = 0;
            tcp_setpersist(tp, cfg, ctx.now);
        }
        tp.finish_out_override();
        tp.t_flags &= !tf::FORCEDATA;
        return Output::Nothing;
    }

    // ---- send: options ----
    let mut sacks_buf = [(0u32, 0u32); 4];
    let mut opts = OutOpts::default();
    if flags.contains(TcpFlags::SYN) {
        tp.snd_nxt = tp.iss;
    }
    if !tp.has_flag(tf::NOOPT) {
        if flags.contains(TcpFlags::SYN) {
            opts.mss = Some(tcp_mssopt(ctx.mtu, ctx.encap_overhead).min(65535) as u16);
            if tp.has_flag(tf::REQ_SCALE)
                && (!flags.contains(TcpFlags::ACK) || tp.has_flag(tf::RCVD_SCALE))
            {
                opts.wscale = Some(tp.request_r_scale);
            }
            if tp.has_flag(tf::SACK_PERMIT) {
                opts.sack_permitted = true;
            }
        }
        if !flags.contains(TcpFlags::RST)
            && (tp.has_flag(tf::RCVD_TSTMP)
                || (flags.contains(TcpFlags::SYN) && tp.has_flag(tf::REQ_TSTMP)))
        {
            let ecr = if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
                0
            } else {
                tp.ts_recent
            };
            opts.ts = Some((ticks.wrapping_add(tp.ts_offset), ecr));
        }
        // deviation: a SACK block acknowledges too. While the FT layer holds the
        // acknowledgement back for its replica group, this host's blocks may name bytes another
        // replica lacks, and a sender never retransmits SACKed bytes before its RTO (RFC
        // 6675): the replica would wait for them while the sender waits for the ACK. So no
        // blocks then; the group's loss recovery runs on duplicate ACKs (NewReno).
        if tp.has_flag(tf::SACK_PERMIT)
            && tp.t_state.have_established()
            && !flags.contains(TcpFlags::SYN)
            && tp.ft.ack_limit.is_none()
        {
            let blocks = tp.sackblks.blocks();
            let n = blocks.len().min(if opts.ts.is_some() { 3 } else { 4 });
            for (i, b) in blocks.iter().take(n).enumerate() {
                sacks_buf[i] = (b.start.0, b.end.0);
            }
            opts.sacks = &sacks_buf[..n];
            if n > 0 {
                ctx.stat.sack_send_blocks += 1;
            }
        }
    }
    // Dropping options on later SYN retransmissions (net.inet.tcp.rexmit_drop_options).
    let mut optbuf = [0u8; 40];
    let optlen = tcp_addoptions(&opts, &mut optbuf);

    let mut len_u = len_u;
    let data_room = tp.t_maxseg.saturating_sub(optlen as u32);
    if len_u > data_room {
        len_u = data_room;
        sendalot = true;
        flags &= !TcpFlags::FIN;
    }
    // Never build more than the caller's buffer holds.
    let hdr = ipv4::HEADER_LEN + wtcp::HEADER_LEN + optlen;
    if buf.len() < hdr {
        return Output::Nothing;
    }
    if len_u as usize > buf.len() - hdr {
        len_u = (buf.len() - hdr) as u32;
        sendalot = true;
        flags &= !TcpFlags::FIN;
    }

    // ---- ECN ----
    let mut ip_ecn = Ecn::NotEct;
    if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
        if cfg.ecn_enable == 1 && tp.t_rxtshift <= cfg.ecn_maxretries {
            flags |= TcpFlags::ECE | TcpFlags::CWR;
        }
    } else if flags.contains(TcpFlags::SYN) {
        if tp.t_flags2 & tf2::ECN_PERMIT != 0 {
            flags |= TcpFlags::ECE;
        }
    } else if tp.t_flags2 & tf2::ECN_PERMIT != 0 {
        let rexmit = seq_lt(tp.snd_nxt, tp.snd_max) || sack_rxmit.is_some();
        if len_u > 0 && !rexmit && !tp.has_flag(tf::FORCEDATA) {
            ip_ecn = Ecn::Ect0;
            if tp.t_flags2 & tf2::ECN_SND_CWR != 0 {
                flags |= TcpFlags::CWR;
                tp.t_flags2 &= !tf2::ECN_SND_CWR;
            }
        }
        if tp.t_flags2 & tf2::ECN_SND_ECE != 0 {
            flags |= TcpFlags::ECE;
        }
    }

    // ---- statistics and PSH ----
    if len_u > 0 {
        if tp.has_flag(tf::FORCEDATA) && len_u == 1 {
            ctx.stat.sndprobe += 1;
        } else if seq_lt(tp.snd_nxt, tp.snd_max) || sack_rxmit.is_some() {
            ctx.stat.sndrexmitpack += 1;
            ctx.stat.sndrexmitbyte += len_u as u64;
            if sack_rxmit.is_some() {
                ctx.stat.sack_rexmits += 1;
                ctx.stat.sack_rexmit_bytes += len_u as u64;
            }
        } else {
            ctx.stat.sndpack += 1;
            ctx.stat.sndbyte += len_u as u64;
        }
        if off + len_u == sbused {
            flags |= TcpFlags::PSH;
        }
    } else if tp.has_flag(tf::ACKNOW) {
        ctx.stat.sndacks += 1;
    } else if flags.intersects(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) {
        ctx.stat.sndctrl += 1;
    } else {
        ctx.stat.sndwinup += 1;
    }

    // ---- sequence numbers ----
    if flags.contains(TcpFlags::FIN) && tp.has_flag(tf::SENTFIN) && tp.snd_nxt == tp.snd_max {
        tp.snd_nxt -= 1;
    }
    let th_seq = if let Some(rx) = sack_rxmit {
        rx
    } else if len_u > 0
        || flags.intersects(TcpFlags::SYN | TcpFlags::FIN)
        || tp.t_timers.active(TimerKind::Persist)
    {
        tp.snd_nxt
    } else {
        tp.snd_max
    };

    // ---- receive window ----
    // The acknowledgement is rcv_nxt, unless the FT layer holds it back to what every replica
    // has; the advertised right edge never moves left and never passes the group's smallest.
    let ack_point = tp.ack_point();
    let mut recwin = recwin_raw;
    if recwin < hiwat / 4 && recwin < tp.t_maxseg {
        recwin = 0;
    }
    let mut right = tp.rcv_nxt + recwin;
    if let Some(e) = tp.ft.edge_limit {
        if seq_lt(e, right) {
            right = e;
        }
    }
    // deviation: under an FT edge limit the window may shrink to the group's smallest edge
    // (RFC 793 discourages shrinking; the design requires the group's bound).
    if tp.ft.edge_limit.is_none() && seq_gt(tp.rcv_adv, right) {
        right = tp.rcv_adv;
    }
    let recwin = if seq_gt(right, ack_point) {
        (right - ack_point).min(TCP_MAXWIN << tp.rcv_scale)
    } else {
        0
    };
    let th_win = if flags.contains(TcpFlags::SYN) {
        recwin.min(TCP_MAXWIN) as u16
    } else {
        (recwin >> tp.rcv_scale).min(TCP_MAXWIN) as u16
    };
    if recwin == 0 {
        tp.t_flags |= tf::RXWIN0SENT;
    } else {
        tp.t_flags &= !tf::RXWIN0SENT;
    }

    // ---- build ----
    let th_ack = if flags.contains(TcpFlags::ACK) {
        ack_point.0
    } else {
        0
    };
    let header = TcpHeader {
        src_port: so.inp.lport,
        dst_port: so.inp.fport,
        seq: th_seq.0,
        ack: th_ack,
        data_offset: 0,
        flags,
        window: th_win,
        checksum: 0,
        urgent: 0,
    };
    let data_off = (th_seq - tp.snd_una) as usize;
    let data_off = if flags.contains(TcpFlags::SYN) {
        0
    } else {
        data_off
    };
    let written = match emit_with_payload(
        &so.so_snd,
        data_off,
        len_u as usize,
        &header,
        &optbuf[..optlen],
        so.inp.laddr,
        so.inp.faddr,
        ip_ecn,
        cfg.path_mtu_discovery,
        buf,
    ) {
        Some(n) => n,
        None => return Output::Nothing,
    };
    let tp = &mut so.tp;
    ctx.stat.sndtotal += 1;

    // ---- advance state ----
    if !tp.has_flag(tf::FORCEDATA) || !tp.t_timers.active(TimerKind::Persist) {
        let startseq = tp.snd_nxt;
        if flags.contains(TcpFlags::SYN) {
            tp.snd_nxt += 1;
        }
        if flags.contains(TcpFlags::FIN) {
            tp.snd_nxt += 1;
            tp.t_flags |= tf::SENTFIN;
        }
        if let Some(rx) = sack_rxmit {
            tp.snd_holes.mark_retransmitted(rx, len_u);
        } else {
            tp.snd_nxt += len_u;
            if seq_gt(tp.snd_nxt, tp.snd_max) {
                tp.snd_max = tp.snd_nxt;
                if tp.t_rtttime.is_none() {
                    tp.t_rtttime = Some(ticks);
                    tp.t_rtseq = startseq;
                    ctx.stat.segstimed += 1;
                }
            }
        }
        let outstanding = if sack_rxmit.is_some() {
            tp.snd_nxt != tp.snd_max
        } else {
            tp.snd_nxt != tp.snd_una
        };
        if !tp.t_timers.active(TimerKind::Rexmt) && (outstanding || sack_rxmit.is_some()) {
            if tp.t_timers.active(TimerKind::Persist) {
                tp.t_timers.stop(TimerKind::Persist);
                tp.t_rxtshift = 0;
            }
            tp.t_timers.activate(TimerKind::Rexmt, ctx.now, tp.t_rxtcur);
        } else if len_u == 0
            && sbused > 0
            && !tp.t_timers.active(TimerKind::Rexmt)
            && !tp.t_timers.active(TimerKind::Persist)
        {
            tp.t_rxtshift = 0;
            tcp_setpersist(tp, cfg, ctx.now);
        }
    } else {
        let mut xlen = len_u;
        if flags.contains(TcpFlags::SYN) {
            xlen += 1;
        }
        if flags.contains(TcpFlags::FIN) {
            xlen += 1;
            tp.t_flags |= tf::SENTFIN;
        }
        if seq_gt(tp.snd_nxt + xlen, tp.snd_max) {
            tp.snd_max = tp.snd_nxt + xlen;
        }
    }

    if recwin > 0 && seq_gt(ack_point + recwin, tp.rcv_adv) {
        tp.rcv_adv = ack_point + recwin;
    }
    tp.last_ack_sent = ack_point;
    tp.t_flags &= !(tf::ACKNOW | tf::DELACK);
    tp.t_timers.stop(TimerKind::Delack);
    // A persist probe is one segment; the flag is the timer's, not the connection's.
    tp.t_flags &= !tf::FORCEDATA;
    if !sendalot {
        tp.finish_out_override();
    } else {
        tp.t_burst_idle = Some(idle);
    }

    Output::Sent {
        len: written,
        more: sendalot,
    }
}

/// `pipe` of RFC 6675: bytes believed to be in the network.
pub fn pipe_bytes(tp: &TcpCb) -> u32 {
    tp.flight()
        .saturating_sub(tp.snd_holes.sacked_bytes())
        .saturating_add(tp.snd_holes.sack_bytes_rexmit)
}

#[allow(clippy::too_many_arguments)]
fn emit_with_payload(
    snd: &crate::socket::sockbuf::SockBuf<'_>,
    data_off: usize,
    len: usize,
    header: &TcpHeader,
    options: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ecn: Ecn,
    dont_frag: bool,
    buf: &mut [u8],
) -> Option<usize> {
    let tcp_hdr = wtcp::HEADER_LEN + options.len();
    let total = ipv4::HEADER_LEN + tcp_hdr + len;
    if buf.len() < total || total > u16::MAX as usize {
        return None;
    }
    let (a, b) = snd.slices(data_off, len);
    let got = a.len() + b.len();
    let mut ip = Ipv4Header::new(src, dst, ipv4::PROTO_TCP, tcp_hdr + got, 64);
    ip.dont_frag = dont_frag;
    ip.set_ecn(ecn);
    ip.emit(&mut buf[..ipv4::HEADER_LEN]).ok()?;
    let n = wtcp::emit_segment_vectored(
        header,
        options,
        &[a, b],
        src,
        dst,
        &mut buf[ipv4::HEADER_LEN..],
    )
    .ok()?;
    Some(ipv4::HEADER_LEN + n)
}

/// Builds a connectionless reply (RST, challenge ACK, SYN-ACK) into `buf`.
pub fn emit_reply(r: &Reply, mtu: u32, buf: &mut [u8]) -> Option<usize> {
    let mut opts = OutOpts::default();
    if let Some(s) = r.syn_opts {
        opts.mss = Some(s.mss);
        opts.wscale = s.wscale;
        opts.sack_permitted = s.sack_permitted;
    }
    opts.ts = r.ts;
    let mut optbuf = [0u8; 40];
    let optlen = tcp_addoptions(&opts, &mut optbuf);
    let header = TcpHeader {
        src_port: r.sport,
        dst_port: r.dport,
        seq: r.seq.0,
        ack: if r.flags.contains(TcpFlags::ACK) {
            r.ack.0
        } else {
            0
        },
        data_offset: 0,
        flags: r.flags,
        window: r.win,
        checksum: 0,
        urgent: 0,
    };
    let tcp_hdr = wtcp::HEADER_LEN + optlen;
    if buf.len() < ipv4::HEADER_LEN + tcp_hdr {
        return None;
    }
    let _ = mtu;
    let mut ip = Ipv4Header::new(r.src, r.dst, ipv4::PROTO_TCP, tcp_hdr, 64);
    ip.set_ecn(Ecn::from_bits(r.ecn));
    ip.emit(&mut buf[..ipv4::HEADER_LEN]).ok()?;
    let n = wtcp::emit_segment(
        &header,
        &optbuf[..optlen],
        &[],
        r.src,
        r.dst,
        &mut buf[ipv4::HEADER_LEN..],
    )
    .ok()?;
    Some(ipv4::HEADER_LEN + n)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// `tcp_addoptions` as it was first written, one checked byte at a time: the reference for
    /// the whole-option writes, which must lay out exactly the same bytes.
    fn addoptions_bytewise(opts: &OutOpts<'_>, out: &mut [u8; 40]) -> usize {
        let mut n = 0usize;
        let put = |out: &mut [u8; 40], n: &mut usize, b: u8| {
            if *n < 40 {
                out[*n] = b;
                *n += 1;
            }
        };
        if let Some(mss) = opts.mss {
            for b in [wtcp::TCPOPT_MAXSEG, 4, (mss >> 8) as u8, mss as u8] {
                put(out, &mut n, b);
            }
        }
        if let Some(ws) = opts.wscale {
            for b in [wtcp::TCPOPT_NOP, wtcp::TCPOPT_WINDOW, 3, ws] {
                put(out, &mut n, b);
            }
        }
        if opts.sack_permitted {
            while !n.is_multiple_of(2) {
                put(out, &mut n, wtcp::TCPOPT_NOP);
            }
            put(out, &mut n, wtcp::TCPOPT_SACK_PERMITTED);
            put(out, &mut n, 2);
        }
        if let Some((val, ecr)) = opts.ts {
            while n == 0 || n % 4 != 2 {
                put(out, &mut n, wtcp::TCPOPT_NOP);
            }
            put(out, &mut n, wtcp::TCPOPT_TIMESTAMP);
            put(out, &mut n, 10);
            for b in val.to_be_bytes().into_iter().chain(ecr.to_be_bytes()) {
                put(out, &mut n, b);
            }
        }
        if !opts.sacks.is_empty() {
            while n == 0 || n % 4 != 2 {
                put(out, &mut n, wtcp::TCPOPT_NOP);
            }
            let room = 40usize.saturating_sub(n + 2) / 8;
            let count = opts.sacks.len().min(room);
            if count > 0 {
                put(out, &mut n, wtcp::TCPOPT_SACK);
                put(out, &mut n, (2 + 8 * count) as u8);
                for &(l, r) in &opts.sacks[..count] {
                    for b in l.to_be_bytes().into_iter().chain(r.to_be_bytes()) {
                        put(out, &mut n, b);
                    }
                }
            }
        }
        while !n.is_multiple_of(4) {
            put(out, &mut n, wtcp::TCPOPT_EOL);
        }
        n
    }

    #[test]
    fn timestamp_only_layout() {
        // The option of nearly every segment of a connection: NOP, NOP, TS val ecr.
        let opts = OutOpts {
            ts: Some((0x0102_0304, 0x0a0b_0c0d)),
            ..OutOpts::default()
        };
        let mut out = [0xeeu8; 40];
        assert_eq!(tcp_addoptions(&opts, &mut out), 12);
        assert_eq!(out[..12], [1, 1, 8, 10, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(out[12], 0xee);
    }

    proptest! {
        /// Every combination of options, SACK lists longer than fit included, gives the same
        /// length and bytes as the byte-at-a-time reference, and leaves the rest of the buffer
        /// untouched.
        #[test]
        fn addoptions_matches_bytewise(mss in any::<Option<u16>>(), wscale in any::<Option<u8>>(),
                                       sack_permitted in any::<bool>(),
                                       ts in any::<Option<(u32, u32)>>(),
                                       sacks in proptest::collection::vec(any::<(u32, u32)>(), 0..6),
                                       fill in any::<u8>()) {
            let sacks: Vec<(u32, u32)> = sacks;
            let opts = OutOpts { mss, wscale, sack_permitted, ts, sacks: &sacks };
            let (mut ours, mut reference) = ([fill; 40], [fill; 40]);
            let n = tcp_addoptions(&opts, &mut ours);
            prop_assert_eq!(n, addoptions_bytewise(&opts, &mut reference));
            prop_assert_eq!(ours, reference);
        }
    }
}
