//! A HydraNet-FT host server: the TCP stack plus the fault-tolerance layer beside it.
//!
//! The layer owns the virtual hosts, the fault-tolerant ports and their replica groups, one
//! acknowledgement channel per group, and the failure detector. It steers TCP only through
//! the explicit points TCP exposes (`FtPoints` on a connection, silent ports, group ISS keys
//! and the takeover entry), so `tcp_input`/`tcp_output` read like FreeBSD's.
//!
//! Per connection, the primary acknowledges client bytes only once every live replica of the
//! group holds them (ack = the smallest `rcv_nxt` reported, window no wider than the smallest
//! edge), and only then makes them readable, announcing each step on the channel (DELIVER) so
//! that backups make the same bytes readable in the same order across connections. A step is
//! readable anywhere only once every live backup holds its announcement (the primary then
//! sends COMMIT); a new primary first re-announces what it holds uncommitted.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::ft::ackchan::{AckChanConfig, AckChannel, GroupKey, Received, MAX_PAYLOAD};
use crate::ft::msg::{ConnKey, FtMsg, MSG_LEN};
use crate::ft::params::{DetectorParams, PortMode};
use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_seq::{seq_geq, seq_gt, seq_lt, Seq};
use crate::stack::{SocketHandle, Stack};
use crate::store::{BoundedDeque, BoundedVec};
use crate::time::{Duration, Instant};
use crate::wire::{ipip, ipv4, udp};
use crate::Errno;

/// UDP port of the acknowledgement channel on host servers.
pub const ACKCHAN_PORT: u16 = 7407;
/// Virtual hosts a host server can serve.
pub const MAX_VHOSTS: usize = 8;
/// Replica groups (one per fault-tolerant port) a host server can join.
pub const MAX_GROUPS: usize = 4;
/// Replicas in one group, the local one included.
pub const MAX_REPLICAS: usize = 8;
/// Replicated connections per group.
pub const MAX_FT_CONNS: usize = 64;
/// Redirectors whose tunnelled packets are accepted.
pub const MAX_REDIRECTORS: usize = 4;
/// Deliveries waiting for the service.
pub const MAX_DELIVERIES: usize = 256;
/// How often a backup repeats an unchanged progress report.
const PROGRESS_REFRESH: Duration = Duration::from_millis(50);
/// Heartbeat flags: bit 0 "I am the primary", bit 1 "answer at once" (a probe).
const HB_PRIMARY: u8 = 1;
const HB_PROBE: u8 = 2;
/// Client retransmissions remembered for the detector.
const DUP_HISTORY: usize = 32;
/// How far a new primary moves its timestamp clock forward beyond the last value it saw
/// echoed, so the client's PAWS check never sees TSval go backwards.
pub const TAKEOVER_TS_BUMP_MS: u32 = 1000;

/// A member of a replica group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Member {
    /// 0 is the first primary; on failure the lowest live rank takes over.
    pub rank: u8,
    /// The host server's own (non-virtual) address, where its ack channel listens.
    pub addr: Ipv4Addr,
}

/// What a host knows about a replica group (`ft_group`, beside `setportopt`).
#[derive(Clone, Debug)]
pub struct GroupConfig<'c> {
    pub group_id: u32,
    /// This host's rank.
    pub local_rank: u8,
    /// Every member, this host included.
    pub members: &'c [Member],
    /// The key every member shares: it authenticates the channel and keys the ISS.
    pub key: GroupKey,
    /// Distinguishes this boot of the host from earlier ones (replay protection).
    pub incarnation: u32,
}

/// The current role of this host for a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    Primary,
    Backup,
}

/// Data of a replicated connection that became readable, in the group's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Delivery {
    pub handle: SocketHandle,
    pub upto: Seq,
}

/// Counters of the FT layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FtStats {
    pub tunneled_in: u64,
    pub tunnel_from_stranger: u64,
    pub tunnel_malformed: u64,
    pub chan_in: u64,
    pub chan_malformed: u64,
    pub chan_msgs_bad: u64,
    pub progress_sent: u64,
    pub progress_rcvd: u64,
    pub deliver_sent: u64,
    pub deliver_rcvd: u64,
    pub missing_sent: u64,
    pub missing_rcvd: u64,
    pub takeovers: u64,
    pub step_downs: u64,
    pub backups_dropped: u64,
    pub chan_queue_full: u64,
    pub deliveries_lost: u64,
    pub conns_tracked: u64,
    pub conns_table_full: u64,
    /// Client retransmissions the detector counted (a burst from one timeout counts once).
    pub client_retransmits: u64,
    /// Client retransmissions ignored while a new view settled.
    pub retransmits_settling: u64,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    rank: u8,
    addr: Ipv4Addr,
    last_heard: Option<Instant>,
    /// Declared dead by the detector (cleared when it is heard from again).
    dead: bool,
    /// When a silent peer may be probed again.
    next_probe: Instant,
}

#[derive(Clone, Copy, Debug)]
struct FtConn {
    key: ConnKey,
    idx: usize,
    gen: u16,
    /// Bit `rank`: the backups whose copy the primary waits for.
    quorum: u16,
    /// Per rank: the (rcv_nxt, edge) last reported.
    progress: [Option<(Seq, Seq)>; MAX_REPLICAS],
    /// Readable (and atomically held) below this.
    delivered: Seq,
    /// Backup: last (rcv_nxt, edge) reported to the primary.
    reported: Option<(Seq, Seq)>,
    /// When that report left: an unchanged state is repeated now and then, because the
    /// primary drops a report for a connection it does not have yet (its copy of the
    /// handshake may arrive after the backups').
    reported_at: Instant,
    last_dupsegs: u32,
}

/// Primary: a delivery announced to the backups that its own service gets once every live
/// backup has acknowledged the frame that carries the announcement.
#[derive(Clone, Copy, Debug)]
struct LocalDelivery {
    key: ConnKey,
    idx: usize,
    gen: u16,
    upto: Seq,
    /// Bit `rank`: the backups it was announced to.
    need: u16,
    /// Per rank: the ack-channel DATA frame that carries it (0: still in the outbox).
    frame: [u64; MAX_REPLICAS],
}

/// Primary: backups that reported holding a client's SYN, for a SYN-ACK still held.
#[derive(Clone, Copy, Debug)]
struct SynReport {
    key: ConnKey,
    /// The reported `rcv_nxt`: the client's ISN plus one.
    irs1: Seq,
    ranks: u16,
}

pub(crate) struct Group {
    vip: Ipv4Addr,
    port: u16,
    /// Carried for status output; the channel authenticates it on every frame.
    #[allow(dead_code)]
    group_id: u32,
    local_rank: u8,
    mode: PortMode,
    params: DetectorParams,
    role: Role,
    epoch: u32,
    primary_rank: u8,
    peers: heapless::Vec<Peer, MAX_REPLICAS>,
    chan: AckChannel,
    conns: BoundedVec<FtConn, MAX_FT_CONNS>,
    next_heartbeat: Instant,
    dup_history: BoundedDeque<Instant, DUP_HISTORY>,
    /// When this replica last entered a view (took over or adopted one): for a while after
    /// ([`quarter_window`]), client retransmissions are the new primary's recovery at work
    /// (partial ACKs while the backups report), not a sign that it died.
    view_since: Option<Instant>,
    /// DELIVER and MISSING messages waiting to be batched, per destination rank, in the order
    /// they were made (the delivery order backups must follow). PROGRESS is not queued: it is
    /// cumulative, so the latest value is encoded when a batch leaves.
    outbox: [BoundedVec<u8, MAX_PAYLOAD>; MAX_REPLICAS],
    /// Primary: deliveries announced and not yet given to the local service, in order.
    pending_local: BoundedDeque<LocalDelivery, MAX_DELIVERIES>,
    /// Primary: per rank, the latest delivery committed since that backup was last told.
    /// Cumulative like PROGRESS, so it is encoded when a batch leaves and never dropped.
    commit: [Option<(ConnKey, Seq)>; MAX_REPLICAS],
    /// Backup: deliveries announced in view `held_epoch` and not committed yet, in order.
    /// A backup that takes over announces these before anything of its own: the old primary
    /// may have applied them (it did once every backup held them), and other backups may
    /// have applied a prefix of them.
    held: BoundedDeque<(ConnKey, Seq), MAX_DELIVERIES>,
    held_epoch: u32,
    /// Primary: who holds which SYN (see [`SynReport`]).
    syn_reports: BoundedVec<SynReport, MAX_FT_CONNS>,
    /// Backup: half-open connections reported to the primary, and when.
    syn_reported: BoundedVec<(ConnKey, Seq, Instant), MAX_FT_CONNS>,
    configured: bool,
    started: Instant,
}

