//! The module: a HydraNet-FT host server ([`Host`]) inside the kernel, sans-IO over
//! [`KernelOps`].
//!
//! Every entry point (a packet from the pfil hook, the callout, a system call, a relay event)
//! ends the same way as the Linux host daemon's loop: run the relays, send what the core has
//! to send through `ip_output`, and re-arm the one callout for the core's next deadline.
//!
//! How an unmodified server gets fault-tolerant connections: the server process calls
//! `v_host(vip)` (it and the children it forks afterwards belong to the virtual host), then
//! `setportopt(port, mode, &params)` and listens on `port` as usual (on `INADDR_ANY` or
//! `127.0.0.1`). The core, not the kernel's TCP, terminates the clients' connections to
//! `vip:port` (their packets reach it tunnelled from the redirector, through the pfil hook);
//! for each one it accepts, the module opens a kernel socket to the server's own listening
//! socket, `127.0.0.1:port` unless `serve <vip> <port> relay:IP:PORT` says otherwise, and
//! relays the bytes: client data in the group's delivery order, the server's answer into the
//! core's socket (muted on backups). This is the Linux daemon's relay mode, moved into the
//! kernel; the server sees ordinary loopback connections.

use core::fmt::{self, Write as _};
use core::net::{Ipv4Addr, SocketAddrV4};

use hydranet_core::ft::host::{listen_on, GroupConfig, Host, Member, Role};
use hydranet_core::netinet::tcp_usrreq::{Shutdown, SockOpt};
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::wire::ipv4;
use hydranet_core::{Errno, Instant};

use crate::ctl::{wire_errname, Request, MAX_LINE};
use crate::kernel::{Caller, KernelOps, Level, Verdict};
use crate::mbuf::Chain;
use crate::relay::{Relay, RelayState};
use crate::syscall::{self, PortOpt};

/// Processes bound to a virtual host (`v_host` callers and the children they fork).
pub const MAX_PROCS: usize = 64;
/// Ports served through the relay.
pub const MAX_LISTENERS: usize = 16;
/// Connections relayed at once.
pub const MAX_RELAYS: usize = 32;
/// The largest IPv4 packet.
pub const MAX_PACKET: usize = 65535;
/// UDP port of the ack channel (the core's `ACKCHAN_PORT`).
const ACKCHAN_PORT: u16 = hydranet_core::ft::host::ACKCHAN_PORT;
/// Rounds of relay work and output per entry point: enough for output to settle, bounded so
/// one packet cannot keep the pfil hook busy.
const MAX_ROUNDS: usize = 8;
/// Packets sent per round.
const MAX_BURST: usize = 256;

/// The module's memory besides the core's: the relays and the packet buffers. Caller-owned, so
/// the kernel build keeps it in a static (only the core's tables are on the heap).
pub struct Storage {
    relays: [Relay; MAX_RELAYS],
    rx: [u8; MAX_PACKET],
    tx: [u8; MAX_PACKET],
}

impl Storage {
    pub const fn new() -> Self {
        Storage {
            relays: [const { Relay::new() }; MAX_RELAYS],
            rx: [0; MAX_PACKET],
            tx: [0; MAX_PACKET],
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage::new()
    }
}

/// A port of a virtual host whose connections go to a server through the relay.
#[derive(Clone, Copy, Debug)]
struct Listener {
    vip: Ipv4Addr,
    port: u16,
    handle: SocketHandle,
    target: SocketAddrV4,
}

/// Relay events the shim reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum RelayEvent {
    /// The kernel socket is connected to the server.
    Connected = 1,
    /// The server closed its side, and every byte it sent was pushed.
    Eof = 2,
    /// The connection failed (refused, reset): the client connection is aborted.
    Error = 3,
}

/// What the module counts, besides the core's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModStats {
    pub pfil_pass: u64,
    pub pfil_consumed: u64,
    pub pfil_dropped: u64,
    pub out_packets: u64,
    pub out_errors: u64,
    pub callouts: u64,
    pub relays_opened: u64,
    pub relays_refused: u64,
    pub relays_closed: u64,
}

