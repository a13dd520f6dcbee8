//! The TCP control block (FreeBSD `tcp_var.h`): per-connection state with FreeBSD's field names.

use crate::netinet::cc::{CcAlgorithm, CcFlags};
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_reass::ReassQueue;
use crate::netinet::tcp_sack::{SackReport, SackScoreboard};
use crate::netinet::tcp_seq::Seq;
use crate::netinet::tcp_timer::TimerTable;

/// `t_flags` bits.
pub mod tf {
    pub const ACKNOW: u32 = 0x0000_0001;
    pub const DELACK: u32 = 0x0000_0002;
    pub const NODELAY: u32 = 0x0000_0004;
    pub const NOOPT: u32 = 0x0000_0008;
    pub const SENTFIN: u32 = 0x0000_0010;
    pub const REQ_SCALE: u32 = 0x0000_0020;
    pub const RCVD_SCALE: u32 = 0x0000_0040;
    pub const REQ_TSTMP: u32 = 0x0000_0080;
    pub const RCVD_TSTMP: u32 = 0x0000_0100;
    pub const SACK_PERMIT: u32 = 0x0000_0200;
    pub const NEEDSYN: u32 = 0x0000_0400;
    pub const NEEDFIN: u32 = 0x0000_0800;
    pub const NOPUSH: u32 = 0x0000_1000;
    pub const PREVVALID: u32 = 0x0000_2000;
    pub const MORETOCOME: u32 = 0x0001_0000;
    pub const LASTIDLE: u32 = 0x0004_0000;
    pub const RXWIN0SENT: u32 = 0x0008_0000;
    pub const FASTRECOVERY: u32 = 0x0010_0000;
    pub const WASFRECOVERY: u32 = 0x0020_0000;
    pub const FORCEDATA: u32 = 0x0080_0000;
    pub const CONGRECOVERY: u32 = 0x0400_0000;
    pub const WASCRECOVERY: u32 = 0x0800_0000;
}

/// `t_flags2` bits.
pub mod tf2 {
    pub const ECN_PERMIT: u32 = 0x0000_0100;
    pub const ECN_SND_CWR: u32 = 0x0000_0200;
    pub const ECN_SND_ECE: u32 = 0x0000_0400;
    pub const ECN_USE_ECT1: u32 = 0x0000_0800;
    /// deviation: not a FreeBSD flag. The connection's SYN,ACK was sent more than once, so the
    /// ACK that completes the handshake gives no RTT sample (see `tcp_do_segment`).
    pub const SYNACK_REXMIT: u32 = 0x0001_0000;
    /// `snd_una` is so far past the ISS that checking SEG.ACK against it is redundant.
    pub const NO_ISS_CHECK: u32 = 0x0040_0000;
}

/// Options parsed from a segment (`struct tcpopt`).
#[derive(Clone, Debug, Default)]
pub struct TcpOpt {
    pub to_flags: u32,
    pub to_mss: u16,
    pub to_wscale: u8,
    pub to_tsval: u32,
    pub to_tsecr: u32,
    pub to_nsacks: u8,
    pub to_sacks: [(u32, u32); 4],
}

/// `to_flags` bits.
pub mod tof {
    pub const MSS: u32 = 0x0001;
    pub const SCALE: u32 = 0x0002;
    pub const SACKPERM: u32 = 0x0004;
    pub const TS: u32 = 0x0010;
    pub const SACK: u32 = 0x0080;
}

pub const TCP_MAXWIN: u32 = 65535;
pub const TCP_MAX_WINSHIFT: u8 = 14;

/// The explicit points through which the HydraNet-FT layer steers a connection. TCP reads
/// them in a handful of places and otherwise knows nothing of replication.
///
/// deviation: FreeBSD has no such fields; they are the hooks DESIGN.md section 4 asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct FtPoints {
    /// The highest acknowledgement this connection may send (the group's atomic point).
    pub ack_limit: Option<Seq>,
    /// The highest right window edge it may advertise (the smallest edge of the group).
    pub edge_limit: Option<Seq>,
    /// Output is generated (state advances as if sent) but never leaves the host.
    pub muted: bool,
    /// Follow the peer's echo of another replica's timestamp clock (backups).
    pub follow_ts: bool,
    /// This replica took the connection over from another that sent bytes it never sent
    /// itself: the peer's ACKs may cover them.
    pub adopted: bool,
    /// The client acknowledged bytes beyond what this (backup) service has produced yet.
    pub ack_ahead: Option<Seq>,
    /// Data is readable by the application only below this sequence number (the order the
    /// group agreed on); `None`: everything received is readable.
    pub read_limit: Option<Seq>,
    /// Sequence number of the next byte the application reads.
    pub rcv_read: Seq,
}

/// FreeBSD sets `snd_cwnd` (and sometimes `snd_nxt`) around a direct `tcp_output` call during
/// fast retransmit, partial ACKs and limited transmit, then restores them.
///
/// deviation: the core defers output to `poll_transmit`, so the temporary window is recorded
/// here; `tcp_output` uses it for its next run and applies the restore when that run ends.
#[derive(Clone, Copy, Debug)]
pub struct OutOverride {
    pub cwnd: u32,
    pub restore_cwnd: u32,
    pub restore_nxt: Option<Seq>,
    /// Limited transmit: `snd_max` before the run, to count what it sent.
    pub limited_from: Option<Seq>,
}

/// `struct tcpcb`.
#[derive(Debug)]
pub struct TcpCb {
    pub t_state: TcpState,
    pub t_flags: u32,
    pub t_flags2: u32,
    pub t_timers: TimerTable,