/// Groups hold their ack channel's buffers. With an allocator the groups and every table in
/// them live on the heap (see [`crate::store`]), so a `Host` and a `Group` stay a few KiB and can
/// be built and moved on a small stack; without one the caller places the `Host` statically.
type GroupTable = BoundedVec<Group, MAX_GROUPS>;

/// A host server: a [`Stack`] and the HydraNet-FT layer.
pub struct Host<'a> {
    pub stack: Stack<'a>,
    /// This host's own address (ack channel, tunnel endpoint).
    pub addr: Ipv4Addr,
    vhosts: heapless::Vec<Ipv4Addr, MAX_VHOSTS>,
    redirectors: heapless::Vec<Ipv4Addr, MAX_REDIRECTORS>,
    groups: GroupTable,
    deliveries: BoundedDeque<Delivery, MAX_DELIVERIES>,
    pub stats: FtStats,
    now: Instant,
}

impl<'a> Host<'a> {
    /// A host server whose own address is `addr` (added to the stack).
    pub fn new(mut stack: Stack<'a>, addr: Ipv4Addr) -> Result<Self, Errno> {
        stack.add_address(addr)?;
        Ok(Host {
            stack,
            addr,
            vhosts: heapless::Vec::new(),
            redirectors: heapless::Vec::new(),
            groups: GroupTable::new(),
            deliveries: BoundedDeque::new(),
            stats: FtStats::default(),
            now: Instant::ZERO,
        })
    }

    /// `v_host(ip)`: serve `ip` (an origin server's address) on this host. Sockets bound to it
    /// belong to the virtual host and replies carry it as source.
    /// Errors: `EINVAL` for an unspecified, broadcast or multicast address or this host's own;
    /// `EEXIST` if already served; `ENOSPC` when the table is full.
    pub fn v_host(&mut self, ip: Ipv4Addr) -> Result<(), Errno> {
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip == self.addr {
            return Err(Errno::EINVAL);
        }
        if self.vhosts.contains(&ip) {
            return Err(Errno::EEXIST);
        }
        self.vhosts.push(ip).map_err(|_| Errno::ENOSPC)?;
        if let Err(e) = self.stack.add_address(ip) {
            self.vhosts.pop();
            return Err(e);
        }
        // Client segments reach this host inside IP-in-IP: leave room for the outer header.
        self.stack.set_encap_overhead(ipip::IPIP_OVERHEAD as u32);
        Ok(())
    }

    pub fn vhosts(&self) -> &[Ipv4Addr] {
        &self.vhosts
    }

    /// Accept tunnelled client packets from `addr` (a redirector). `ENOSPC` when full.
    pub fn add_redirector(&mut self, addr: Ipv4Addr) -> Result<(), Errno> {
        if self.redirectors.contains(&addr) {
            return Ok(());
        }
        self.redirectors.push(addr).map_err(|_| Errno::ENOSPC)
    }