/// What `unload` did with the connections that were still there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnloadReport {
    /// Fault-tolerant connections left to the group: no packet goes out for them, so to the
    /// other replicas this host simply died and the next one takes over.
    pub abandoned: usize,
    /// Plain connections reset (their clients learn now, not at their next timeout).
    pub reset: usize,
}

/// The HydraNet-FT kernel module.
pub struct Module<'a, K: KernelOps> {
    pub kern: K,
    pub host: Host<'a>,
    storage: &'a mut Storage,
    redirectors: heapless::Vec<Ipv4Addr, { hydranet_core::ft::host::MAX_REDIRECTORS }>,
    procs: heapless::Vec<(i32, Ipv4Addr), MAX_PROCS>,
    listeners: heapless::Vec<Listener, MAX_LISTENERS>,
    /// When the callout is armed for, in microseconds of `now_us`.
    armed: Option<u64>,
    last_incarnation: u32,
    pub stats: ModStats,
}

impl<'a, K: KernelOps> Module<'a, K> {
    /// `MOD_LOAD`: a host server whose own address (ack channel, tunnel endpoint) is `addr`,
    /// over `stack` (its sockets and buffers placed by the caller).
    pub fn load(
        mut kern: K,
        stack: Stack<'a>,
        addr: Ipv4Addr,
        storage: &'a mut Storage,
    ) -> Result<Self, Errno> {
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            return Err(Errno::EINVAL);
        }
        let host = Host::new(stack, addr)?;
        kern.log(
            Level::Notice,
            format_args!("hydranet: loaded, host address {addr}"),
        );
        Ok(Module {
            kern,
            host,
            storage,
            redirectors: heapless::Vec::new(),
            procs: heapless::Vec::new(),
            listeners: heapless::Vec::new(),
            armed: None,
            last_incarnation: 0,
            stats: ModStats::default(),
        })
    }

    /// A seed for the core's keyed hashes, from the kernel's randomness.
    pub fn seed(kern: &mut K) -> [u8; 16] {
        let mut s = [0u8; 16];
        kern.random(&mut s);
        s
    }

    /// Connections still carried (relays in use).
    pub fn live_connections(&self) -> usize {
        self.storage
            .relays
            .iter()
            .filter(|r| r.state != RelayState::Free)
            .count()
    }

    /// `MOD_QUIESCE`: `EBUSY` while connections are live, so a plain `kldunload` refuses and
    /// `kldunload -f` is a deliberate act (it is a crash, as far as the group can tell).
    pub fn quiesce(&self) -> Result<(), Errno> {
        if self.live_connections() > 0 {
            return Err(Errno::EBUSY);
        }
        Ok(())
    }

    /// `MOD_UNLOAD`: closes every relay socket, resets plain connections, abandons
    /// fault-tolerant ones without a word (the group takes over), and disarms the callout.
    pub fn unload(mut self) -> (K, UnloadReport) {
        let now = self.now();
        let mut report = UnloadReport::default();
        for id in 0..MAX_RELAYS {
            let r = &mut self.storage.relays[id];
            if r.state == RelayState::Free {
                continue;
            }
            if let Some(h) = r.handle {
                if r.ft {
                    report.abandoned += 1;
                } else {
                    let _ = self.host.stack.setsockopt(h, SockOpt::Linger(Some(0)));
                    let _ = self.host.stack.close(now, h);
                    report.reset += 1;
                }
            }
            r.reset();
            self.kern.relay_close(id);
            self.stats.relays_closed += 1;
        }
        // Only the resets leave: anything else (a heartbeat, a backup's progress, the rest
        // of a primary's data) would make this host look alive to the group or the client.
        while let Some(n) = self.host.poll_transmit(now, &mut self.storage.tx) {
            if is_tcp_rst(&self.storage.tx[..n]) {
                let _ = self.kern.ip_output(&self.storage.tx[..n]);
            }
        }
        self.kern.callout_stop();
        self.armed = None;
        self.kern.log(
            Level::Notice,
            format_args!(
                "hydranet: unloaded ({} connections left to the group, {} reset)",
                report.abandoned, report.reset
            ),
        );
        (self.kern, report)
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.kern.now_us())
    }

    // ------------------------------------------------------------------ packets and time

    /// The inbound pfil hook on the `inet` head: takes the packets of this host server
    /// (tunnelled client packets from an accepted redirector, the ack channel, TCP to a virtual
    /// host) and passes everything else to the kernel.
    pub fn pfil_in(&mut self, chain: Chain<'_>) -> Verdict {
        let v = self.classify(&chain);
        let v = match v {
            Verdict::Consumed => {
                let now = self.now();
                match chain.contiguous(&mut self.storage.rx) {
                    Some(pkt) => {
                        let bad = self.host.stats.tunnel_malformed;
                        self.host.handle_packet(now, pkt);
                        if self.host.stats.tunnel_malformed != bad {
                            Verdict::Dropped
                        } else {
                            Verdict::Consumed
                        }
                    }
                    None => Verdict::Dropped,
                }
            }
            v => v,
        };
        match v {
            Verdict::Pass => self.stats.pfil_pass += 1,
            Verdict::Consumed => self.stats.pfil_consumed += 1,
            Verdict::Dropped => self.stats.pfil_dropped += 1,
        }
        if v != Verdict::Pass {
            self.poll();
        }
        v
    }

    /// Looks at the headers only (they may be split across mbufs).
    fn classify(&self, chain: &Chain<'_>) -> Verdict {
        let mut h = [0u8; 20];
        if !chain.copy_out(0, &mut h) || h[0] >> 4 != 4 {
            return Verdict::Pass;
        }
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let proto = h[9];
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        if dst == self.host.addr {
            match proto {
                // Tunnels from anyone else are someone else's (a gif(4) interface, say).
                ipv4::PROTO_IPIP if self.redirectors.contains(&src) => Verdict::Consumed,
                ipv4::PROTO_UDP => {
                    let mut ports = [0u8; 4];
                    if chain.copy_out(ihl, &mut ports)
                        && u16::from_be_bytes([ports[2], ports[3]]) == ACKCHAN_PORT
                        && !self.host.vhosts().is_empty()
                    {
                        Verdict::Consumed
                    } else {
                        Verdict::Pass
                    }
                }
                _ => Verdict::Pass,
            }
        } else if proto == ipv4::PROTO_TCP && self.host.vhosts().contains(&dst) {
            Verdict::Consumed
        } else {
            Verdict::Pass
        }
    }

    /// The callout fired.
    pub fn callout_fire(&mut self) {
        self.stats.callouts += 1;
        self.armed = None;
        let now = self.now();
        self.host.handle_timeout(now);
        self.poll();
    }

    /// Relays, output and the callout: the end of every entry point.
    pub fn poll(&mut self) {
        let now = self.now();
        for _ in 0..MAX_ROUNDS {
            let worked = self.run_relays(now);
            let sent = self.flush(now);
            if !worked && sent == 0 {
                break;
            }
        }
        self.reschedule(now);
    }

    fn flush(&mut self, now: Instant) -> usize {
        let mut sent = 0;
        while sent < MAX_BURST {
            let Some(n) = self.host.poll_transmit(now, &mut self.storage.tx) else {
                break;
            };
            match self.kern.ip_output(&self.storage.tx[..n]) {
                Ok(()) => self.stats.out_packets += 1,
                // Lost like a packet on the wire: TCP and the ack channel retransmit.
                Err(_) => self.stats.out_errors += 1,
            }
            sent += 1;
        }
        sent
    }

    fn reschedule(&mut self, now: Instant) {
        let want = self.host.poll_timeout().map(|t| t.total_micros());
        if want == self.armed {
            return;
        }
        match want {
            Some(t) => self
                .kern
                .callout_reset(t.saturating_sub(now.total_micros())),
            None => self.kern.callout_stop(),
        }
        self.armed = want;
    }

    // ------------------------------------------------------------------ processes

    /// The virtual host of process `pid`.
    pub fn vhost_of(&self, pid: i32) -> Option<Ipv4Addr> {
        self.procs.iter().find(|p| p.0 == pid).map(|p| p.1)
    }

    /// `process_fork` event: a child of a virtual host's process belongs to it too.
    pub fn proc_fork(&mut self, parent: i32, child: i32) {
        if let Some(vip) = self.vhost_of(parent) {
            if self.procs.push((child, vip)).is_err() {
                self.kern.log(
                    Level::Warning,
                    format_args!("hydranet: process table full, pid {child} not in {vip}"),
                );
            }
        }
    }

    /// `process_exit` event.
    pub fn proc_exit(&mut self, pid: i32) {
        self.procs.retain(|p| p.0 != pid);
    }

    // ------------------------------------------------------------------ system calls

    /// `v_host(ip)` by `caller`, arguments taken as the syscall got them.
    pub fn sys_v_host(&mut self, caller: &Caller, ip: u64) -> Result<(), Errno> {
        let ip = syscall::fetch_v_host(&self.kern, caller, ip)?;
        self.apply_v_host(caller, ip)
    }

    /// `v_host` once the arguments are checked: the virtual host exists (a second process
    /// binding to it is fine) and the caller belongs to it, replacing an earlier binding.
    pub fn apply_v_host(&mut self, caller: &Caller, ip: Ipv4Addr) -> Result<(), Errno> {
        match self.host.v_host(ip) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        match self.procs.iter_mut().find(|p| p.0 == caller.pid) {
            Some(p) => p.1 = ip,
            None => self
                .procs
                .push((caller.pid, ip))
                .map_err(|_| Errno::ENOSPC)?,
        }
        self.poll();
        Ok(())
    }

    /// `setportopt(port, mode, params)` by `caller`.
    pub fn sys_setportopt(
        &mut self,
        caller: &Caller,
        port: u64,
        mode: u64,
        uparams: u64,
    ) -> Result<(), Errno> {
        let opt = syscall::fetch_setportopt(&self.kern, caller, port, mode, uparams)?;
        self.apply_setportopt(caller, opt)
    }

    /// `setportopt` once the arguments are checked, on the caller's virtual host.
    pub fn apply_setportopt(&mut self, caller: &Caller, opt: PortOpt) -> Result<(), Errno> {
        let vip = self.vhost_of(caller.pid).ok_or(Errno::EADDRNOTAVAIL)?;
        self.set_port(vip, opt)
    }

    fn set_port(&mut self, vip: Ipv4Addr, opt: PortOpt) -> Result<(), Errno> {
        self.host.setportopt(vip, opt.port, opt.mode, opt.params)?;
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, opt.port);
        let r = self.ensure_listener(vip, opt.port, target, false);
        self.poll();
        r
    }

    /// Serves `vip:port` through the relay to `target`; `replace` changes the target of an
    /// existing listener (for connections accepted from now on).
    fn ensure_listener(
        &mut self,
        vip: Ipv4Addr,
        port: u16,
        target: SocketAddrV4,
        replace: bool,
    ) -> Result<(), Errno> {
        if let Some(l) = self
            .listeners
            .iter_mut()
            .find(|l| l.vip == vip && l.port == port)
        {
            if replace {
                l.target = target;
            }
            return Ok(());
        }
        if self.listeners.is_full() {
            return Err(Errno::ENOSPC);
        }
        let handle = listen_on(&mut self.host.stack, vip, port, 128)?;
        let _ = self.listeners.push(Listener {
            vip,
            port,
            handle,
            target,
        });
        Ok(())
    }

    /// `hydranet_ctl(req, reqlen, resp, resplen)` by `caller`: `scratch` is kernel memory of
    /// at least `2 * MAX_LINE + 1` bytes. Returns the answer's length.
    #[allow(clippy::too_many_arguments)]
    pub fn sys_ctl(
        &mut self,
        caller: &Caller,
        ureq: u64,
        req_len: u64,
        uresp: u64,
        resp_len: u64,
        scratch: &mut [u8],
    ) -> Result<usize, Errno> {
        if scratch.len() < 2 * MAX_LINE + 1 {
            return Err(Errno::EINVAL);
        }
        let (req, resp) = scratch.split_at_mut(MAX_LINE);
        let n = syscall::fetch_ctl(&self.kern, caller, ureq, req_len, uresp, resp_len, req)?;
        let m = self.apply_ctl(&req[..n], resp);
        syscall::store_ctl(&mut self.kern, uresp, resp, m)
    }

    /// One control line; the answer line goes into `out` (at least `MAX_LINE` bytes).
    /// Returns its length.
    pub fn apply_ctl(&mut self, line: &[u8], out: &mut [u8]) -> usize {
        let mut w = LineWriter { buf: out, len: 0 };
        match Request::parse(line) {
            Err(r) => {
                let _ = write!(w, "err {} {}", r.errname, r.why);
            }
            Ok(req) => match self.ctl(req, &mut w) {
                Ok(()) => {}
                Err((e, what)) => {
                    w.len = 0;
                    let _ = write!(w, "err {} {}", wire_errname(e), what);
                }
            },
        }
        self.poll();
        w.len
    }

    fn ctl(&mut self, req: Request, w: &mut LineWriter<'_>) -> Result<(), (Errno, &'static str)> {
        let _ = w.write_str("ok");
        match req {
            Request::VHost(ip) => match self.host.v_host(ip) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(e) => Err((e, "v_host")),
            },
            Request::AcceptRedirector(ip) => {
                self.host
                    .add_redirector(ip)
                    .map_err(|e| (e, "redirector table full"))?;
                if !self.redirectors.contains(&ip) {
                    let _ = self.redirectors.push(ip);
                }
                Ok(())
            }
            Request::Group {
                vip,
                port,
                group_id,
                local_rank,
                key,
                members,
            } => {
                let mut ms: heapless::Vec<Member, { hydranet_core::ft::host::MAX_REPLICAS }> =
                    heapless::Vec::new();
                for &(rank, addr) in &members {
                    let _ = ms.push(Member { rank, addr });
                }
                let cfg = GroupConfig {
                    group_id,
                    local_rank,
                    members: &ms,
                    key,
                    incarnation: self.incarnation(),
                };
                self.host
                    .ft_group(vip, port, &cfg)
                    .map_err(|e| (e, "group"))
            }
            Request::SetPortOpt {
                vip,
                port,
                mode,
                params,
            } => self
                .set_port(vip, PortOpt { port, mode, params })
                .map_err(|e| (e, "setportopt")),
            Request::ServeRelay { vip, port, target } => self
                .ensure_listener(vip, port, target, true)
                .map_err(|e| (e, "serve")),
            Request::Status => {
                self.status(w);
                Ok(())
            }
            Request::Counters => {
                self.counters(w);
                Ok(())
            }
        }
    }

    /// A number that grows with every group joined, across loads too (the ack channel takes
    /// frames of an older incarnation for replays): tenths of a second since 2024, never the
    /// same twice in one load.
    fn incarnation(&mut self) -> u32 {
        const EPOCH_2024: u64 = 1_704_067_200;
        let tenths = (self.kern.wall_secs().saturating_sub(EPOCH_2024) * 10) as u32;
        let v = tenths.max(self.last_incarnation + 1);
        self.last_incarnation = v;
        v
    }

    fn status(&self, w: &mut LineWriter<'_>) {
        let _ = write!(w, " module=hydranet addr={} vhosts=", self.host.addr);
        for (i, v) in self.host.vhosts().iter().enumerate() {
            let _ = write!(w, "{}{v}", if i > 0 { "," } else { "" });
        }
        let _ = write!(w, " procs={}", self.procs.len());
        for l in &self.listeners {
            if let Some(role) = self.host.role(l.vip, l.port) {
                let role = match role {
                    Role::Primary => "primary",
                    Role::Backup => "backup",
                };
                let _ = write!(w, " role@{}:{}={role}", l.vip, l.port);
                if let Some(e) = self.host.epoch(l.vip, l.port) {
                    let _ = write!(w, " epoch@{}:{}={e}", l.vip, l.port);
                }
            }
        }
        let _ = write!(w, " services=");
        for (i, l) in self.listeners.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(w, "{sep}{}:{}=relay:{}", l.vip, l.port, l.target);
        }
        let _ = write!(w, " connections={}", self.live_connections());
    }

    fn counters(&self, w: &mut LineWriter<'_>) {
        let s = &self.stats;
        let f = &self.host.stats;
        let _ = write!(
            w,
            " mod.pfil_pass={} mod.pfil_consumed={} mod.pfil_dropped={} mod.out_packets={} \
             mod.out_errors={} mod.callouts={} mod.relays_opened={} mod.relays_refused={} \
             mod.relays_closed={} ft.tunneled_in={} ft.tunnel_from_stranger={} \
             ft.tunnel_malformed={} ft.chan_in={} ft.takeovers={} ft.step_downs={} \
             ft.backups_dropped={}",
            s.pfil_pass,
            s.pfil_consumed,
            s.pfil_dropped,
            s.out_packets,
            s.out_errors,
            s.callouts,
            s.relays_opened,
            s.relays_refused,
            s.relays_closed,
            f.tunneled_in,
            f.tunnel_from_stranger,
            f.tunnel_malformed,
            f.chan_in,
            f.takeovers,
            f.step_downs,
            f.backups_dropped,
        );
        for (k, v) in self.host.stack.tcpstat.fields() {
            let _ = write!(w, " tcp.{k}={v}");
        }
    }

    // ------------------------------------------------------------------ relays

    /// Accepts new connections, moves client data into the relays' rings. `true` when
    /// something moved.
    fn run_relays(&mut self, now: Instant) -> bool {
        let mut worked = false;
        for li in 0..self.listeners.len() {
            let l = self.listeners[li];
            while let Ok((h, _peer)) = self.host.stack.accept(l.handle) {
                worked = true;
                let ft = self.host.role(l.vip, l.port).is_some();
                let Some(id) = self
                    .storage
                    .relays
                    .iter()
                    .position(|r| r.state == RelayState::Free)
                else {
                    self.stats.relays_refused += 1;
                    abort(&mut self.host, now, h);
                    continue;
                };
                match self.kern.relay_open(id, l.target) {
                    Ok(()) => {
                        let r = &mut self.storage.relays[id];
                        r.reset();
                        r.state = RelayState::Connecting;
                        r.handle = Some(h);
                        r.ft = ft;
                        r.target = Some(l.target);
                        self.stats.relays_opened += 1;
                    }
                    Err(e) => {
                        self.stats.relays_refused += 1;
                        self.kern.log(
                            Level::Warning,
                            format_args!("hydranet: relay to {} failed: {e:?}", l.target),
                        );
                        abort(&mut self.host, now, h);
                    }
                }
            }
        }
        while let Some(d) = self.host.poll_delivery() {
            if let Some(r) = self
                .storage
                .relays
                .iter_mut()
                .find(|r| r.state != RelayState::Free && r.handle == Some(d.handle))
            {
                r.deliver_upto = Some(d.upto);
            }
        }
        for id in 0..MAX_RELAYS {
            let r = &mut self.storage.relays[id];
            let Some(h) = r.handle else { continue };
            if r.state == RelayState::Free || r.client_eof {
                continue;
            }
            let mut moved = false;
            loop {
                let free = r.to_server.free_slice();
                if free.is_empty() {
                    break;
                }
                let got = if r.ft {
                    let Some(upto) = r.deliver_upto else { break };
                    self.host.recv_delivered(now, h, upto, free)
                } else {
                    self.host.stack.recv(now, h, free, 0)
                };
                match got {
                    Ok(0) => {
                        r.client_eof = true;
                        moved = true;
                        break;
                    }
                    Ok(n) => {
                        r.to_server.commit(n);
                        moved = true;
                    }
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(_) => {
                        r.client_eof = true;
                        moved = true;
                        break;
                    }
                }
            }
            if moved {
                worked = true;
                if r.state == RelayState::Open {
                    self.kern.relay_kick(id);
                }
            } else if r.state == RelayState::Open
                && !r.server_eof
                && self.host.stack.readiness(h).is_ok_and(|(_, room)| room > 0)
            {
                // The server's answer may be waiting for room the client's ACKs just made.
                self.kern.relay_kick(id);
            }
        }
        worked
    }

    fn relay(&mut self, id: usize) -> Option<&mut Relay> {
        self.storage
            .relays
            .get_mut(id)
            .filter(|r| r.state != RelayState::Free)
    }

    /// Copies bytes for the server into `buf` without consuming them; the flag is the
    /// client's end of stream, once every byte before it was taken (shut the server's
    /// socket for writing then).
    pub fn relay_pull(&mut self, id: usize, buf: &mut [u8]) -> (usize, bool) {
        match self.relay(id) {
            Some(r) if r.state == RelayState::Open => {
                let n = r.to_server.peek(buf);
                (n, r.client_eof && n == r.to_server.len())
            }
            _ => (0, false),
        }
    }

    /// `n` bytes from [`relay_pull`](Self::relay_pull) reached the server's socket.
    pub fn relay_consumed(&mut self, id: usize, n: usize) {
        if let Some(r) = self.relay(id) {
            r.to_server.consume(n);
        }
        self.poll();
    }

    /// How many bytes of the server's answer the core's socket takes now.
    pub fn relay_room(&self, id: usize) -> usize {
        match self.storage.relays.get(id) {
            Some(r) if r.state == RelayState::Open && !r.server_eof => r
                .handle
                .and_then(|h| self.host.stack.readiness(h).ok())
                .map_or(0, |(_, room)| room),
            _ => 0,
        }
    }

    /// The server's bytes, for the client; returns how many the core took (all of them when
    /// no more than [`relay_room`](Self::relay_room) said).
    pub fn relay_push(&mut self, id: usize, data: &[u8]) -> usize {
        let now = self.now();
        let Some(h) = self
            .relay(id)
            .filter(|r| r.state == RelayState::Open)
            .and_then(|r| r.handle)
        else {
            return 0;
        };
        let n = self.host.stack.send(now, h, data, 0).unwrap_or(0);
        self.poll();
        n
    }

    /// The shim's news about relay `id`'s socket.
    pub fn relay_event(&mut self, id: usize, ev: RelayEvent) {
        let now = self.now();
        let Some(r) = self.storage.relays.get_mut(id) else {
            return;
        };
        if r.state == RelayState::Free {
            return;
        }
        match ev {
            RelayEvent::Connected => {
                r.state = RelayState::Open;
                self.kern.relay_kick(id);
            }
            RelayEvent::Eof => {
                r.server_eof = true;
                if let Some(h) = r.handle {
                    // The server's answer is complete: FIN after it, and the core finishes the
                    // connection on its own (the Linux relay's order).
                    let _ = self.host.stack.shutdown(now, h, Shutdown::Write);
                    let _ = self.host.stack.close(now, h);
                }
                r.reset();
                self.kern.relay_close(id);
                self.stats.relays_closed += 1;
            }
            RelayEvent::Error => {
                if let Some(h) = r.handle {
                    abort(&mut self.host, now, h);
                }
                r.reset();
                self.kern.relay_close(id);
                self.stats.relays_closed += 1;
            }
        }
        self.poll();
    }
}

/// Resets a client connection (`SO_LINGER` 0 and close, as `soabort`).
fn abort(host: &mut Host<'_>, now: Instant, h: SocketHandle) {
    let _ = host.stack.setsockopt(h, SockOpt::Linger(Some(0)));
    let _ = host.stack.close(now, h);
}

fn is_tcp_rst(pkt: &[u8]) -> bool {
    match ipv4::Ipv4Header::parse(pkt) {
        Ok((ip, seg)) => ip.protocol == ipv4::PROTO_TCP && seg.len() > 13 && seg[13] & 0x04 != 0,
        Err(_) => false,
    }
}

/// `fmt::Write` into a fixed buffer, dropping what does not fit (the answer stays one line).
struct LineWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for LineWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().min(MAX_LINE - 1) - self.len.min(MAX_LINE - 1);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        for b in &mut self.buf[self.len - n..self.len] {
            if b.is_ascii_control() {
                *b = b' ';
            }
        }
        if n < s.len() {
            return Err(fmt::Error);
        }
        Ok(())
    }
}
