//! The sans-IO stack: sockets, demultiplexing, timers and the output queue.
//!
//! Inputs: [`Stack::handle_packet`] (an IPv4 packet) and [`Stack::handle_timeout`]. Outputs:
//! [`Stack::poll_transmit`] (one IPv4 packet per call), [`Stack::poll_timeout`] (when to call
//! `handle_timeout` next) and [`Stack::poll_event`] (socket readiness). The socket calls
//! (`socket`, `bind`, `connect`, ...) are in [`crate::netinet::tcp_usrreq`].

use core::net::Ipv4Addr;

use managed::ManagedSlice;

use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_input::{
    keepinit, queue_reply, tcp_do_segment, tcp_dooptions, tcp_dropwithreset_reply, tcp_twcheck,
    Seg, Verdict,
};
use crate::netinet::tcp_output::{emit_reply, tcp_output, Output, ReplyQueue, TcpCtx};
use crate::netinet::tcp_seq::{seq_geq, seq_leq, Seq};
use crate::netinet::tcp_stat::{IpStat, TcpStat};
use crate::netinet::tcp_subr::{request_wscale, tcp_mss, tcp_mssopt, IsnSecret, Reply, SynOpts};
use crate::netinet::tcp_syncache::{
    syncookie_generate, syncookie_validate, CookieInfo, SynCache, SynCacheEntry,
};
use crate::netinet::tcp_sysctl::TcpSysctl;
use crate::netinet::tcp_timer::{backoff, rangeset, TimerKind, TCPTV_REXMTMAX};
use crate::netinet::tcp_var::{tf, tf2, tof, TCP_MAXWIN};
use crate::socket::socketvar::{ev, ss, QState, Socket};
use crate::time::{Duration, Instant};
use crate::wire::ipv4::{self, Ipv4Header};
use crate::wire::tcp::{self as wtcp, TcpFlags};
use crate::wire::WireError;

/// How many local addresses a stack answers for.
pub const MAX_ADDRS: usize = 8;

/// A socket as the application names it: a slot and the generation it was allocated in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SocketHandle {
    pub(crate) idx: u16,
    pub(crate) gen: u16,
}

impl SocketHandle {
    pub fn index(self) -> usize {
        self.idx as usize
    }
}

/// A readiness report from [`Stack::poll_event`]: bits from [`crate::socket::socketvar::ev`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SocketEvent {
    pub handle: SocketHandle,
    pub events: u8,
}

/// The TCP/IPv4 stack.
pub struct Stack<'a> {
    pub sysctl: TcpSysctl,
    pub tcpstat: TcpStat,
    pub ipstat: IpStat,
    pub(crate) sockets: ManagedSlice<'a, Socket<'a>>,
    pub(crate) syncache: SynCache,
    pub(crate) replies: ReplyQueue,
    addrs: heapless::Vec<Ipv4Addr, MAX_ADDRS>,
    pub(crate) mtu: u32,
    /// Bytes of outer header the path adds (IP-in-IP for fault-tolerant ports); the MSS we
    /// offer leaves room for them.
    pub(crate) encap_overhead: u32,
    pub(crate) secret: IsnSecret,
    pub(crate) rng: u64,
    pub(crate) next_qorder: u32,
    pub(crate) now: Instant,
    rr: usize,
    /// Ports that never send anything (a backup replica's): HydraNet-FT's output switch.
    silent_ports: heapless::Vec<(Ipv4Addr, u16), MAX_PORT_HOOKS>,
    /// Ports whose SYN-ACKs wait for a release (see [`SynCacheEntry::held`]).
    gated_ports: heapless::Vec<(Ipv4Addr, u16), MAX_PORT_HOOKS>,
    /// When the syncache last had to evict an entry (cookies are honoured for a while after).
    sc_last_overflow: Option<Instant>,
    /// Ports whose ISS and timestamp offset come from a key shared by a replica group.
    port_isn: heapless::Vec<(Ipv4Addr, u16, IsnSecret), MAX_PORT_HOOKS>,
}

/// How many ports can carry a silence switch or a group ISS key.
pub const MAX_PORT_HOOKS: usize = 16;
/// How far past ISS+1 a client's ACK may reach and still complete the handshake at a silent
/// replica: the largest window TCP can open (RFC 7323), so any ACK the client could send for
/// data it was really sent qualifies and a guessed one rarely does.
const SILENT_ACK_AHEAD_MAX: u32 =
    crate::netinet::tcp_var::TCP_MAXWIN << crate::netinet::tcp_var::TCP_MAX_WINSHIFT;

