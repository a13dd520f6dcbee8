//! Connection set-up and tear-down helpers (FreeBSD `tcp_subr.c`): `newtcpcb`, ISN and
//! timestamp-offset generation, MSS negotiation, `tcp_drop`, `tcp_close` and `tcp_respond`.

use core::hash::Hasher;
use core::net::Ipv4Addr;

use siphasher::sip::SipHasher24;

use crate::netinet::cc::{CcAlgorithm, CcFlags};
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_reass::ReassQueue;
use crate::netinet::tcp_sack::{SackReport, SackScoreboard};
use crate::netinet::tcp_seq::Seq;
use crate::netinet::tcp_sysctl::{CcKind, TcpSysctl};
use crate::netinet::tcp_timer::{TimerTable, TCPTV_SRTTBASE, TCP_RTTVAR_SHIFT};
use crate::netinet::tcp_var::{tf, TcpCb, TCP_MAXWIN, TCP_MAX_WINSHIFT};
use crate::socket::socketvar::Socket;
use crate::wire::tcp::TcpFlags;
use crate::Errno;

/// IPv4 + TCP header bytes without options.
pub const TCPIP_HDR_LEN: u32 = 40;
/// The smallest MSS the stack will use whatever the peer says (FreeBSD's `tcp_mss` floor).
pub const TCP_MINMSS_FLOOR: u32 = 64;

/// `tcp_newtcpcb`: a control block with FreeBSD's initial RTT state.
pub fn newtcpcb(cfg: &TcpSysctl) -> TcpCb {
    let mut t_flags = 0;
    if cfg.do_rfc1323_scale() {
        t_flags |= tf::REQ_SCALE;
    }
    if cfg.do_rfc1323_ts() {
        t_flags |= tf::REQ_TSTMP;
    }
    if cfg.sack_enable {
        t_flags |= tf::SACK_PERMIT;
    }
    TcpCb {
        t_state: TcpState::Closed,
        t_flags,
        t_flags2: 0,
        t_timers: TimerTable::default(),
        snd_una: Seq(0),
        snd_max: Seq(0),
        snd_nxt: Seq(0),
        snd_up: Seq(0),
        snd_wl1: Seq(0),
        snd_wl2: Seq(0),
        iss: Seq(0),
        irs: Seq(0),
        rcv_nxt: Seq(0),
        rcv_adv: Seq(0),
        rcv_up: Seq(0),
        rcv_wnd: 0,
        snd_wnd: 0,
        max_sndwnd: 0,
        // Until the handshake tells us better, the window is "infinite" (TCP_MAXWIN << 14).
        snd_cwnd: TCP_MAXWIN << TCP_MAX_WINSHIFT,
        snd_ssthresh: TCP_MAXWIN << TCP_MAX_WINSHIFT,
        snd_recover: Seq(0),
        snd_scale: 0,
        rcv_scale: 0,
        request_r_scale: 0,
        ts_recent: 0,
        ts_recent_age: 0,
        ts_offset: 0,
        last_ack_sent: Seq(0),
        t_maxseg: cfg.mssdflt,
        t_peer_mss: 0,
        t_rtttime: None,
        t_rtseq: Seq(0),
        t_srtt: TCPTV_SRTTBASE,
        t_rttvar: ((cfg.rexmit_initial - TCPTV_SRTTBASE) << TCP_RTTVAR_SHIFT) / 4,
        t_rxtcur: cfg.rexmit_initial,
        t_rxtshift: 0,
        t_rttmin: cfg.rexmit_min,
        t_rttupdated: 0,
        t_rttlow: 0,
        t_dupacks: 0,
        t_rcvtime: 0,
        t_starttime: 0,
        t_softerror: None,
        t_badrxtwin: 0,
        snd_cwnd_prev: 0,
        snd_ssthresh_prev: 0,
        snd_recover_prev: Seq(0),
        t_bytes_acked: 0,
        sackhint_prr_delivered: 0,
        t_keepinit: 0,
        t_keepidle: 0,
        t_keepintvl: 0,
        t_keepcnt: 0,
        t_challenge_ack_end: 0,
        t_challenge_ack_cnt: 0,
        snd_limited: 0,
        t_out_override: None,
        t_rcvdupsegs: 0,
        t_burst_idle: None,
        t_reass_fin: None,
        ft: crate::netinet::tcp_var::FtPoints::default(),
        sackblks: SackReport::default(),
        snd_holes: SackScoreboard::default(),
        reass: ReassQueue::default(),
        cc: match cfg.cc_algorithm {
            CcKind::NewReno => CcAlgorithm::NewReno(Default::default()),
            CcKind::Cubic => CcAlgorithm::Cubic(Default::default()),
        },
        cc_flags: CcFlags::default(),
    }
}

/// Keyed hashes for ISNs and timestamp offsets (RFC 6528, RFC 7323 section 5.4).
#[derive(Clone, Debug)]
pub struct IsnSecret {
    key0: u64,
    key1: u64,
}