    /// Replica-group membership for the fault-tolerant port `vip:port`.
    /// Errors: `EADDRNOTAVAIL` when `vip` is not a virtual host here; `EINVAL` for a port of 0,
    /// a rank missing from `members`, duplicate ranks or more than [`MAX_REPLICAS`] members;
    /// `EEXIST` when the port already has a group; `ENOSPC` when the group table is full;
    /// `ENOMEM` when (with `alloc`) the heap cannot hold the group.
    pub fn ft_group(
        &mut self,
        vip: Ipv4Addr,
        port: u16,
        cfg: &GroupConfig<'_>,
    ) -> Result<(), Errno> {
        if !self.vhosts.contains(&vip) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        if port == 0 || cfg.members.len() > MAX_REPLICAS || cfg.members.is_empty() {
            return Err(Errno::EINVAL);
        }
        for (i, m) in cfg.members.iter().enumerate() {
            if m.rank as usize >= MAX_REPLICAS || cfg.members[..i].iter().any(|o| o.rank == m.rank)
            {
                return Err(Errno::EINVAL);
            }
        }
        if !cfg.members.iter().any(|m| m.rank == cfg.local_rank) {
            return Err(Errno::EINVAL);
        }
        if self.groups.iter().any(|g| g.vip == vip && g.port == port) {
            return Err(Errno::EEXIST);
        }
        if self.groups.len() >= MAX_GROUPS {
            return Err(Errno::ENOSPC);
        }
        let mut chan = AckChannel::new(
            cfg.local_rank,
            cfg.group_id,
            cfg.key,
            cfg.incarnation,
            AckChanConfig::default(),
        );
        let mut peers = heapless::Vec::new();
        for m in cfg.members.iter().filter(|m| m.rank != cfg.local_rank) {
            chan.add_peer(m.rank).map_err(|_| Errno::ENOSPC)?;
            let _ = peers.push(Peer {
                rank: m.rank,
                addr: m.addr,
                last_heard: None,
                dead: false,
                next_probe: Instant::ZERO,
            });
        }
        let mut isn_key = [0u8; 16];
        isn_key.copy_from_slice(&cfg.key[16..]);
        self.stack.set_port_isn_key(vip, port, Some(isn_key))?;
        let primary_rank = cfg.members.iter().map(|m| m.rank).min().unwrap_or(0);
        let pushed = self.groups.push(Group {
            vip,
            port,
            group_id: cfg.group_id,
            local_rank: cfg.local_rank,
            mode: PortMode::Normal,
            params: DetectorParams::default(),
            role: if cfg.local_rank == primary_rank {
                Role::Primary
            } else {
                Role::Backup
            },
            epoch: 0,
            primary_rank,
            peers,
            chan,
            conns: BoundedVec::new(),
            next_heartbeat: self.now,
            dup_history: BoundedDeque::new(),
            view_since: None,
            outbox: Default::default(),
            pending_local: BoundedDeque::new(),
            commit: [None; MAX_REPLICAS],
            held: BoundedDeque::new(),
            held_epoch: 0,
            syn_reports: BoundedVec::new(),
            syn_reported: BoundedVec::new(),
            configured: false,
            started: self.now,
        });
        if pushed.is_err() {
            // The bound was checked above: the heap is out of memory. Undo the port's key.
            self.stack.set_port_isn_key(vip, port, None)?;
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `setportopt(port, mode, detector_parameters)` on virtual host `vip`.
    /// Errors: `EADDRNOTAVAIL` (not a virtual host), `EINVAL` (bad parameters, port 0, a
    /// Primary mode on a host whose rank is not the group's lowest or Backup on the lowest),
    /// `ENOENT` (a fault-tolerant mode without `ft_group` first).
    pub fn setportopt(
        &mut self,
        vip: Ipv4Addr,
        port: u16,
        mode: PortMode,
        params: DetectorParams,
    ) -> Result<(), Errno> {
        if !self.vhosts.contains(&vip) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        if port == 0 {
            return Err(Errno::EINVAL);
        }
        let gi = self
            .groups
            .iter()
            .position(|g| g.vip == vip && g.port == port);
        if mode == PortMode::Normal {
            if let Some(i) = gi {
                self.groups.swap_remove(i);
            }
            self.stack.set_port_silent(vip, port, false)?;
            self.stack.set_port_synack_gate(vip, port, false)?;
            self.stack.set_port_isn_key(vip, port, None)?;
            return Ok(());
        }
        params.validate()?;
        let Some(i) = gi else {
            return Err(Errno::ENOENT);
        };
        let g = &mut self.groups[i];
        let lowest = g.local_rank <= g.peers.iter().map(|p| p.rank).min().unwrap_or(u8::MAX);
        match mode {
            PortMode::Primary if !lowest => return Err(Errno::EINVAL),
            PortMode::Backup if lowest => return Err(Errno::EINVAL),
            _ => {}
        }
        g.mode = mode;
        g.params = params;
        g.configured = true;
        g.started = self.now;
        g.role = if mode == PortMode::Primary {
            Role::Primary
        } else {
            Role::Backup
        };
        let silent = g.role == Role::Backup;
        self.stack.set_port_synack_gate(vip, port, !silent)?;
        self.stack.set_port_silent(vip, port, silent)
    }

    /// The role this host currently plays for `vip:port`.
    pub fn role(&self, vip: Ipv4Addr, port: u16) -> Option<Role> {
        self.groups
            .iter()
            .find(|g| g.vip == vip && g.port == port)
            .map(|g| g.role)
    }
    /// The group's view number as this host sees it.
    pub fn epoch(&self, vip: Ipv4Addr, port: u16) -> Option<u32> {
        self.groups
            .iter()
            .find(|g| g.vip == vip && g.port == port)
            .map(|g| g.epoch)
    }
    /// Ack-channel counters of the group of `vip:port`.
    pub fn chan_stats(
        &self,
        vip: Ipv4Addr,
        port: u16,
    ) -> Option<&crate::ft::ackchan::AckChanStats> {
        self.groups
            .iter()
            .find(|g| g.vip == vip && g.port == port)
            .map(|g| g.chan.stats())
    }

    /// Reads the client bytes a [`Delivery`] made readable, and no more: replicas that read
    /// delivery by delivery see identical chunks. `Ok(0)` is end of stream.
    pub fn recv_delivered(
        &mut self,
        now: Instant,
        h: SocketHandle,
        upto: Seq,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let read = self.stack.sock(h)?.tp.ft.rcv_read;
        let room = if seq_gt(upto, read) {
            (upto - read) as usize
        } else {
            0
        };
        if room == 0 {
            // Nothing of this delivery left: report end of stream only if it is there.
            let mut probe = [0u8; 0];
            return match self.stack.recv(now, h, &mut probe, 0) {
                Ok(0)
                    if self.stack.sock(h)?.tp.t_state.have_rcvd_fin()
                        && self.stack.readiness(h)?.0 == 0
                        && seq_geq(upto, self.stack.sock(h)?.tp.rcv_nxt) =>
                {
                    Ok(0)
                }
                _ => Err(Errno::EWOULDBLOCK),
            };
        }
        let n = room.min(buf.len());
        self.stack.recv(now, h, &mut buf[..n], 0)
    }

    /// The next delivery for the service, in the group's order.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    // ------------------------------------------------------------------ input

    /// One IPv4 packet from the network.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.now = now;
        let Ok((ip, payload)) = ipv4::Ipv4Header::parse(packet) else {
            self.stack.handle_packet(now, packet);
            return;
        };
        if ip.protocol == ipv4::PROTO_IPIP && ip.dst == self.addr {
            if !self.redirectors.contains(&ip.src) {
                self.stats.tunnel_from_stranger += 1;
                return;
            }
            match ipip::decapsulate(packet) {
                Ok((_, inner)) => {
                    self.stats.tunneled_in += 1;
                    self.tcp_packet(now, inner);
                }
                Err(_) => self.stats.tunnel_malformed += 1,
            }
            return;
        }
        if ip.protocol == ipv4::PROTO_UDP && ip.dst == self.addr {
            if let Ok((h, data)) = udp::parse_datagram(payload, ip.src, ip.dst, true) {
                if h.dst_port == ACKCHAN_PORT {
                    self.chan_input(now, ip.src, data);
                    return;
                }
            }
        }
        self.tcp_packet(now, packet);
    }

    fn tcp_packet(&mut self, now: Instant, packet: &[u8]) {
        if self.syn_beyond_table(packet) {
            self.stats.conns_table_full += 1;
            return;
        }
        self.stack.handle_packet(now, packet);
        self.track_connections();
        // A client retransmission is detector input: judge it now, not at the next timer,
        // which with heartbeats off may be an ack-channel RTO seconds away.
        for gi in 0..self.groups.len() {
            if self.groups[gi].configured && self.observe_retransmissions(gi, now) {
                self.detect(gi, now);
            }
        }
        self.missing_check(packet);
    }

    /// Whether `packet` is a client's SYN for a new connection on a fault-tolerant port whose
    /// group already replicates `MAX_FT_CONNS` connections. Such a SYN is dropped before the
    /// stack sees it: no half-open state, no SYN-ACK, and every replica (they see the same
    /// SYNs and hold the same connections) refuses alike. The client's SYN retransmissions
    /// get in once a connection ends.
    fn syn_beyond_table(&mut self, packet: &[u8]) -> bool {
        let Ok((ip, payload)) = ipv4::Ipv4Header::parse(packet) else {
            return false;
        };
        if ip.protocol != ipv4::PROTO_TCP {
            return false;
        }
        let (Some(p), Some(&flags)) = (payload.get(0..4), payload.get(13)) else {
            return false;
        };
        let sport = u16::from_be_bytes([p[0], p[1]]);
        let dport = u16::from_be_bytes([p[2], p[3]]);
        // SYN, and neither ACK nor RST.
        if flags & 0x16 != 0x02 {
            return false;
        }
        let Some(gi) = self
            .groups
            .iter()
            .position(|g| g.vip == ip.dst && g.port == dport && g.configured)
        else {
            return false;
        };
        // A SYN for a connection or half-open entry the stack has (a retransmission, or a
        // new incarnation of a connection in TIME_WAIT) takes no new slot.
        if self.stack.has_pending_or_conn(ip.dst, dport, ip.src, sport) {
            return false;
        }
        self.forget_closed(gi);
        // A segment the stack would drop as damaged is left to it (and its counters).
        self.groups[gi].conns.is_full()
            && crate::wire::tcp::parse_segment(payload, ip.src, ip.dst, true).is_ok()
    }

    /// Forgets the group's connections whose socket is gone.
    fn forget_closed(&mut self, gi: usize) {
        let socks = &self.stack.sockets;
        self.groups[gi].conns.retain(|c| {
            socks.get(c.idx).is_some_and(|s| {
                s.in_use && s.generation == c.gen && s.tp.t_state != TcpState::Closed
            })
        });
    }

    /// A backup that sees client traffic for a connection it does not have tells the primary,
    /// so the primary does not wait for it on that connection.
    fn missing_check(&mut self, packet: &[u8]) {
        let Ok((ip, payload)) = ipv4::Ipv4Header::parse(packet) else {
            return;
        };
        if ip.protocol != ipv4::PROTO_TCP || payload.len() < 20 {
            return;
        }
        let sport = u16::from_be_bytes([payload[0], payload[1]]);
        let dport = u16::from_be_bytes([payload[2], payload[3]]);
        let flags = payload[13];
        if flags & 0x06 != 0 {
            return; // SYN or RST
        }
        let Some(gi) = self
            .groups
            .iter()
            .position(|g| g.vip == ip.dst && g.port == dport && g.configured)
        else {
            return;
        };
        let key = ConnKey {
            addr: ip.src,
            port: sport,
        };
        let g = &self.groups[gi];
        if g.role != Role::Backup || g.conns.iter().any(|c| c.key == key) {
            return;
        }
        if self.stack.has_pending_or_conn(ip.dst, dport, ip.src, sport) {
            return;
        }
        let primary = g.primary_rank;
        self.stats.missing_sent += 1;
        queue_msg(
            &mut self.groups[gi],
            &mut self.stats,
            primary,
            FtMsg::Missing { conn: key },
        );
    }

    fn chan_input(&mut self, now: Instant, from: Ipv4Addr, frame: &[u8]) {
        self.stats.chan_in += 1;
        // Several groups may share a peer host; try each that does until one authenticates.
        let candidates: heapless::Vec<usize, MAX_GROUPS> = (0..self.groups.len())
            .filter(|&i| self.groups[i].peers.iter().any(|p| p.addr == from))
            .collect();
        if candidates.is_empty() {
            // Not a member of any group here.
            self.stats.chan_malformed += 1;
            return;
        }
        for i in candidates {
            let mut msgs: heapless::Vec<FtMsg, { MAX_PAYLOAD / MSG_LEN }> = heapless::Vec::new();
            let mut hb: Option<(u8, u32, u8)> = None;
            let mut data_from: Option<(u8, u32)> = None;
            {
                let g = &mut self.groups[i];
                match g.chan.handle_frame(now, frame) {
                    Some(Received::Data {
                        from,
                        epoch,
                        payload,
                    }) => {
                        data_from = Some((from, epoch));
                        for m in FtMsg::decode_all(payload) {
                            match m {
                                Some(m) => {
                                    let _ = msgs.push(m);
                                }
                                None => {
                                    self.stats.chan_msgs_bad += 1;
                                    break;
                                }
                            }
                        }
                    }
                    Some(Received::Heartbeat {
                        from,
                        epoch,
                        payload,
                    }) => {
                        let flags = payload.get(1).copied().unwrap_or(0);
                        hb = Some((from, epoch, flags));
                    }
                    None => {
                        // Acks and dropped frames deliver nothing; if nothing at all was
                        // accepted by this group, another group may own the frame.
                        continue;
                    }
                }
            }
            if let Some((from, epoch, flags)) = hb {
                self.heard(i, now, from, epoch, flags & HB_PRIMARY != 0);
                if flags & HB_PROBE != 0 {
                    let g = &mut self.groups[i];
                    let mine = (g.role == Role::Primary) as u8 * HB_PRIMARY;
                    let _ = g.chan.heartbeat_to(now, from, &[g.local_rank, mine]);
                }
            }
            if let Some((from, epoch)) = data_from {
                // Only the primary sends DELIVER and COMMIT: such a batch announces its view
                // too (a detector without heartbeats has no other announcement).
                let claims = msgs
                    .iter()
                    .any(|m| matches!(m, FtMsg::Deliver { .. } | FtMsg::Commit { .. }));
                self.heard(i, now, from, epoch, claims);
                for m in msgs {
                    self.apply_msg(i, now, from, epoch, m);
                }
            }
            self.after_chan(i, now);
            return;
        }
    }

    /// A peer is alive; a higher epoch from a primary changes the view.
    fn heard(&mut self, gi: usize, now: Instant, from: u8, epoch: u32, claims_primary: bool) {
        let g = &mut self.groups[gi];
        if let Some(p) = g.peers.iter_mut().find(|p| p.rank == from) {
            p.last_heard = Some(now);
            p.dead = false;
        }
        if epoch > g.epoch
            || (epoch == g.epoch
                && claims_primary
                && from != g.primary_rank
                && g.role == Role::Backup)
        {
            let newer = epoch > g.epoch;
            if newer {
                g.epoch = epoch;
                g.chan.set_epoch(epoch);
                // A view made by a takeover names its primary (see `takeover_epoch`).
                if epoch >= 16 {
                    g.primary_rank = 15 - (epoch & 15) as u8;
                }
            }
            if claims_primary {
                g.primary_rank = from;
            }
            // A replica takes over only once every rank below it is gone, so the view says
            // they are. Without heartbeats nothing else would tell this replica, and it would
            // wait on them for ever when the new primary dies in turn.
            let new_primary = g.primary_rank;
            for x in g.peers.iter_mut().filter(|x| x.rank < new_primary) {
                x.dead = true;
            }
            // The client retransmitted to the old primary; the new one starts with a clean
            // slate.
            g.dup_history.clear();
            g.view_since = Some(now);
            // Anyone in a newer view means ours is over: a primary steps down.
            if g.role == Role::Primary
                && from != g.local_rank
                && (claims_primary || newer)
                && g.primary_rank != g.local_rank
            {
                self.step_down(gi);
            } else {
                // A new primary needs everyone's progress afresh.
                let g = &mut self.groups[gi];
                for c in g.conns.iter_mut() {
                    c.reported = None;
                }
                g.syn_reported.clear();
            }
        }
    }

    fn apply_msg(&mut self, gi: usize, now: Instant, from: u8, epoch: u32, m: FtMsg) {
        let _ = now;
        match m {
            FtMsg::Progress {
                conn,
                rcv_nxt,
                edge,
            } => {
                self.stats.progress_rcvd += 1;
                let g = &mut self.groups[gi];
                if g.role != Role::Primary || from as usize >= MAX_REPLICAS {
                    return;
                }
                if let Some(c) = g.conns.iter_mut().find(|c| c.key == conn) {
                    let slot = &mut c.progress[from as usize];
                    let newer = match slot {
                        Some((r, _)) => seq_geq(rcv_nxt, *r),
                        None => true,
                    };
                    if newer {
                        *slot = Some((rcv_nxt, edge));
                    }
                    // A backup dropped as dead that is heard again rejoins the connections it
                    // holds everything acknowledged of: acknowledging on without it would
                    // leave it short of bytes the client will never send again.
                    let bit = 1u16 << from;
                    let alive = g.peers.iter().any(|p| p.rank == from && !p.dead);
                    if c.quorum & bit == 0 && alive {
                        let acked = self
                            .stack
                            .sockets
                            .get(c.idx)
                            .filter(|so| so.in_use && so.generation == c.gen)
                            .map(|so| so.tp.last_ack_sent);
                        if acked.is_some_and(|a| seq_geq(rcv_nxt, a)) {
                            c.quorum |= bit;
                        }
                    }
                } else {
                    // No connection here yet: the backup holds the client's SYN (or more);
                    // its SYN-ACK may be waiting for exactly this.
                    let bit = 1u16 << from;
                    match g
                        .syn_reports
                        .iter_mut()
                        .find(|r| r.key == conn && r.irs1 == rcv_nxt)
                    {
                        Some(r) => r.ranks |= bit,
                        None => {
                            if g.syn_reports.is_full() {
                                g.syn_reports.remove(0);
                            }
                            let _ = g.syn_reports.push(SynReport {
                                key: conn,
                                irs1: rcv_nxt,
                                ranks: bit,
                            });
                        }
                    }
                }
            }
            FtMsg::Missing { conn } => {
                self.stats.missing_rcvd += 1;
                let g = &mut self.groups[gi];
                if let Some(c) = g.conns.iter_mut().find(|c| c.key == conn) {
                    c.quorum &= !(1u16 << from);
                }
            }
            FtMsg::Deliver { conn, upto } => {
                self.stats.deliver_rcvd += 1;
                let g = &mut self.groups[gi];
                if g.role != Role::Backup {
                    return;
                }
                hold_view(g, epoch);
                // Readable only once committed: until every backup holds this announcement,
                // a backup that takes over may not know it and would order the input its
                // own way.
                if let Some(c) = g.conns.iter().find(|c| c.key == conn) {
                    if seq_gt(upto, c.delivered) && g.held.push_back((conn, upto)).is_err() {
                        self.stats.deliveries_lost += 1;
                    }
                }
            }
            FtMsg::Commit { conn, upto } => {
                let g = &mut self.groups[gi];
                if g.role != Role::Backup {
                    return;
                }
                hold_view(g, epoch);
                let Some(pos) = g.held.iter().position(|&(k, u)| k == conn && u == upto) else {
                    return;
                };
                for _ in 0..=pos {
                    let Some((key, upto)) = self.groups[gi].held.pop_front() else {
                        break;
                    };
                    let g = &mut self.groups[gi];
                    let Some(c) = g.conns.iter_mut().find(|c| c.key == key) else {
                        continue;
                    };
                    if seq_gt(upto, c.delivered) {
                        c.delivered = upto;
                        let (idx, gen) = (c.idx, c.gen);
                        self.set_delivered(idx, gen, upto);
                    }
                }
            }
        }
    }

    fn set_delivered(&mut self, idx: usize, gen: u16, upto: Seq) {
        let Some(so) = self.stack.sockets.get_mut(idx) else {
            return;
        };
        if !so.in_use || so.generation != gen {
            return;
        }
        so.tp.ft.read_limit = Some(upto);
        so.sorwakeup();
        let d = Delivery {
            handle: SocketHandle::new(idx, gen),
            upto,
        };
        if self.deliveries.push_back(d).is_err() {
            self.stats.deliveries_lost += 1;
        }
    }

    // ------------------------------------------------------------------ the layer's work

    /// Finds the group's new connections and forgets closed ones.
    fn track_connections(&mut self) {
        for gi in 0..self.groups.len() {
            let (vip, port, role) = {
                let g = &self.groups[gi];
                if !g.configured {
                    continue;
                }
                (g.vip, g.port, g.role)
            };
            self.forget_closed(gi);
            let live_backups = self.live_backup_mask(gi);
            for idx in 0..self.stack.sockets.len() {
                let so = &self.stack.sockets[idx];
                if !so.in_use
                    || so.is_listening()
                    || so.inp.laddr != vip
                    || so.inp.lport != port
                    || so.tp.t_state == TcpState::Closed
                    || so.tp.t_state == TcpState::SynSent
                {
                    continue;
                }
                let gen = so.generation;
                if self.groups[gi]
                    .conns
                    .iter()
                    .any(|c| c.idx == idx && c.gen == gen)
                {
                    continue;
                }
                let key = ConnKey {
                    addr: so.inp.faddr,
                    port: so.inp.fport,
                };
                let irs1 = so.tp.irs + 1;
                let conn = FtConn {
                    key,
                    idx,
                    gen,
                    quorum: if role == Role::Primary {
                        live_backups
                    } else {
                        0
                    },
                    progress: [None; MAX_REPLICAS],
                    delivered: irs1,
                    reported: None,
                    reported_at: Instant::ZERO,
                    last_dupsegs: so.tp.t_rcvdupsegs,
                };
                if self.groups[gi].conns.push(conn).is_err() {
                    // Handshakes that were half-open when the table filled: such a connection
                    // cannot be replicated, and is refused rather than left to run outside
                    // the group (unreplicated, its reads and ACKs unchecked).
                    self.stats.conns_table_full += 1;
                    let now = self.now;
                    self.stack.ft_refuse(now, idx);
                    continue;
                }
                self.stats.conns_tracked += 1;
                let so = &mut self.stack.sockets[idx];
                so.tp.ft.read_limit = Some(irs1);
                so.tp.ft.rcv_read = irs1;
                match role {
                    Role::Primary => {
                        so.tp.ft.muted = false;
                        so.tp.ft.follow_ts = false;
                        so.tp.ft.ack_limit = if live_backups != 0 { Some(irs1) } else { None };
                    }
                    Role::Backup => {
                        so.tp.ft.muted = true;
                        so.tp.ft.follow_ts = true;
                        so.tp.ft.ack_limit = None;
                        so.tp.ft.edge_limit = None;
                    }
                }
            }
        }
    }

    fn live_backup_mask(&self, gi: usize) -> u16 {
        let g = &self.groups[gi];
        g.peers
            .iter()
            .filter(|p| !p.dead)
            .fold(0u16, |m, p| m | (1 << p.rank))
    }

    /// Primary: recompute each connection's ack limit and deliver what the group holds.
    /// Backup: report progress.
    fn update_connections(&mut self, gi: usize) {
        if self.groups[gi].role == Role::Primary {
            self.release_synacks(gi);
            self.reannounce_held(gi);
            self.apply_local_deliveries(gi);
        }
        let role = self.groups[gi].role;
        let n = self.groups[gi].conns.len();
        for ci in 0..n {
            let c = self.groups[gi].conns[ci];
            let Some(so) = self.stack.sockets.get(c.idx) else {
                continue;
            };
            if !so.in_use || so.generation != c.gen {
                continue;
            }
            let rcv_nxt = so.tp.rcv_nxt;
            let edge = rcv_nxt + so.so_rcv.space() as u32;
            match role {
                Role::Backup => {}
                Role::Primary => {
                    let mut ack = rcv_nxt;
                    let mut edge_min = edge;
                    let mut limited = false;
                    for r in 0..MAX_REPLICAS {
                        if c.quorum & (1 << r) == 0 {
                            continue;
                        }
                        limited = true;
                        match c.progress[r] {
                            Some((rn, e)) => {
                                if seq_lt(rn, ack) {
                                    ack = rn;
                                }
                                if seq_lt(e, edge_min) {
                                    edge_min = e;
                                }
                            }
                            None => {
                                // Not heard yet (new connection or a new view): the group is
                                // known to hold what was delivered.
                                let base = c.delivered;
                                if seq_lt(base, ack) {
                                    ack = base;
                                }
                                // Its buffer is unknown too: open no window beyond what it
                                // is known to have taken.
                                if seq_lt(base, edge_min) {
                                    edge_min = base;
                                }
                            }
                        }
                    }
                    let so = &mut self.stack.sockets[c.idx];
                    let old_limit = so.tp.ft.ack_limit;
                    let old_edge = so.tp.ft.edge_limit;
                    if limited {
                        so.tp.ft.ack_limit = Some(ack);
                        so.tp.ft.edge_limit = Some(edge_min);
                    } else {
                        so.tp.ft.ack_limit = None;
                        so.tp.ft.edge_limit = None;
                    }
                    // The acknowledgement may move now: tell the client.
                    let moved = match old_limit {
                        Some(o) => seq_gt(ack, o),
                        None => false,
                    };
                    if moved && seq_gt(ack, so.tp.last_ack_sent) {
                        so.tp.t_flags |= crate::netinet::tcp_var::tf::ACKNOW;
                        so.output_wanted = true;
                    }
                    // The group's window may have opened without the acknowledgement moving
                    // (a backup's service read, or a new view heard from its backups): let
                    // tcp_output judge whether that is worth a window update, or a sender
                    // facing a closed window waits for its persist timer.
                    let opened = match (old_edge, so.tp.ft.edge_limit) {
                        (Some(o), Some(n)) => seq_gt(n, o),
                        _ => false,
                    };
                    if opened {
                        so.output_wanted = true;
                    }
                    // What the old primary announced comes first.
                    if self.groups[gi].held.is_empty() && seq_gt(ack, c.delivered) {
                        self.announce(gi, ci, ack);
                    }
                }
            }
        }
    }

    /// Primary: makes client bytes below `upto` of connection `ci` readable in the group, in
    /// this order. `false` when a live backup's batch has no room: the order of deliveries is
    /// the order of these messages, so none may be dropped.
    fn announce(&mut self, gi: usize, ci: usize, upto: Seq) -> bool {
        let g = &mut self.groups[gi];
        let room = !g.pending_local.is_full()
            && g.peers
                .iter()
                .filter(|p| !p.dead)
                .all(|p| g.outbox[p.rank as usize].len() + MSG_LEN <= MAX_PAYLOAD);
        if !room {
            return false;
        }
        let c = &mut g.conns[ci];
        c.delivered = upto;
        let (key, idx, gen) = (c.key, c.idx, c.gen);
        let ranks: heapless::Vec<u8, MAX_REPLICAS> =
            g.peers.iter().filter(|p| !p.dead).map(|p| p.rank).collect();
        let need = ranks.iter().fold(0u16, |m, &r| m | (1 << r));
        for r in ranks {
            self.stats.deliver_sent += 1;
            queue_msg(g, &mut self.stats, r, FtMsg::Deliver { conn: key, upto });
        }
        // The service's output may depend on this order (a sequencer numbers lines across
        // connections): it reaches the client only after every backup knows the order, or a
        // backup that takes over orders differently what the client has already seen
        // answered. The same moment commits it to the backups.
        let _ = g.pending_local.push_back(LocalDelivery {
            key,
            idx,
            gen,
            upto,
            need,
            frame: [0; MAX_REPLICAS],
        });
        true
    }

    /// New primary: re-announces, in their order, the deliveries it held uncommitted, so that
    /// every survivor converges on the order the old primary chose (which is the one it, or a
    /// backup, may already have applied).
    fn reannounce_held(&mut self, gi: usize) {
        while let Some(&(key, upto)) = self.groups[gi].held.front() {
            let g = &self.groups[gi];
            let Some(ci) = g.conns.iter().position(|c| c.key == key) else {
                self.groups[gi].held.pop_front();
                continue;
            };
            if seq_gt(upto, g.conns[ci].delivered) && !self.announce(gi, ci, upto) {
                return;
            }
            self.groups[gi].held.pop_front();
        }
    }

    /// Primary: a SYN-ACK acknowledges the client's SYN, so (invariant 1) it leaves only once
    /// every live backup holds that SYN. A backup that missed it would otherwise never have
    /// the connection, and could not carry it if it took over.
    fn release_synacks(&mut self, gi: usize) {
        let live = self.live_backup_mask(gi);
        let now = self.now;
        let (vip, port) = (self.groups[gi].vip, self.groups[gi].port);
        let mut ready: heapless::Vec<ConnKey, MAX_FT_CONNS> = heapless::Vec::new();
        for (addr, fport, irs, held) in self.stack.syncache_entries(vip, port) {
            if !held {
                continue;
            }
            let key = ConnKey { addr, port: fport };
            let have = self.groups[gi]
                .syn_reports
                .iter()
                .find(|r| r.key == key && r.irs1 == irs + 1)
                .map_or(0, |r| r.ranks);
            if live & !have == 0 {
                let _ = ready.push(key);
            }
        }
        for key in ready {
            self.stack
                .syncache_release(now, vip, port, key.addr, key.port);
            self.groups[gi].syn_reports.retain(|r| r.key != key);
        }
    }

    /// Primary: gives its own service the announced deliveries every live backup has
    /// acknowledged, in the order they were announced.
    fn apply_local_deliveries(&mut self, gi: usize) {
        loop {
            let g = &self.groups[gi];
            let Some(d) = g.pending_local.front().copied() else {
                return;
            };
            let known = (0..MAX_REPLICAS).all(|r| {
                if d.need & (1 << r) == 0 {
                    return true;
                }
                let Some(p) = g.peers.iter().find(|p| p.rank as usize == r) else {
                    return true;
                };
                if p.dead {
                    return true;
                }
                let rank = r as u8;
                match d.frame[r] {
                    // Dropped from the outbox while the peer was dead: nothing to wait for.
                    0 => g.outbox[r].is_empty() && g.chan.unacked(rank) == 0,
                    f => g.chan.acked(rank).is_none_or(|a| a >= f) || g.chan.unacked(rank) == 0,
                }
            });
            if !known {
                return;
            }
            let g = &mut self.groups[gi];
            g.pending_local.pop_front();
            for r in 0..MAX_REPLICAS {
                if d.need & (1 << r) != 0 {
                    g.commit[r] = Some((d.key, d.upto));
                }
            }
            self.set_delivered(d.idx, d.gen, d.upto);
        }
    }

    /// Backup: the client retransmissions the group's connections received since the last look
    /// feed the detector; whether any was counted.
    fn observe_retransmissions(&mut self, gi: usize, now: Instant) -> bool {
        let mut seen = false;
        let params = self.groups[gi].params;
        let settling = self.groups[gi]
            .view_since
            .is_some_and(|t| now.saturating_duration_since(t) < quarter_window(&params));
        // One retransmission timeout makes the client resend a burst of segments the replicas
        // already hold (go-back-N, or SACK recovery): that is one retransmission, not one per
        // segment, or a single timeout would reach any threshold. Duplicates closer than an
        // eighth of the window (125 ms by default; a client's timeouts are at least 200 ms
        // apart) count once.
        let gap = Duration::from_micros(params.retransmit_window().total_micros() / 8);
        let n = self.groups[gi].conns.len();
        for ci in 0..n {
            let c = self.groups[gi].conns[ci];
            let Some(so) = self.stack.sockets.get(c.idx) else {
                continue;
            };
            let d = so.tp.t_rcvdupsegs.wrapping_sub(c.last_dupsegs);
            self.groups[gi].conns[ci].last_dupsegs = so.tp.t_rcvdupsegs;
            if settling {
                self.stats.retransmits_settling += u64::from(d);
                continue;
            }
            let g = &mut self.groups[gi];
            let fresh = g
                .dup_history
                .back()
                .is_none_or(|&t| now.saturating_duration_since(t) >= gap);
            if d > 0 && fresh {
                seen = true;
                self.stats.client_retransmits += 1;
                if g.dup_history.is_full() {
                    g.dup_history.pop_front();
                }
                let _ = g.dup_history.push_back(now);
            }
        }
        seen
    }

    /// The failure detector and takeover by rank.
    fn detect(&mut self, gi: usize, now: Instant) {
        let g = &mut self.groups[gi];
        let p = g.params;
        if let Some(limit) = silence_limit(g) {
            for peer in g.peers.iter_mut() {
                // Never heard: from the moment we started listening (with heartbeats) or
                // became primary (without: backups report to the primary only).
                let since = peer.last_heard.or(if p.heartbeat_interval_ms > 0 {
                    Some(g.started)
                } else {
                    g.view_since
                });
                let silent = since.is_some_and(|t| now.saturating_duration_since(t) > limit);
                if silent && !peer.dead {
                    peer.dead = true;
                    if g.role == Role::Primary {
                        self.stats.backups_dropped += 1;
                    }
                }
            }
        }
        // Forget retransmissions that left the window (a primary sees them too; they
        // must not keep a timer due forever).
        while let Some(&t) = g.dup_history.front() {
            if now.saturating_duration_since(t) > p.retransmit_window() {
                g.dup_history.pop_front();
            } else {
                break;
            }
        }
        if g.role == Role::Primary {
            g.dup_history.clear();
            // Drop dead backups from every quorum.
            let dead: u16 = g
                .peers
                .iter()
                .filter(|p| p.dead)
                .fold(0, |m, p| m | (1 << p.rank));
            for c in g.conns.iter_mut() {
                c.quorum &= !dead;
            }
            return;
        }
        // Backup: is the primary suspected?
        let primary_rank = g.primary_rank;
        // With heartbeats on, a primary heard within the last interval is alive: client
        // retransmissions then come from loss on the client's path, not from its death.
        let heard_lately = p.heartbeat_interval_ms > 0
            && g.peers.iter().any(|x| {
                x.rank == primary_rank
                    && x.last_heard.is_some_and(|t| {
                        now.saturating_duration_since(t)
                            <= p.heartbeat_interval() + p.heartbeat_interval()
                    })
            });
        let by_retransmits = p.retransmit_threshold > 0
            && !heard_lately
            && g.dup_history.len() as u32 >= p.retransmit_threshold;
        let primary_dead = g
            .peers
            .iter()
            .find(|x| x.rank == primary_rank)
            .is_none_or(|x| x.dead);
        if !(primary_dead || by_retransmits) {
            return;
        }
        // Take over only if every live replica ranked below us is also gone.
        let local = g.local_rank;
        let lower_alive = g
            .peers
            .iter()
            .any(|x| x.rank < local && x.rank != primary_rank && !x.dead);
        if lower_alive {
            return;
        }
        // Suspected on client retransmissions alone, the primary may well be alive (one
        // heartbeat lost while the client's path loses segments): with heartbeats it stays in
        // the acknowledgement quorum, and the heartbeat timeout drops it if it is really gone.
        // Without heartbeats nothing else would ever drop it.
        if by_retransmits && !primary_dead && p.heartbeat_interval_ms == 0 {
            if let Some(x) = g.peers.iter_mut().find(|x| x.rank == primary_rank) {
                x.dead = true;
            }
        }
        g.dup_history.clear();
        self.take_over(gi, now);
    }

    fn take_over(&mut self, gi: usize, now: Instant) {
        self.stats.takeovers += 1;
        let live = self.live_backup_mask(gi);
        let g = &mut self.groups[gi];
        let epoch = takeover_epoch(g.epoch.max(g.chan.highest_epoch_seen()), g.local_rank);
        g.epoch = epoch;
        g.chan.set_epoch(epoch);
        g.role = Role::Primary;
        g.primary_rank = g.local_rank;
        g.view_since = Some(now);
        g.syn_reports.clear();
        g.commit = [None; MAX_REPLICAS];
        let (vip, port) = (g.vip, g.port);
        // Half-open connections answer only once the remaining backups hold their SYN too.
        let _ = self.stack.set_port_synack_gate(vip, port, true);
        let _ = self.stack.set_port_silent(vip, port, false);
        // Before the ack limits: what the old primary announced, the group holds.
        self.reannounce_held(gi);
        let n = self.groups[gi].conns.len();
        for ci in 0..n {
            let c = &mut self.groups[gi].conns[ci];
            c.quorum = live;
            c.progress = [None; MAX_REPLICAS];
            let (idx, gen, delivered) = (c.idx, c.gen, c.delivered);
            let Some(so) = self.stack.sockets.get_mut(idx) else {
                continue;
            };
            if !so.in_use || so.generation != gen {
                continue;
            }
            let bump = TAKEOVER_TS_BUMP_MS;
            // Until the remaining backups report, acknowledge no more than the group was
            // known to hold.
            so.tp.ft.ack_limit = if live != 0 { Some(delivered) } else { None };
            // The backups' edges are unknown until they report: advertise nothing new.
            so.tp.ft.edge_limit = if live != 0 { Some(delivered) } else { None };
            self.stack.tcp_takeover(idx, now, bump);
        }
        // Announce the new view at once (periodic heartbeats do it from now on; without them
        // this one, then every DELIVER batch, does).
        let g = &mut self.groups[gi];
        g.next_heartbeat = now;
        if g.params.heartbeat_interval_ms == 0 {
            let _ = g.chan.heartbeat(now, &[g.local_rank, HB_PRIMARY]);
        }
    }

    fn step_down(&mut self, gi: usize) {
        self.stats.step_downs += 1;
        let g = &mut self.groups[gi];
        g.role = Role::Backup;
        g.syn_reports.clear();
        g.syn_reported.clear();
        // Announced but not applied here: the new primary decides the order from now on.
        g.pending_local.clear();
        g.commit = [None; MAX_REPLICAS];
        let (vip, port) = (g.vip, g.port);
        let _ = self.stack.set_port_synack_gate(vip, port, false);
        let _ = self.stack.set_port_silent(vip, port, true);
        for c in g.conns.iter_mut() {
            c.reported = None;
            if let Some(so) = self.stack.sockets.get_mut(c.idx) {
                if so.in_use && so.generation == c.gen {
                    if let Some(applied) = so.tp.ft.read_limit {
                        c.delivered = applied;
                    }
                    so.tp.ft.muted = true;
                    so.tp.ft.follow_ts = true;
                    so.tp.ft.ack_limit = None;
                    so.tp.ft.edge_limit = None;
                }
            }
        }
    }

    fn after_chan(&mut self, gi: usize, now: Instant) {
        self.track_connections();
        self.update_connections(gi);
        let _ = now;
    }

    // ------------------------------------------------------------------ time and output

    /// Fires timers due at `now`: TCP's, the channel's, heartbeats and the detector.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.stack.handle_timeout(now);
        self.track_connections();
        for gi in 0..self.groups.len() {
            if !self.groups[gi].configured {
                continue;
            }
            self.observe_retransmissions(gi, now);
            self.detect(gi, now);
            self.update_connections(gi);
            let g = &mut self.groups[gi];
            if g.params.heartbeat_interval_ms > 0 && now >= g.next_heartbeat {
                let flags = (g.role == Role::Primary) as u8 * HB_PRIMARY;
                let _ = g.chan.heartbeat(now, &[g.local_rank, flags]);
                g.next_heartbeat = now + g.params.heartbeat_interval();
            }
            self.probe_silent_peers(gi, now);
        }
    }