impl<'a> Stack<'a> {
    /// A stack over caller-provided socket slots (each with its own buffer storage).
    /// `seed` keys ISNs, timestamp offsets, cookies and port choice: give it real entropy.
    pub fn new(sockets: impl Into<ManagedSlice<'a, Socket<'a>>>, seed: [u8; 16]) -> Self {
        let mut rng = u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]) ^ 0x9e37_79b9_7f4a_7c15;
        if rng == 0 {
            rng = 1;
        }
        Stack {
            sysctl: TcpSysctl::default(),
            tcpstat: TcpStat::default(),
            ipstat: IpStat::default(),
            sockets: sockets.into(),
            syncache: SynCache::default(),
            replies: ReplyQueue::new(),
            addrs: heapless::Vec::new(),
            mtu: 1500,
            encap_overhead: 0,
            secret: IsnSecret::new(seed),
            rng,
            next_qorder: 0,
            now: Instant::ZERO,
            rr: 0,
            silent_ports: heapless::Vec::new(),
            gated_ports: heapless::Vec::new(),
            sc_last_overflow: None,
            port_isn: heapless::Vec::new(),
        }
    }

    /// A stack that allocates socket slots and buffers as sockets are created.
    #[cfg(feature = "alloc")]
    pub fn new_alloc(seed: [u8; 16]) -> Stack<'static> {
        Stack::new(alloc::vec::Vec::new(), seed)
    }

    /// Adds an address this stack answers for. `ENOSPC` when the table is full.
    pub fn add_address(&mut self, addr: Ipv4Addr) -> Result<(), crate::Errno> {
        if self.addrs.contains(&addr) {
            return Ok(());
        }
        self.addrs.push(addr).map_err(|_| crate::Errno::ENOSPC)
    }
    pub fn remove_address(&mut self, addr: Ipv4Addr) {
        self.addrs.retain(|a| *a != addr);
    }
    pub fn addresses(&self) -> &[Ipv4Addr] {
        &self.addrs
    }
    pub fn is_local(&self, addr: Ipv4Addr) -> bool {
        self.addrs.contains(&addr)
    }
    /// The interface MTU (for the MSS we offer and accept).
    pub fn set_mtu(&mut self, mtu: u32) {
        self.mtu = mtu.clamp(68, 65535);
    }
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
    /// Outer-header bytes the path adds (e.g. 20 for IP-in-IP).
    pub fn set_encap_overhead(&mut self, bytes: u32) {
        self.encap_overhead = bytes.min(self.mtu / 2);
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        // xorshift64*: only used to spread ephemeral ports; security comes from the keyed hashes.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn ctx_parts(
        &mut self,
        now: Instant,
    ) -> (TcpCtx<'_>, &mut ManagedSlice<'a, Socket<'a>>) {
        let ctx = TcpCtx {
            cfg: &self.sysctl,
            stat: &mut self.tcpstat,
            now,
            mtu: self.mtu,
            encap_overhead: self.encap_overhead,
            replies: &mut self.replies,
        };
        (ctx, &mut self.sockets)
    }

    // ---------------------------------------------------------------- input

    /// `ip_input` + `tcp_input`: one IPv4 packet from the network. Anything malformed or not
    /// for us is counted in `ipstat`/`tcpstat` and dropped.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.now = now;
        self.ipstat.total += 1;
        let (ip, payload) = match Ipv4Header::parse(packet) {
            Ok(x) => x,
            Err(e) => {
                match e {
                    WireError::Truncated => self.ipstat.tooshort += 1,
                    WireError::BadVersion => self.ipstat.badvers += 1,
                    WireError::BadHeaderLength => self.ipstat.badhlen += 1,
                    WireError::BadChecksum => self.ipstat.badsum += 1,
                    WireError::Fragmented => self.ipstat.fragments += 1,
                    _ => self.ipstat.badlen += 1,
                }
                return;
            }
        };
        if !self.is_local(ip.dst) {
            self.ipstat.notmember += 1;
            return;
        }
        if ip.protocol != ipv4::PROTO_TCP {
            self.ipstat.noproto += 1;
            return;
        }
        self.ipstat.delivered += 1;
        self.tcpstat.rcvtotal += 1;
        let tcp = match wtcp::parse_segment(payload, ip.src, ip.dst, true) {
            Ok(t) => t,
            Err(WireError::BadChecksum) => {
                self.tcpstat.rcvbadsum += 1;
                return;
            }
            Err(WireError::BadDataOffset) => {
                self.tcpstat.rcvbadoff += 1;
                return;
            }
            Err(_) => {
                self.tcpstat.rcvshort += 1;
                return;
            }
        };
        let seg = Seg {
            src: ip.src,
            dst: ip.dst,
            sport: tcp.header.src_port,
            dport: tcp.header.dst_port,
            th_seq: Seq(tcp.header.seq),
            th_ack: Seq(tcp.header.ack),
            th_flags: tcp.header.flags,
            th_win: tcp.header.window,
            options: tcp.options,
            data: tcp.payload,
            ecn: ip.ecn(),
        };
        self.tcp_input(now, &seg);
    }

    fn tcp_input(&mut self, now: Instant, seg: &Seg<'_>) {
        let thflags = seg.th_flags;
        if seg.src.is_broadcast() || seg.src.is_multicast() || seg.sport == 0 || seg.dport == 0 {
            return;
        }
        if thflags.contains(TcpFlags::SYN)
            && thflags.contains(TcpFlags::FIN)
            && self.sysctl.drop_synfin
        {
            self.tcpstat.badsyn += 1;
            return;
        }
        // Exact 4-tuple first, then a listener.
        if let Some(i) = self.lookup_conn(seg.dst, seg.dport, seg.src, seg.sport) {
            let state = self.sockets[i].tp.t_state;
            if state == TcpState::TimeWait {
                let (mut ctx, socks) = self.ctx_parts(now);
                let reopen = tcp_twcheck(&mut socks[i], seg, &mut ctx);
                self.reap(i);
                if !reopen {
                    return;
                }
            } else {
                let (mut ctx, socks) = self.ctx_parts(now);
                let verdict = tcp_do_segment(&mut socks[i], seg, &mut ctx);
                if verdict == Verdict::DropWithReset {
                    self.dropwithreset(seg);
                }
                self.after_input(i);
                return;
            }
        }
        let Some(l) = self.lookup_listener(seg.dst, seg.dport) else {
            self.tcpstat.noport += 1;
            self.closed_port(seg);
            return;
        };
        self.listen_input(now, l, seg);
    }

    /// A segment for a port nobody listens on: RST unless blackholed.
    fn closed_port(&mut self, seg: &Seg<'_>) {
        let bh = self.sysctl.blackhole;
        if bh == 2 || (bh == 1 && seg.th_flags.contains(TcpFlags::SYN)) {
            return;
        }
        self.dropwithreset(seg);
    }

    fn dropwithreset(&mut self, seg: &Seg<'_>) {
        if let Some(r) = tcp_dropwithreset_reply(seg) {
            if self.replies.push_back(r).is_err() {
                self.tcpstat.sndreplydrop += 1;
            }
        }
    }

    /// `tcp_input`'s LISTEN handling: the syncache decides.
    fn listen_input(&mut self, now: Instant, l: usize, seg: &Seg<'_>) {
        let thflags = seg.th_flags;
        let to = tcp_dooptions(seg.options, thflags.contains(TcpFlags::SYN));
        if thflags.contains(TcpFlags::RST) {
            self.syncache_chkrst(seg);
            return;
        }
        if thflags.contains(TcpFlags::ACK) && !thflags.contains(TcpFlags::SYN) {
            match self.syncache_expand(now, l, seg, &to) {
                Expand::Socket(i) => {
                    let (mut ctx, socks) = self.ctx_parts(now);
                    let verdict = tcp_do_segment(&mut socks[i], seg, &mut ctx);
                    if verdict == Verdict::DropWithReset {
                        self.dropwithreset(seg);
                    }
                    self.after_input(i);
                }
                Expand::Reset => {
                    self.tcpstat.sc_badack += 1;
                    self.dropwithreset(seg);
                }
                Expand::Dropped => {}
            }
            return;
        }
        if !thflags.contains(TcpFlags::SYN) {
            self.tcpstat.listendrop += 1;
            return;
        }
        if thflags.contains(TcpFlags::ACK) {
            // deviation: FreeBSD's tcp_input answers a SYN-ACK to a listener with a RST that
            // badport_bandlim suppresses; the suite expects silence, so count and drop.
            self.tcpstat.badsyn += 1;
            return;
        }
        if seg.dst.is_broadcast()
            || seg.dst.is_multicast()
            || seg.src == seg.dst && seg.sport == seg.dport
        {
            self.tcpstat.badsyn += 1;
            return;
        }
        self.syncache_add(now, l, seg, &to);
    }

    fn listener_id(&self, l: usize) -> (u16, u16) {
        (l as u16, self.sockets[l].generation)
    }

    /// `syncache_add`: remember the SYN and answer with a SYN-ACK.
    fn syncache_add(
        &mut self,
        now: Instant,
        l: usize,
        seg: &Seg<'_>,
        to: &crate::netinet::tcp_var::TcpOpt,
    ) {
        let lid = self.listener_id(l);
        if let Some(i) = self.syncache.find(seg.dst, seg.dport, seg.src, seg.sport) {
            // A retransmitted SYN: answer again from the same entry.
            self.tcpstat.sc_dupsyn += 1;
            let e = &mut self.syncache.entries[i];
            if let Some(ts) = e.ts_reflect.as_mut() {
                if to.to_flags & tof::TS != 0 {
                    *ts = to.to_tsval;
                }
            }
            e.rxmits = 0;
            e.rxttime = now + Duration::from_millis(self.sysctl.rexmit_initial as u64);
            e.rxmits += 1;
            if e.held {
                return;
            }
            let r = self.synack_reply(&self.syncache.entries[i].clone(), now);
            queue_syn_reply(self, r);
            return;
        }
        let lso = &self.sockets[l];
        let noopt = lso.tp.has_flag(tf::NOOPT);
        let cfg = &self.sysctl;
        let ts_reflect = if !noopt && cfg.do_rfc1323_ts() && to.to_flags & tof::TS != 0 {
            Some(to.to_tsval)
        } else {
            None
        };
        let wscale = if !noopt && cfg.do_rfc1323_scale() && to.to_flags & tof::SCALE != 0 {
            Some((to.to_wscale, request_wscale(cfg)))
        } else {
            None
        };
        let sack = !noopt && cfg.sack_enable && to.to_flags & tof::SACKPERM != 0;
        let ecn = cfg.ecn_enable != 0
            && seg.th_flags.contains(TcpFlags::ECE)
            && seg.th_flags.contains(TcpFlags::CWR);
        let wnd = lso.so_rcv.hiwat().min(TCP_MAXWIN);
        let peer_mss = if to.to_flags & tof::MSS != 0 {
            to.to_mss
        } else {
            0
        };
        let group_key = self.port_isn_key(seg.dst, seg.dport).cloned();
        let ts_offset = match &group_key {
            Some(k) => k.ts_offset(seg.dst, seg.dport, seg.src, seg.sport),
            None => self
                .secret
                .ts_offset(seg.dst, seg.dport, seg.src, seg.sport),
        };
        let iss = if let Some(k) = &group_key {
            // Every replica of the port computes the same ISS from the same SYN.
            k.isn_stable(seg.dst, seg.dport, seg.src, seg.sport, seg.th_seq)
        } else if self.sysctl.syncookies {
            syncookie_generate(
                &self.secret,
                now,
                seg.dst,
                seg.dport,
                seg.src,
                seg.sport,
                seg.th_seq,
                CookieInfo {
                    mss: if peer_mss == 0 {
                        self.sysctl.mssdflt as u16
                    } else {
                        peer_mss
                    },
                    peer_wscale: wscale.map(|w| w.0),
                    sack,
                },
            )
        } else {
            self.secret
                .isn(now.total_micros(), seg.dst, seg.dport, seg.src, seg.sport)
        };
        let entry = SynCacheEntry {
            laddr: seg.dst,
            lport: seg.dport,
            faddr: seg.src,
            fport: seg.sport,
            listener: lid,
            irs: seg.th_seq,
            iss,
            ts_reflect,
            ts_offset,
            peer_mss,
            wscale,
            sack,
            ecn,
            noopt,
            wnd,
            rxmits: 1,
            rxttime: now + Duration::from_millis(self.sysctl.rexmit_initial as u64),
            age: 0,
            held: self.gated_ports.contains(&(seg.dst, seg.dport)),
        };
        let held = entry.held;
        let r = self.synack_reply(&entry, now);
        if group_key.is_some() || !(self.sysctl.syncookies && self.sysctl.syncookies_only) {
            if self.syncache.insert(entry) {
                self.tcpstat.sc_bucketoverflow += 1;
                self.sc_last_overflow = Some(now);
            }
            self.tcpstat.sc_added += 1;
        } else {
            self.tcpstat.sc_sendcookie += 1;
        }
        if !held {
            queue_syn_reply(self, r);
        }
    }

    fn synack_reply(&self, e: &SynCacheEntry, now: Instant) -> Reply {
        let mss = tcp_mssopt(self.mtu, self.encap_overhead).min(65535) as u16;
        let mut flags = TcpFlags::SYN | TcpFlags::ACK;
        if e.ecn {
            flags |= TcpFlags::ECE;
        }
        Reply {
            src: e.laddr,
            dst: e.faddr,
            sport: e.lport,
            dport: e.fport,
            seq: e.iss,
            ack: e.irs + 1,
            flags,
            win: e.wnd.min(TCP_MAXWIN) as u16,
            ts: e
                .ts_reflect
                .map(|ecr| (now.ticks().wrapping_add(e.ts_offset), ecr)),
            syn_opts: if e.noopt {
                None
            } else {
                Some(SynOpts {
                    mss,
                    wscale: e.wscale.map(|w| w.1),
                    sack_permitted: e.sack,
                })
            },
            ecn: 0,
        }
    }

    /// `syncache_chkrst`: a RST for a half-open connection (RFC 5961 section 3 rules).
    fn syncache_chkrst(&mut self, seg: &Seg<'_>) {
        // The ACK field of a RST is not looked at; only SYN or FIN make it bogus.
        if seg.th_flags.intersects(TcpFlags::SYN | TcpFlags::FIN) {
            return;
        }
        let Some(i) = self.syncache.find(seg.dst, seg.dport, seg.src, seg.sport) else {
            self.tcpstat.badrst += 1;
            return;
        };
        let e = &self.syncache.entries[i];
        if seq_geq(seg.th_seq, e.irs + 1) && seq_leq(seg.th_seq, e.irs + e.wnd) {
            if self.sysctl.insecure_rst || seg.th_seq == e.irs + 1 {
                self.syncache.remove(i);
                self.tcpstat.sc_reset += 1;
            } else {
                self.tcpstat.badrst += 1;
                self.tcpstat.rstchallenge += 1;
                let e = e.clone();
                let r = Reply {
                    src: e.laddr,
                    dst: e.faddr,
                    sport: e.lport,
                    dport: e.fport,
                    seq: e.iss + 1,
                    ack: e.irs + 1,
                    flags: TcpFlags::ACK,
                    win: e.wnd.min(TCP_MAXWIN) as u16,
                    ts: e
                        .ts_reflect
                        .map(|ecr| (self.now.ticks().wrapping_add(e.ts_offset), ecr)),
                    syn_opts: None,
                    ecn: 0,
                };
                queue_syn_reply(self, r);
            }
        } else {
            self.tcpstat.badrst += 1;
        }
    }

    /// `syncache_expand`: the handshake's ACK arrived; make the connection.
    fn syncache_expand(
        &mut self,
        now: Instant,
        l: usize,
        seg: &Seg<'_>,
        to: &crate::netinet::tcp_var::TcpOpt,
    ) -> Expand {
        let entry = match self.syncache.find(seg.dst, seg.dport, seg.src, seg.sport) {
            Some(i) => {
                let e = &self.syncache.entries[i];
                // deviation: a silent replica (a backup) that missed the handshake's ACK
                // meets the client's later ACKs first; they acknowledge data the primary sent
                // since (its service will produce the same bytes: the excess waits in
                // `FtPoints::ack_ahead`). FreeBSD resets; a backup would never get the
                // connection, and could not carry it if it took over.
                let ahead = self.is_silent(seg.dst, seg.dport)
                    && crate::netinet::tcp_seq::seq_gt(seg.th_ack, e.iss + 1)
                    && seg.th_ack - (e.iss + 1) < SILENT_ACK_AHEAD_MAX;
                if seg.th_ack != e.iss + 1 && !ahead {
                    return Expand::Reset;
                }
                if crate::netinet::tcp_seq::seq_leq(seg.th_seq, e.irs)
                    || crate::netinet::tcp_seq::seq_gt(seg.th_seq, e.irs + e.wnd)
                {
                    return Expand::Reset;
                }
                if e.ts_reflect.is_some()
                    && to.to_flags & tof::TS == 0
                    && !self.sysctl.tolerate_missing_ts
                {
                    return Expand::Dropped;
                }
                self.syncache.remove(i)
            }
            None => {
                // deviation: ports whose ISS is keyed for a replica group use no cookies.
                if !self.sysctl.syncookies || self.port_isn_key(seg.dst, seg.dport).is_some() {
                    return Expand::Reset;
                }
                // As FreeBSD: a cookie is honoured only in cookie-only mode or shortly after
                // the cache overflowed, so a stale ACK cannot revive a closed connection.
                let recent_overflow = self.sc_last_overflow.is_some_and(|t| {
                    now.saturating_duration_since(t)
                        <= Duration::from_millis(2 * crate::netinet::tcp_syncache::COOKIE_EPOCH_MS)
                });
                if !self.sysctl.syncookies_only && !recent_overflow {
                    return Expand::Reset;
                }
                let irs = seg.th_seq - 1;
                let cookie = seg.th_ack - 1;
                let Some(info) = syncookie_validate(
                    &self.secret,
                    now,
                    seg.dst,
                    seg.dport,
                    seg.src,
                    seg.sport,
                    irs,
                    cookie,
                ) else {
                    self.tcpstat.sc_failcookie += 1;
                    return Expand::Reset;
                };
                self.tcpstat.sc_recvcookie += 1;
                let lso = &self.sockets[l];
                SynCacheEntry {
                    laddr: seg.dst,
                    lport: seg.dport,
                    faddr: seg.src,
                    fport: seg.sport,
                    listener: self.listener_id(l),
                    irs,
                    iss: cookie,
                    // deviation: FreeBSD can rebuild timestamps from the ACK's echo; the core's
                    // cookie connections run without them.
                    ts_reflect: None,
                    ts_offset: 0,
                    peer_mss: info.mss,
                    wscale: info.peer_wscale.map(|w| (w, request_wscale(&self.sysctl))),
                    sack: info.sack,
                    ecn: false,
                    noopt: lso.tp.has_flag(tf::NOOPT),
                    wnd: lso.so_rcv.hiwat().min(TCP_MAXWIN),
                    rxmits: 0,
                    rxttime: now,
                    age: 0,
                    held: false,
                }
            }
        };
        // sonewconn: is there room in the listen queue?
        let qlen = self.queue_len(l);
        let qlimit = self.sockets[l].so_qlimit as usize;
        if qlen > 3 * qlimit / 2 {
            self.tcpstat.listendrop += 1;
            self.tcpstat.sc_aborted += 1;
            return Expand::Dropped;
        }
        let Some(i) = self.alloc_socket() else {
            self.tcpstat.nopcbmem += 1;
            self.tcpstat.sc_aborted += 1;
            return Expand::Dropped;
        };
        self.tcpstat.sc_completed += 1;
        self.syncache_socket(now, l, i, &entry);
        Expand::Socket(i)
    }

    /// `syncache_socket`: a new socket in SYN_RECEIVED, inheriting the listener's settings.
    fn syncache_socket(&mut self, now: Instant, l: usize, i: usize, e: &SynCacheEntry) {
        let (lrcv, lsnd, lopts, lflags, lkeep, lrcv_user, lsnd_user, lgen) = {
            let ls = &self.sockets[l];
            (
                ls.so_rcv.hiwat(),
                ls.so_snd.hiwat(),
                ls.so_options,
                ls.tp.t_flags,
                (
                    ls.tp.t_keepinit,
                    ls.tp.t_keepidle,
                    ls.tp.t_keepintvl,
                    ls.tp.t_keepcnt,
                ),
                ls.so_rcv_user,
                ls.so_snd_user,
                ls.generation,
            )
        };
        let _ = lgen;
        let cfg = self.sysctl.clone();
        let (mtu, encap) = (self.mtu, self.encap_overhead);
        let silent = self.is_silent(e.laddr, e.lport);
        let so = &mut self.sockets[i];
        so.so_rcv.reserve(lrcv);
        so.so_snd.reserve(lsnd);
        so.so_rcv_user = lrcv_user;
        so.so_snd_user = lsnd_user;
        so.so_options = lopts & !crate::socket::socketvar::so::ACCEPTCONN;
        so.so_state |= ss::NOFDREF;
        so.so_qstate = QState::Incomplete { head: l as u16 };
        so.inp.laddr = e.laddr;
        so.inp.lport = e.lport;
        so.inp.faddr = e.faddr;
        so.inp.fport = e.fport;
        let tp = &mut so.tp;
        tp.t_state = TcpState::SynReceived;
        tp.iss = e.iss;
        tp.irs = e.irs;
        tp.rcv_nxt = e.irs + 1;
        tp.rcv_adv = tp.rcv_nxt;
        tp.snd_una = e.iss;
        tp.snd_nxt = e.iss + 1;
        tp.snd_max = e.iss + 1;
        tp.snd_up = e.iss;
        tp.snd_recover = e.iss;
        tp.snd_wl1 = e.irs;
        tp.rcv_up = e.irs + 1;
        tp.rcv_wnd = e.wnd;
        tp.rcv_adv += tp.rcv_wnd;
        tp.last_ack_sent = tp.rcv_nxt;
        tp.t_flags = lflags & (tf::NOPUSH | tf::NODELAY);
        if e.noopt {
            tp.t_flags |= tf::NOOPT;
        } else {
            if let Some((peer, ours)) = e.wscale {
                tp.t_flags |= tf::REQ_SCALE | tf::RCVD_SCALE;
                tp.snd_scale = peer;
                tp.request_r_scale = ours;
            }
            if let Some(ts) = e.ts_reflect {
                tp.t_flags |= tf::REQ_TSTMP | tf::RCVD_TSTMP;
                tp.ts_recent = ts;
                tp.ts_recent_age = now.ticks();
                tp.ts_offset = e.ts_offset;
            }
            if e.sack {
                tp.t_flags |= tf::SACK_PERMIT;
            }
        }
        if e.ecn {
            tp.t_flags2 |= tf2::ECN_PERMIT;
        }
        tp.t_keepinit = lkeep.0;
        tp.t_keepidle = lkeep.1;
        tp.t_keepintvl = lkeep.2;
        tp.t_keepcnt = lkeep.3;
        tp.t_rcvtime = now.ticks();
        tcp_mss(so, &cfg, mtu, encap, e.peer_mss as u32);
        if e.rxmits > 1 {
            // As syncache_socket: a SYN,ACK that had to be sent again starts the connection with
            // one segment of congestion window (rxmits counts every transmission).
            so.tp.snd_cwnd = 1;
            so.tp.t_flags2 |= tf2::SYNACK_REXMIT;
        }
        if silent {
            // Its segments never leave, and its timestamps follow the primary's clock, from
            // the ACK that completes the handshake on.
            so.tp.ft.muted = true;
            so.tp.ft.follow_ts = true;
        }
        let t = keepinit(so, &cfg);
        so.tp.t_timers.activate(TimerKind::Keep, now, t);
    }

    /// Sockets queued on listener `l` (complete and incomplete).
    pub(crate) fn queue_len(&self, l: usize) -> usize {
        self.sockets
            .iter()
            .filter(|s| {
                s.in_use
                    && match s.so_qstate {
                        QState::Incomplete { head } => head as usize == l,
                        QState::Complete { head, .. } => head as usize == l,
                        QState::None => false,
                    }
            })
            .count()
    }

    /// Bookkeeping after a segment or timer touched socket `i`.
    pub(crate) fn after_input(&mut self, i: usize) {
        let so = &mut self.sockets[i];
        if let QState::Incomplete { head } = so.so_qstate {
            if so.so_state & ss::ISCONNECTED != 0 {
                so.so_qstate = QState::Complete {
                    head,
                    order: self.next_qorder,
                };
                self.next_qorder = self.next_qorder.wrapping_add(1);
                if let Some(h) = self.sockets.get_mut(head as usize) {
                    h.events |= ev::ACCEPTABLE | ev::READABLE;
                }
            }
        }
        self.reap(i);
    }

    /// Frees socket `i` when its connection is over and no handle refers to it.
    pub(crate) fn reap(&mut self, i: usize) {
        let so = &mut self.sockets[i];
        if so.in_use && so.tp.t_state == TcpState::Closed && !so.has_fd() && !so.is_listening() {
            so.detach();
        }
    }

    pub(crate) fn lookup_conn(
        &self,
        laddr: Ipv4Addr,
        lport: u16,
        faddr: Ipv4Addr,
        fport: u16,
    ) -> Option<usize> {
        self.sockets.iter().position(|s| {
            s.in_use
                && !s.is_listening()
                && s.tp.t_state != TcpState::Closed
                && s.inp.lport == lport
                && s.inp.fport == fport
                && s.inp.faddr == faddr
                && s.inp.laddr == laddr
        })
    }

    pub(crate) fn lookup_listener(&self, laddr: Ipv4Addr, lport: u16) -> Option<usize> {
        let mut wild = None;
        for (i, s) in self.sockets.iter().enumerate() {
            if s.in_use && s.is_listening() && s.inp.lport == lport {
                if s.inp.laddr == laddr {
                    return Some(i);
                }
                if s.inp.laddr == Ipv4Addr::UNSPECIFIED {
                    wild = Some(i);
                }
            }
        }
        wild
    }

    // ---------------------------------------------------------------- timers

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let socks = self
            .sockets
            .iter()
            .filter(|s| s.in_use)
            .filter_map(|s| s.tp.t_timers.next());
        socks.chain(self.syncache.next_timeout()).min()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for i in 0..self.sockets.len() {
            // A timer routine may arm another timer already due (a zero-length one); bound the
            // loop so a misconfiguration cannot spin.
            for _ in 0..8 {
                if !self.sockets[i].in_use {
                    break;
                }
                let Some(kind) = self.sockets[i].tp.t_timers.take_due(now) else {
                    break;
                };
                let (mut ctx, socks) = self.ctx_parts(now);
                crate::netinet::tcp_timer::tcp_timer_fire(&mut socks[i], &mut ctx, kind);
                self.reap(i);
            }
        }
        self.syncache_timer(now);
    }

    /// `syncache_timer`: retransmit SYN-ACKs, expire entries past the retry limit.
    fn syncache_timer(&mut self, now: Instant) {
        let limit = self.sysctl.syncache_rexmtlimit;
        let mut i = 0;
        while i < self.syncache.entries.len() {
            if self.syncache.entries[i].rxttime > now {
                i += 1;
                continue;
            }
            if self.syncache.entries[i].rxmits > limit {
                self.syncache.remove(i);
                self.tcpstat.sc_stale += 1;
                continue;
            }
            let e = self.syncache.entries[i].clone();
            // A held entry ages as if it answered, so one whose release never comes expires.
            if !e.held {
                let r = self.synack_reply(&e, now);
                queue_syn_reply(self, r);
                self.tcpstat.sc_retransmitted += 1;
            }
            let cfg = &self.sysctl;
            let rexmt = rangeset(
                cfg.rexmit_initial.saturating_mul(backoff(e.rxmits)),
                cfg.rexmit_slop,
                cfg.rexmit_min,
                TCPTV_REXMTMAX,
            );
            let ent = &mut self.syncache.entries[i];
            ent.rxttime = now + Duration::from_millis(rexmt as u64);
            ent.rxmits += 1;
            i += 1;
        }
    }

    // ---------------------------------------------------------------- output

    /// The next packet to send, written into `buf`; its length, or `None` when nothing is due.
    /// Call until it returns `None` after every `handle_*` and socket call.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.now = now;
        // Suppressed output (silent ports) loops here instead of returning a packet.
        loop {
            match self.poll_transmit_once(now, buf) {
                Poll::Packet(n) => return Some(n),
                Poll::Again => continue,
                Poll::Idle => return None,
            }
        }
    }

    fn poll_transmit_once(&mut self, now: Instant, buf: &mut [u8]) -> Poll {
        while let Some(r) = self.replies.pop_front() {
            if self.is_silent(r.src, r.sport) {
                self.tcpstat.sndmuted += 1;
                continue;
            }
            if let Some(n) = emit_reply(&r, self.mtu, buf) {
                self.tcpstat.sndtotal += 1;
                return Poll::Packet(n);
            }
            self.tcpstat.sndreplydrop += 1;
        }
        let n = self.sockets.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            if !self.sockets[i].in_use || !self.sockets[i].output_wanted {
                continue;
            }
            let (mut ctx, socks) = self.ctx_parts(now);
            match tcp_output(&mut socks[i], &mut ctx, buf) {
                Output::Sent { len, more } => {
                    let so = &self.sockets[i];
                    if so.tp.ft.muted || self.is_silent(so.inp.laddr, so.inp.lport) {
                        // Generated (the connection's state moved as if it was sent), then
                        // suppressed: a backup keeps its output to itself.
                        self.tcpstat.sndmuted += 1;
                        self.sockets[i].output_wanted = more;
                        return Poll::Again;
                    }
                    // FreeBSD's `tcp_output` runs once per event and loops (`goto again`) only
                    // while `sendalot`. Calling it again after its last segment is not
                    // harmless: in SYN_RECEIVED (a syncache socket, no TF_NEEDSYN) every call
                    // sends the SYN,ACK again, so one dropped-after-ACK segment or one
                    // retransmission timeout made `poll_transmit` emit SYN,ACKs for ever.
                    self.sockets[i].output_wanted = more;
                    self.rr = i;
                    return Poll::Packet(len);
                }
                Output::Nothing => {
                    self.sockets[i].output_wanted = false;
                    self.reap(i);
                    // A reply (e.g. a RST from a drop) may have been queued.
                    if !self.replies.is_empty() {
                        return Poll::Again;
                    }
                }
            }
        }
        Poll::Idle
    }

    /// The next socket with readiness to report.
    pub fn poll_event(&mut self) -> Option<SocketEvent> {
        for (i, s) in self.sockets.iter_mut().enumerate() {
            if s.in_use && s.events != 0 && s.has_fd() {
                let events = core::mem::take(&mut s.events);
                return Some(SocketEvent {
                    handle: SocketHandle {
                        idx: i as u16,
                        gen: s.generation,
                    },
                    events,
                });
            }
        }
        None
    }

    /// Queues a connectionless reply (used by layers beside TCP).
    pub(crate) fn queue(&mut self, r: Reply) {
        let (mut ctx, _) = self.ctx_parts(self.now);
        queue_reply(&mut ctx, r);
    }
}