impl IsnSecret {
    pub fn new(seed: [u8; 16]) -> Self {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&seed[..8]);
        b.copy_from_slice(&seed[8..]);
        IsnSecret {
            key0: u64::from_le_bytes(a),
            key1: u64::from_le_bytes(b),
        }
    }

    fn hash(&self, domain: u8, laddr: Ipv4Addr, lport: u16, faddr: Ipv4Addr, fport: u16) -> u32 {
        let mut h = SipHasher24::new_with_keys(self.key0, self.key1);
        h.write_u8(domain);
        h.write(&laddr.octets());
        h.write_u16(lport);
        h.write(&faddr.octets());
        h.write_u16(fport);
        h.finish() as u32
    }

    /// `tcp_new_isn`: RFC 6528's `ISN = M + F(localip, localport, remoteip, remoteport, secret)`
    /// with M a 4-microsecond clock, so successive connections of one 4-tuple move forward.
    pub fn isn(
        &self,
        now_us: u64,
        laddr: Ipv4Addr,
        lport: u16,
        faddr: Ipv4Addr,
        fport: u16,
    ) -> Seq {
        Seq(self
            .hash(0, laddr, lport, faddr, fport)
            .wrapping_add((now_us >> 2) as u32))
    }

    /// An ISS that depends only on the key, the connection and the peer's ISN: replicas that
    /// share the key compute the same value. The peer's ISN stands in for RFC 6528's clock
    /// term, so a new incarnation of the 4-tuple still gets a fresh ISS.
    pub fn isn_stable(
        &self,
        laddr: Ipv4Addr,
        lport: u16,
        faddr: Ipv4Addr,
        fport: u16,
        irs: Seq,
    ) -> Seq {
        let mut h = SipHasher24::new_with_keys(self.key0 ^ 0x6873_7461_626c_6521, self.key1);
        h.write(&laddr.octets());
        h.write_u16(lport);
        h.write(&faddr.octets());
        h.write_u16(fport);
        h.write_u32(irs.0);
        Seq(h.finish() as u32)
    }

    /// `tcp_new_ts_offset`: a per-4-tuple random offset so TSvals leak no host uptime.
    pub fn ts_offset(&self, laddr: Ipv4Addr, lport: u16, faddr: Ipv4Addr, fport: u16) -> u32 {
        self.hash(1, laddr, lport, faddr, fport)
    }

    /// A keyed value for SYN cookies (the MAC over the connection and a time window).
    pub fn cookie_mac(
        &self,
        laddr: Ipv4Addr,
        lport: u16,
        faddr: Ipv4Addr,
        fport: u16,
        irs: u32,
        window: u32,
    ) -> u32 {
        let mut h = SipHasher24::new_with_keys(self.key0 ^ 0x636f_6f6b_6965_2121, self.key1);
        h.write(&laddr.octets());
        h.write_u16(lport);
        h.write(&faddr.octets());
        h.write_u16(fport);
        h.write_u32(irs);
        h.write_u32(window);
        h.finish() as u32
    }
}

/// `tcp_mssopt`: the MSS we offer, from the interface MTU.
pub fn tcp_mssopt(mtu: u32, encap_overhead: u32) -> u32 {
    mtu.saturating_sub(TCPIP_HDR_LEN + encap_overhead).max(1)
}

/// The window-scale shift we request: the smallest that lets the largest permitted socket
/// buffer (`kern.ipc.maxsockbuf`) be advertised.
pub fn request_wscale(cfg: &TcpSysctl) -> u8 {
    let mut shift = 0u8;
    while shift < TCP_MAX_WINSHIFT && ((TCP_MAXWIN as u64) << shift) < cfg.maxsockbuf {
        shift += 1;
    }
    shift
}

/// `tcp_mss`: settles `t_maxseg` from our MTU and the peer's offer, then rounds both socket
/// buffers up to a whole number of segments as FreeBSD does (65536 becomes 65700 at MSS 1460).
pub fn tcp_mss(so: &mut Socket<'_>, cfg: &TcpSysctl, mtu: u32, encap_overhead: u32, offer: u32) {
    let tp = &mut so.tp;
    tp.t_peer_mss = offer;
    let offer = if offer == 0 {
        cfg.mssdflt
    } else {
        offer.max(cfg.minmss)
    };
    let mut mss = mtu
        .saturating_sub(TCPIP_HDR_LEN + encap_overhead)
        .min(offer);
    mss = mss.max(TCP_MINMSS_FLOOR);
    let sb_max = cfg.maxsockbuf.min(u32::MAX as u64) as u32;

    let hiwat = so.so_snd.hiwat();
    if hiwat < mss {
        mss = hiwat.max(1);
    } else {
        let bufsize = roundup(hiwat, mss).min(sb_max);
        if bufsize > hiwat {
            so.so_snd.reserve(bufsize);
        }
    }
    so.tp.t_maxseg = mss;

    let hiwat = so.so_rcv.hiwat();
    if hiwat >= mss {
        let bufsize = roundup(hiwat, mss).min(sb_max);
        if bufsize > hiwat {
            so.so_rcv.reserve(bufsize);
        }
    }
}

fn roundup(x: u32, m: u32) -> u32 {
    if m == 0 {
        return x;
    }
    x.div_ceil(m).saturating_mul(m)
}

/// A segment built without a connection's output path: RSTs, challenge ACKs, syncache
/// SYN-ACKs and TIME_WAIT ACKs (`tcp_respond`).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reply {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: Seq,
    pub ack: Seq,
    pub flags: TcpFlags,
    pub win: u16,
    /// (tsval, tsecr)
    pub ts: Option<(u32, u32)>,
    /// A SYN-ACK's options: MSS, window shift, SACK permitted.
    pub syn_opts: Option<SynOpts>,
    /// IP ECN codepoint bits.
    pub ecn: u8,
}

#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SynOpts {
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
}

/// The errno a dropped connection reports: a soft error seen earlier wins over ETIMEDOUT.
pub fn drop_errno(tp: &TcpCb, errno: Errno) -> Errno {
    if errno == Errno::ETIMEDOUT {
        tp.t_softerror.unwrap_or(errno)
    } else {
        errno
    }
}