    /// A peer whose heartbeat is overdue is asked to answer at once, a few times before the
    /// timeout: one lost heartbeat or two must not pass for a death. A false suspicion makes
    /// a backup take over from a live primary, or a primary stop waiting for a live backup and
    /// acknowledge bytes it lacks.
    fn probe_silent_peers(&mut self, gi: usize, now: Instant) {
        let g = &mut self.groups[gi];
        if g.params.heartbeat_interval_ms == 0 {
            return;
        }
        let (started, params) = (g.started, g.params);
        let mine = ((g.role == Role::Primary) as u8 * HB_PRIMARY) | HB_PROBE;
        let local = g.local_rank;
        for k in 0..g.peers.len() {
            let Some(due) = probe_due(&g.peers[k], &params, started) else {
                continue;
            };
            if now < due {
                continue;
            }
            let to = g.peers[k].rank;
            let _ = g.chan.heartbeat_to(now, to, &[local, mine]);
            g.peers[k].next_probe = now + probe_interval(&params);
        }
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.stack.poll_timeout();
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |y| y.min(x)));
            }
        };
        for g in self.groups.iter().filter(|g| g.configured) {
            min(g.chan.poll_timeout());
            if g.params.heartbeat_interval_ms > 0 {
                min(Some(g.next_heartbeat));
                for p in &g.peers {
                    min(probe_due(p, &g.params, g.started));
                }
            }
            // A backup's repeated progress reports are what its primary hears of it when
            // heartbeats are off: they need a wake-up of their own.
            // (One already due was due at the last poll_transmit, which could not send it —
            // the channel is full, say: waking again at once would only spin.)
            if g.role == Role::Backup {
                for c in g.conns.iter().filter(|c| c.reported.is_some()) {
                    let due = c.reported_at + PROGRESS_REFRESH;
                    if due > self.now {
                        min(Some(due));
                    }
                }
            }
            // The detector needs a look when a peer's silence would pass the limit.
            if let Some(limit) = silence_limit(g) {
                for p in g.peers.iter().filter(|p| !p.dead) {
                    if let Some(h) = p.last_heard {
                        min(Some(h + limit + Duration::from_micros(1)));
                    }
                }
            }
            if let Some(&t0) = g.dup_history.front() {
                min(Some(
                    t0 + g.params.retransmit_window() + Duration::from_micros(1),
                ));
            }
        }
        t
    }

    /// The next packet to send: ack-channel frames first (they gate the client's ACKs), then
    /// TCP.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.now = now;
        self.track_connections();
        for gi in 0..self.groups.len() {
            if !self.groups[gi].configured {
                continue;
            }
            self.update_connections(gi);
            self.flush_outbox(gi, now);
            if self.groups[gi].role == Role::Primary {
                self.apply_local_deliveries(gi);
            }
            let g = &mut self.groups[gi];
            let mut frame = [0u8; MAX_PAYLOAD + 128];
            if let Some((to, n)) = g.chan.poll_transmit(now, &mut frame) {
                let Some(peer) = g.peers.iter().find(|p| p.rank == to) else {
                    continue;
                };
                let dst = peer.addr;
                if let Ok(len) = udp::emit_ipv4_udp(
                    self.addr,
                    dst,
                    ACKCHAN_PORT,
                    ACKCHAN_PORT,
                    &frame[..n],
                    64,
                    buf,
                ) {
                    return Some(len);
                }
            }
        }
        self.stack.poll_transmit(now, buf)
    }

    fn flush_outbox(&mut self, gi: usize, now: Instant) {
        let g = &mut self.groups[gi];
        for r in 0..MAX_REPLICAS {
            // A commit names a delivery announced in an earlier frame (the primary commits
            // once each backup acknowledged it), so it goes first: the backup frees what it
            // holds before holding more, which bounds what it holds by the primary's
            // `pending_local`.
            let mut payload: heapless::Vec<u8, MAX_PAYLOAD> = heapless::Vec::new();
            let mut committed = false;
            if let Some((conn, upto)) = g.commit[r] {
                let mut b = [0u8; MSG_LEN];
                if let Some(n) = (FtMsg::Commit { conn, upto }).encode(&mut b) {
                    if g.outbox[r].len() + n <= MAX_PAYLOAD {
                        committed = payload.extend_from_slice(&b[..n]).is_ok();
                    }
                }
            }
            let _ = payload.extend_from_slice(&g.outbox[r]);
            // A backup's progress for every connection that moved, to the primary.
            let mut reported: heapless::Vec<(usize, (Seq, Seq)), MAX_FT_CONNS> =
                heapless::Vec::new();
            let mut syn_sent: heapless::Vec<(ConnKey, Seq), MAX_FT_CONNS> = heapless::Vec::new();
            if g.role == Role::Backup && r as u8 == g.primary_rank {
                for (ci, c) in g.conns.iter().enumerate() {
                    let Some(so) = self.stack.sockets.get(c.idx) else {
                        continue;
                    };
                    if !so.in_use || so.generation != c.gen || !so.tp.t_state.have_rcvd_syn() {
                        continue;
                    }
                    let now_state = (so.tp.rcv_nxt, so.tp.rcv_nxt + so.so_rcv.space() as u32);
                    let refresh = now.saturating_duration_since(c.reported_at) >= PROGRESS_REFRESH;
                    if c.reported == Some(now_state) && !refresh {
                        continue;
                    }
                    let mut b = [0u8; MSG_LEN];
                    let m = FtMsg::Progress {
                        conn: c.key,
                        rcv_nxt: now_state.0,
                        edge: now_state.1,
                    };
                    let Some(n) = m.encode(&mut b) else { continue };
                    if payload.extend_from_slice(&b[..n]).is_err() {
                        break;
                    }
                    let _ = reported.push((ci, now_state));
                }
                // Half-open connections: the primary holds their SYN-ACK until we hold the SYN.
                let (vip, port) = (g.vip, g.port);
                g.syn_reported.retain(|(k, irs1, _)| {
                    self.stack
                        .syncache_entries(vip, port)
                        .any(|(a, p, irs, _)| a == k.addr && p == k.port && irs + 1 == *irs1)
                });
                for (addr, fport, irs, _) in self.stack.syncache_entries(vip, port) {
                    let key = ConnKey { addr, port: fport };
                    let due = match g
                        .syn_reported
                        .iter()
                        .find(|(k, i, _)| *k == key && *i == irs + 1)
                    {
                        Some((_, _, at)) => now.saturating_duration_since(*at) >= PROGRESS_REFRESH,
                        None => true,
                    };
                    if !due {
                        continue;
                    }
                    let mut b = [0u8; MSG_LEN];
                    let m = FtMsg::Progress {
                        conn: key,
                        rcv_nxt: irs + 1,
                        edge: irs + 1,
                    };
                    let Some(n) = m.encode(&mut b) else { continue };
                    if payload.extend_from_slice(&b[..n]).is_err() {
                        break;
                    }
                    let _ = syn_sent.push((key, irs + 1));
                }
            }
            if payload.is_empty() {
                continue;
            }
            if g.peers.iter().any(|p| p.rank as usize == r && p.dead) {
                // Nobody to tell; a peer that comes back starts from fresh progress.
                g.outbox[r].clear();
                g.commit[r] = None;
                continue;
            }
            match g.chan.send(now, r as u8, &payload) {
                Ok(()) => {
                    if committed {
                        g.commit[r] = None;
                    }
                    if !g.outbox[r].is_empty() {
                        let seq = g.chan.last_queued(r as u8).unwrap_or(0);
                        for d in g.pending_local.iter_mut() {
                            if d.need & (1 << r) != 0 && d.frame[r] == 0 {
                                d.frame[r] = seq;
                            }
                        }
                    }
                    g.outbox[r].clear();
                    for (ci, st) in reported {
                        g.conns[ci].reported = Some(st);
                        g.conns[ci].reported_at = now;
                        self.stats.progress_sent += 1;
                    }
                    for (key, irs1) in syn_sent {
                        self.stats.progress_sent += 1;
                        match g
                            .syn_reported
                            .iter_mut()
                            .find(|(k, i, _)| *k == key && *i == irs1)
                        {
                            Some(e) => e.2 = now,
                            None => {
                                let _ = g.syn_reported.push((key, irs1, now));
                            }
                        }
                    }
                }
                Err(_) => {
                    // The peer is not keeping up: the batch waits (bounded by the outbox and,
                    // upstream, by deliveries waiting for room); the detector drops a dead peer.
                    self.stats.chan_queue_full += 1;
                }
            }
        }
    }
}