/// One endpoint as `netstat`/`sockstat` list it (`net.inet.tcp.pcblist`), syncache entries
/// included as SYN_RCVD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PcbEntry {
    pub laddr: Ipv4Addr,
    pub lport: u16,
    pub faddr: Ipv4Addr,
    pub fport: u16,
    pub state: TcpState,
    /// A user handle refers to it (false for syncache entries and closed sockets).
    pub has_handle: bool,
    /// The socket's handle, when it has one.
    pub handle: Option<SocketHandle>,
}

impl Stack<'_> {
    /// Every TCP endpoint, like FreeBSD's `net.inet.tcp.pcblist`.
    pub fn pcblist(&self) -> impl Iterator<Item = PcbEntry> + '_ {
        let socks = self
            .sockets
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_use)
            .map(|(i, s)| PcbEntry {
                laddr: s.inp.laddr,
                lport: s.inp.lport,
                faddr: s.inp.faddr,
                fport: s.inp.fport,
                state: s.tp.t_state,
                has_handle: s.has_fd(),
                handle: s.has_fd().then_some(SocketHandle {
                    idx: i as u16,
                    gen: s.generation,
                }),
            });
        let sc = self.syncache.entries.iter().map(|e| PcbEntry {
            laddr: e.laddr,
            lport: e.lport,
            faddr: e.faddr,
            fport: e.fport,
            state: TcpState::SynReceived,
            has_handle: false,
            handle: None,
        });
        socks.chain(sc)
    }

    /// `tcpdrop -s STATE`: drops every connection in `state` (TIME_WAIT ones silently, others
    /// with a RST and ECONNABORTED). Returns how many.
    pub fn drop_state(&mut self, now: Instant, state: TcpState) -> usize {
        let mut n = 0;
        for i in 0..self.sockets.len() {
            let s = &self.sockets[i];
            if !s.in_use || s.is_listening() || s.tp.t_state != state {
                continue;
            }
            let (mut ctx, socks) = self.ctx_parts(now);
            if state == TcpState::TimeWait {
                crate::netinet::tcp_input::tcp_close(&mut socks[i], &mut ctx);
            } else {
                crate::netinet::tcp_input::tcp_drop(
                    &mut socks[i],
                    &mut ctx,
                    Some(crate::Errno::ECONNABORTED),
                );
            }
            self.reap(i);
            n += 1;
        }
        n
    }
}