    pub snd_una: Seq,
    pub snd_max: Seq,
    pub snd_nxt: Seq,
    pub snd_up: Seq,
    pub snd_wl1: Seq,
    pub snd_wl2: Seq,
    pub iss: Seq,
    pub irs: Seq,

    pub rcv_nxt: Seq,
    pub rcv_adv: Seq,
    pub rcv_up: Seq,
    pub rcv_wnd: u32,

    pub snd_wnd: u32,
    pub max_sndwnd: u32,
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    pub snd_recover: Seq,

    pub snd_scale: u8,
    pub rcv_scale: u8,
    pub request_r_scale: u8,

    pub ts_recent: u32,
    pub ts_recent_age: u32,
    pub ts_offset: u32,
    pub last_ack_sent: Seq,

    pub t_maxseg: u32,
    /// The peer's offered MSS (0 until known), for TCP_INFO.
    pub t_peer_mss: u32,
    /// ms tick at which the timed segment was sent; `None` when no RTT is being timed.
    pub t_rtttime: Option<u32>,
    pub t_rtseq: Seq,
    pub t_srtt: u32,
    pub t_rttvar: u32,
    pub t_rxtcur: u32,
    pub t_rxtshift: u32,
    pub t_rttmin: u32,
    pub t_rttupdated: u32,
    pub t_rttlow: u32,
    pub t_dupacks: u32,
    pub t_rcvtime: u32,
    pub t_starttime: u32,
    pub t_softerror: Option<crate::Errno>,

    /// Spurious-retransmission undo (`t_badrxtwin` and the `_prev` copies).
    pub t_badrxtwin: u32,
    pub snd_cwnd_prev: u32,
    pub snd_ssthresh_prev: u32,
    pub snd_recover_prev: Seq,

    pub t_bytes_acked: u32,
    pub sackhint_prr_delivered: u32,

    pub t_keepinit: u32,
    pub t_keepidle: u32,
    pub t_keepintvl: u32,
    pub t_keepcnt: u32,

    /// Challenge ACK rate limiting (RFC 5961 section 7).
    pub t_challenge_ack_end: u32,
    pub t_challenge_ack_cnt: u32,

    /// Segments sent by limited transmit in this dup-ACK series (`snd_limited`).
    pub snd_limited: u32,
    /// A congestion window for the next `tcp_output` run only, and what to restore after it.
    pub t_out_override: Option<OutOverride>,
    /// Segments received that lay wholly or partly below `rcv_nxt` (per-connection
    /// `tcps_rcvduppack` + `tcps_rcvpartduppack`): a peer retransmitting.
    pub t_rcvdupsegs: u32,
    /// The `idle` decision of the output burst in progress (see `tcp_output`).
    pub t_burst_idle: Option<bool>,
    /// Sequence number of a FIN that arrived ahead of missing data (it is kept with the
    /// reassembly queue and takes effect when the hole fills).
    pub t_reass_fin: Option<Seq>,
    pub ft: FtPoints,

    pub sackblks: SackReport,
    pub snd_holes: SackScoreboard,
    pub reass: ReassQueue,
    pub cc: CcAlgorithm,
    pub cc_flags: CcFlags,
}

impl TcpCb {
    pub fn has_flag(&self, f: u32) -> bool {
        self.t_flags & f != 0
    }
    /// `IN_FASTRECOVERY`; the recovery bits live in `cc_flags`, shared with the cc framework.
    pub fn in_fastrecovery(&self) -> bool {
        self.cc_flags.in_recovery
    }
    pub fn in_congrecovery(&self) -> bool {
        self.cc_flags.in_cong_recovery
    }
    pub fn in_recovery(&self) -> bool {
        self.cc_flags.in_any_recovery()
    }
    /// Ends a pending [`OutOverride`]: restores cwnd and snd_nxt and counts limited transmit.
    pub fn finish_out_override(&mut self) {
        if let Some(o) = self.t_out_override.take() {
            self.snd_cwnd = o.restore_cwnd;
            if let Some(onxt) = o.restore_nxt {
                if crate::netinet::tcp_seq::seq_gt(onxt, self.snd_nxt) {
                    self.snd_nxt = onxt;
                }
            }
            if let Some(from) = o.limited_from {
                let sent = self.snd_max - from;
                if sent > self.t_maxseg {
                    self.snd_limited = 2;
                } else if sent > 0 {
                    self.snd_limited += 1;
                }
            }
        }
    }
    /// Whether the peer may acknowledge bytes this connection never sent, because another
    /// replica of its group sent them: it is a muted backup, or took over from one.
    pub fn ft_ack_may_lead(&self) -> bool {
        self.ft.muted || self.ft.adopted
    }
    /// The acknowledgement this connection may send: `rcv_nxt`, or less while the FT layer
    /// holds it back (every segment and reply uses this, not `rcv_nxt`).
    pub fn ack_point(&self) -> Seq {
        match self.ft.ack_limit {
            Some(l) if crate::netinet::tcp_seq::seq_lt(l, self.rcv_nxt) => l,
            _ => self.rcv_nxt,
        }
    }
    /// `tcp_maxseg`: the payload a full segment carries once the options every segment has
    /// (timestamps) are taken off `t_maxseg`.
    pub fn maxseg(&self) -> u32 {
        let opts = if self.has_flag(tf::RCVD_TSTMP) && !self.has_flag(tf::NOOPT) {
            12
        } else {
            0
        };
        self.t_maxseg.saturating_sub(opts).max(1)
    }
    /// Bytes sent and not yet acknowledged.
    pub fn flight(&self) -> u32 {
        self.snd_max - self.snd_una
    }
}