/// How long a peer may stay silent on the ack channel before it counts as gone: the heartbeat
/// timeout; or, with heartbeats off, [`quarter_window`] for a primary holding connections. Its
/// backups repeat their progress reports every [`PROGRESS_REFRESH`] while they hold
/// connections, so that much silence means gone; and a primary that kept waiting on a dead
/// backup would stop acknowledging, make the client retransmit, and be taken over from by a
/// live backup — it must drop the dead one before the client's second retransmission (at
/// least three of its minimum RTOs). `None`: silence says nothing.
fn silence_limit(g: &Group) -> Option<Duration> {
    if g.params.heartbeat_interval_ms > 0 {
        Some(g.params.heartbeat_timeout())
    } else if g.role == Role::Primary && !g.conns.is_empty() {
        Some(quarter_window(&g.params))
    } else {
        None
    }
}

/// A quarter of the client-retransmission window: how long after a view change client
/// retransmissions are not held against the new primary (long enough for the burst of
/// recovery retransmissions its first partial ACKs draw — they came within 10 ms of a
/// takeover in the simulator and made the next rank take over from a live primary — and short
/// enough that a client whose RTO has not yet backed off past the window still retransmits
/// twice within it when the new primary dies at once); and, without heartbeats, how long a
/// backup may be silent (see [`silence_limit`]).
fn quarter_window(p: &DetectorParams) -> Duration {
    Duration::from_micros(p.retransmit_window().total_micros() / 4)
}