impl Stack<'_> {
    /// HydraNet-FT's output switch: nothing is ever transmitted from `addr:port` while set
    /// (connections still run, their segments are generated and dropped).
    pub fn set_port_silent(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        silent: bool,
    ) -> Result<(), crate::Errno> {
        self.silent_ports.retain(|p| *p != (addr, port));
        if silent {
            self.silent_ports
                .push((addr, port))
                .map_err(|_| crate::Errno::ENOSPC)?;
        }
        Ok(())
    }
    pub fn is_silent(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.silent_ports.contains(&(addr, port))
    }

    /// HydraNet-FT's SYN gate: while on, a SYN to `addr:port` makes a held syncache entry
    /// whose SYN-ACK leaves only on [`Stack::syncache_release`]. Turning it on holds the
    /// entries already there (a new primary does not know that its backups hold them);
    /// turning it off lets them answer on their next retransmission.
    pub fn set_port_synack_gate(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        on: bool,
    ) -> Result<(), crate::Errno> {
        self.gated_ports.retain(|p| *p != (addr, port));
        if on {
            self.gated_ports
                .push((addr, port))
                .map_err(|_| crate::Errno::ENOSPC)?;
        }
        for e in self.syncache.entries.iter_mut() {
            if e.laddr == addr && e.lport == port {
                e.held = on;
            }
        }
        Ok(())
    }

    /// Half-open connections to `addr:port`: (peer address, peer port, the peer's ISN, held).
    pub fn syncache_entries(
        &self,
        addr: Ipv4Addr,
        port: u16,
    ) -> impl Iterator<Item = (Ipv4Addr, u16, Seq, bool)> + '_ {
        self.syncache
            .entries
            .iter()
            .filter(move |e| e.laddr == addr && e.lport == port)
            .map(|e| (e.faddr, e.fport, e.irs, e.held))
    }

    /// Lets a held half-open connection answer: its SYN-ACK leaves now, and its
    /// retransmissions start afresh. Returns whether such an entry was held.
    pub fn syncache_release(
        &mut self,
        now: Instant,
        laddr: Ipv4Addr,
        lport: u16,
        faddr: Ipv4Addr,
        fport: u16,
    ) -> bool {
        let Some(i) = self.syncache.find(laddr, lport, faddr, fport) else {
            return false;
        };
        let initial = self.sysctl.rexmit_initial as u64;
        let e = &mut self.syncache.entries[i];
        if !e.held {
            return false;
        }
        e.held = false;
        e.rxmits = 1;
        e.rxttime = now + Duration::from_millis(initial);
        let r = self.synack_reply(&self.syncache.entries[i].clone(), now);
        queue_syn_reply(self, r);
        true
    }
    /// HydraNet-FT's ISS adoption: connections accepted on `addr:port` take their ISS and
    /// timestamp offset from `key`, so every replica sharing the key agrees on them.
    pub fn set_port_isn_key(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        key: Option<[u8; 16]>,
    ) -> Result<(), crate::Errno> {
        self.port_isn.retain(|p| (p.0, p.1) != (addr, port));
        if let Some(k) = key {
            self.port_isn
                .push((addr, port, IsnSecret::new(k)))
                .map_err(|_| crate::Errno::ENOSPC)?;
        }
        Ok(())
    }
    fn port_isn_key(&self, addr: Ipv4Addr, port: u16) -> Option<&IsnSecret> {
        self.port_isn
            .iter()
            .find(|p| p.0 == addr && p.1 == port)
            .map(|p| &p.2)
    }

    /// HydraNet-FT's refusal of a connection its group cannot replicate (the group's table of
    /// connections is full): it is dropped with a RST, as FreeBSD drops a connection whose
    /// socket it cannot create (`net.inet.tcp.syncache.rst_on_sock_fail`).
    pub(crate) fn ft_refuse(&mut self, now: Instant, idx: usize) {
        match self.sockets.get(idx) {
            Some(s) if s.in_use && !s.is_listening() => {}
            _ => return,
        }
        let (mut ctx, socks) = self.ctx_parts(now);
        crate::netinet::tcp_input::tcp_drop(
            &mut socks[idx],
            &mut ctx,
            Some(crate::Errno::ECONNABORTED),
        );
        self.reap(idx);
    }

    /// HydraNet-FT's takeover entry: the connection in slot `idx` starts speaking for the
    /// group. It acknowledges at once, retransmits from `snd_una`, restarts congestion
    /// control, and moves its timestamp clock forward by `ts_bump_ms` so TSval never goes
    /// backwards for the peer.
    pub(crate) fn tcp_takeover(&mut self, idx: usize, now: Instant, ts_bump_ms: u32) {
        let cfg = self.sysctl.clone();
        let so = &mut self.sockets[idx];
        let tp = &mut so.tp;
        tp.ft.muted = false;
        tp.ft.follow_ts = false;
        tp.ft.adopted = true;
        tp.ts_offset = tp.ts_offset.wrapping_add(ts_bump_ms);
        // What the client acknowledged beyond this replica's own output is no longer owed:
        // retransmitting starts after it (the rest waits for the service, as before).
        crate::netinet::tcp_input::ft_apply_ack_ahead(so);
        let tp = &mut so.tp;
        if tp.t_state.have_established() {
            tp.snd_nxt = tp.snd_una;
            tp.t_rxtshift = 0;
            tp.t_dupacks = 0;
            tp.t_rtttime = None;
            tp.snd_holes.clear();
            tp.cc_flags = Default::default();
            tp.t_out_override = None;
            tp.snd_ssthresh =
                crate::netinet::tcp_var::TCP_MAXWIN << crate::netinet::tcp_var::TCP_MAX_WINSHIFT;
            tp.snd_cwnd = 0;
            crate::netinet::tcp_cc::cc_conn_init(tp, &cfg, now.ticks());
            tp.t_timers.stop(TimerKind::Rexmt);
            tp.t_timers.stop(TimerKind::Persist);
        }
        tp.t_flags |= tf::ACKNOW;
        so.output_wanted = true;
    }
}

fn queue_syn_reply(stack: &mut Stack<'_>, r: Reply) {
    stack.queue(r);
}

enum Poll {
    Packet(usize),
    Again,
    Idle,
}

enum Expand {
    Socket(usize),
    Reset,
    Dropped,
}

impl Stack<'_> {
    /// Whether a connection or a half-open (syncache) entry exists for the 4-tuple.
    pub fn has_pending_or_conn(
        &self,
        laddr: Ipv4Addr,
        lport: u16,
        faddr: Ipv4Addr,
        fport: u16,
    ) -> bool {
        self.lookup_conn(laddr, lport, faddr, fport).is_some()
            || self.syncache.find(laddr, lport, faddr, fport).is_some()
    }
}