/// When a live peer's silence calls for a probe: once a heartbeat and a half is missing, and
/// then every [`probe_interval`] until the timeout declares it dead.
fn probe_due(p: &Peer, params: &DetectorParams, started: Instant) -> Option<Instant> {
    if p.dead || params.heartbeat_interval_ms == 0 {
        return None;
    }
    let iv = params.heartbeat_interval();
    let first = p.last_heard.unwrap_or(started) + iv + Duration::from_micros(iv.total_micros() / 2);
    Some(first.max(p.next_probe))
}

/// Probes go a few times per heartbeat interval: each has the round trip of the channel to
/// come back before the next.
fn probe_interval(params: &DetectorParams) -> Duration {
    Duration::from_micros((params.heartbeat_interval().total_micros() / 4).max(1000))
}

/// The epoch a replica of rank `rank` takes over with, above every epoch `seen`. Epochs are
/// numbered in rounds of 16 and the lower rank gets the higher number within a round, so two
/// replicas that take over at once never share an epoch: the lower rank wins and the other
/// steps down when it hears it.
///
/// Epochs are 32 bits: one signed by a key holder can be pushed to the top, and the next view
/// then stays at `u32::MAX` (never going backwards; ranks no longer break ties there) instead
/// of wrapping to a lower, stale number.
fn takeover_epoch(seen: u32, rank: u8) -> u32 {
    let next = (u64::from(seen >> 4) + 1) * 16 + u64::from(15 - rank.min(15));
    u32::try_from(next).unwrap_or(u32::MAX)
}

/// A backup's held deliveries belong to one view: the first DELIVER or COMMIT of a newer one
/// replaces them, since its primary re-announced what it held first (the old primary applied
/// nothing the new one lacks). Until then they are kept: if that primary dies too before
/// telling us, we may be the one to re-announce them.
fn hold_view(g: &mut Group, epoch: u32) {
    if epoch != g.held_epoch {
        g.held.clear();
        g.held_epoch = epoch;
    }
}

/// Appends a message to the batch for `to`, flushing nothing: `poll_transmit` sends batches.
fn queue_msg(g: &mut Group, stats: &mut FtStats, to: u8, m: FtMsg) {
    if to as usize >= MAX_REPLICAS || to == g.local_rank {
        return;
    }
    let mut b = [0u8; MSG_LEN];
    let Some(n) = m.encode(&mut b) else { return };
    let ob = &mut g.outbox[to as usize];
    if ob.extend_from_slice(&b[..n]).is_err() {
        stats.chan_queue_full += 1;
    }
}

impl SocketHandle {
    pub(crate) fn new(idx: usize, gen: u16) -> Self {
        SocketHandle {
            idx: idx as u16,
            gen,
        }
    }
}

/// Convenience for tests and tools: a listening socket on `vip:port`.
pub fn listen_on(
    stack: &mut Stack<'_>,
    vip: Ipv4Addr,
    port: u16,
    backlog: i32,
) -> Result<SocketHandle, Errno> {
    let h = stack.socket()?;
    stack.bind(h, SocketAddrV4::new(vip, port))?;
    stack.listen(h, backlog)?;
    Ok(h)
}
