//! The socket calls (FreeBSD `tcp_usrreq.c` plus the generic socket layer they sit under),
//! returning BSD errno values.

use core::net::{Ipv4Addr, SocketAddrV4};

#[cfg(feature = "alloc")]
use managed::ManagedSlice;

use crate::netinet::tcp_fsm::TcpState;
use crate::netinet::tcp_input::{keepinit, set_nofdref, tcp_close, tcp_drop};
use crate::netinet::tcp_subr::{request_wscale, TCPIP_HDR_LEN};
use crate::netinet::tcp_timer::TimerKind;
use crate::netinet::tcp_var::{tf, TcpCb};
use crate::socket::socketvar::{so, ss, QState, Socket};
use crate::stack::{SocketHandle, Stack};
use crate::time::Instant;
use crate::Errno;

/// The largest accept backlog (`kern.ipc.somaxconn`).
pub const SOMAXCONN: u16 = 128;
/// First and last ephemeral port (`net.inet.ip.portrange.first/last`).
pub const IPPORT_EPHEMERALFIRST: u16 = 10000;
pub const IPPORT_EPHEMERALLAST: u16 = 65535;

/// `shutdown(2)` directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Shutdown {
    Read,
    Write,
    Both,
}

/// `recv(2)`/`send(2)` flags the core understands.
pub mod msg {
    pub const OOB: u32 = 0x1;
    pub const PEEK: u32 = 0x2;
    pub const DONTWAIT: u32 = 0x80;
    pub const NOSIGNAL: u32 = 0x20000;
}

/// Socket options, with FreeBSD's names. Times are in seconds as the setsockopt API takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SockOpt {
    RcvBuf(u32),
    SndBuf(u32),
    ReuseAddr(bool),
    ReusePort(bool),
    KeepAlive(bool),
    /// `SO_LINGER`: `None` off, `Some(secs)` on.
    Linger(Option<u32>),
    NoDelay(bool),
    NoOpt(bool),
    NoPush(bool),
    MaxSeg(u32),
    KeepInit(u32),
    KeepIdle(u32),
    KeepIntvl(u32),
    KeepCnt(u32),
}

/// Names for [`Stack::getsockopt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OptName {
    RcvBuf,
    SndBuf,
    ReuseAddr,
    ReusePort,
    KeepAlive,
    Linger,
    Error,
    NoDelay,
    NoOpt,
    NoPush,
    MaxSeg,
    KeepInit,
    KeepIdle,
    KeepIntvl,
    KeepCnt,
}

/// FreeBSD's numeric option levels and names, for callers speaking the C API.
pub mod sockopt_raw {
    pub const SOL_SOCKET: i32 = 0xffff;
    pub const IPPROTO_TCP: i32 = 6;
    pub const SO_REUSEADDR: i32 = 0x4;
    pub const SO_KEEPALIVE: i32 = 0x8;
    pub const SO_LINGER: i32 = 0x80;
    pub const SO_REUSEPORT: i32 = 0x200;
    pub const SO_SNDBUF: i32 = 0x1001;
    pub const SO_RCVBUF: i32 = 0x1002;
    pub const SO_ERROR: i32 = 0x1007;
    pub const TCP_NODELAY: i32 = 1;
    pub const TCP_MAXSEG: i32 = 2;
    pub const TCP_NOPUSH: i32 = 4;
    pub const TCP_NOOPT: i32 = 8;
    pub const TCP_INFO: i32 = 32;
    pub const TCP_KEEPINIT: i32 = 128;
    pub const TCP_KEEPIDLE: i32 = 256;
    pub const TCP_KEEPINTVL: i32 = 512;
    pub const TCP_KEEPCNT: i32 = 1024;
}

impl SockOpt {
    /// Decodes `setsockopt(level, name, &value, sizeof(int))`.
    pub fn from_raw(level: i32, name: i32, value: i32) -> Result<SockOpt, Errno> {
        use sockopt_raw::*;
        let nonneg = |v: i32| u32::try_from(v).map_err(|_| Errno::EINVAL);
        Ok(match (level, name) {
            (SOL_SOCKET, SO_RCVBUF) => SockOpt::RcvBuf(nonneg(value)?),
            (SOL_SOCKET, SO_SNDBUF) => SockOpt::SndBuf(nonneg(value)?),
            (SOL_SOCKET, SO_REUSEADDR) => SockOpt::ReuseAddr(value != 0),
            (SOL_SOCKET, SO_REUSEPORT) => SockOpt::ReusePort(value != 0),
            (SOL_SOCKET, SO_KEEPALIVE) => SockOpt::KeepAlive(value != 0),
            (IPPROTO_TCP, TCP_NODELAY) => SockOpt::NoDelay(value != 0),
            (IPPROTO_TCP, TCP_NOOPT) => SockOpt::NoOpt(value != 0),
            (IPPROTO_TCP, TCP_NOPUSH) => SockOpt::NoPush(value != 0),
            (IPPROTO_TCP, TCP_MAXSEG) => SockOpt::MaxSeg(nonneg(value)?),
            (IPPROTO_TCP, TCP_KEEPINIT) => SockOpt::KeepInit(nonneg(value)?),
            (IPPROTO_TCP, TCP_KEEPIDLE) => SockOpt::KeepIdle(nonneg(value)?),
            (IPPROTO_TCP, TCP_KEEPINTVL) => SockOpt::KeepIntvl(nonneg(value)?),
            (IPPROTO_TCP, TCP_KEEPCNT) => SockOpt::KeepCnt(nonneg(value)?),
            (SOL_SOCKET, _) | (IPPROTO_TCP, _) => return Err(Errno::ENOPROTOOPT),
            _ => return Err(Errno::EINVAL),
        })
    }
}

impl OptName {
    pub fn from_raw(level: i32, name: i32) -> Result<OptName, Errno> {
        use sockopt_raw::*;
        Ok(match (level, name) {
            (SOL_SOCKET, SO_RCVBUF) => OptName::RcvBuf,
            (SOL_SOCKET, SO_SNDBUF) => OptName::SndBuf,
            (SOL_SOCKET, SO_REUSEADDR) => OptName::ReuseAddr,
            (SOL_SOCKET, SO_REUSEPORT) => OptName::ReusePort,
            (SOL_SOCKET, SO_KEEPALIVE) => OptName::KeepAlive,
            (SOL_SOCKET, SO_LINGER) => OptName::Linger,
            (SOL_SOCKET, SO_ERROR) => OptName::Error,
            (IPPROTO_TCP, TCP_NODELAY) => OptName::NoDelay,
            (IPPROTO_TCP, TCP_NOOPT) => OptName::NoOpt,
            (IPPROTO_TCP, TCP_NOPUSH) => OptName::NoPush,
            (IPPROTO_TCP, TCP_MAXSEG) => OptName::MaxSeg,
            (IPPROTO_TCP, TCP_KEEPINIT) => OptName::KeepInit,
            (IPPROTO_TCP, TCP_KEEPIDLE) => OptName::KeepIdle,
            (IPPROTO_TCP, TCP_KEEPINTVL) => OptName::KeepIntvl,
            (IPPROTO_TCP, TCP_KEEPCNT) => OptName::KeepCnt,
            (SOL_SOCKET, _) | (IPPROTO_TCP, _) => return Err(Errno::ENOPROTOOPT),
            _ => return Err(Errno::EINVAL),
        })
    }
}

/// `struct tcp_info`, the fields FreeBSD fills that the core can know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpInfo {
    pub tcpi_state: u8,
    pub tcpi_options: u8,
    pub tcpi_snd_wscale: u8,
    pub tcpi_rcv_wscale: u8,
    /// Microseconds, as FreeBSD reports them.
    pub tcpi_rto: u32,
    pub tcpi_snd_mss: u32,
    pub tcpi_rcv_mss: u32,
    pub tcpi_rtt: u32,
    pub tcpi_rttvar: u32,
    pub tcpi_snd_ssthresh: u32,
    pub tcpi_snd_cwnd: u32,
    pub tcpi_rcv_space: u32,
    pub tcpi_snd_wnd: u32,
    pub tcpi_snd_nxt: u32,
    pub tcpi_rcv_nxt: u32,
    pub tcpi_snd_rexmitpack: u32,
    pub tcpi_rcv_ooopack: u32,
}

pub const TCPI_OPT_TIMESTAMPS: u8 = 0x01;
pub const TCPI_OPT_SACK: u8 = 0x02;
pub const TCPI_OPT_WSCALE: u8 = 0x04;
pub const TCPI_OPT_ECN: u8 = 0x08;

/// An option value from [`Stack::getsockopt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OptValue {
    Int(i64),
    Linger(Option<u32>),
    Error(Option<Errno>),
}

impl<'a> Stack<'a> {
    pub(crate) fn sock(&self, h: SocketHandle) -> Result<&Socket<'a>, Errno> {
        match self.sockets.get(h.idx as usize) {
            Some(s) if s.in_use && s.generation == h.gen && s.has_fd() => Ok(s),
            _ => Err(Errno::EBADF),
        }
    }
    pub(crate) fn sock_mut(&mut self, h: SocketHandle) -> Result<&mut Socket<'a>, Errno> {
        match self.sockets.get_mut(h.idx as usize) {
            Some(s) if s.in_use && s.generation == h.gen && s.has_fd() => Ok(s),
            _ => Err(Errno::EBADF),
        }
    }

    /// Takes a free slot, growing the table when the stack owns it.
    pub(crate) fn alloc_socket(&mut self) -> Option<usize> {
        let cfg = self.sysctl.clone();
        if let Some(i) = self.sockets.iter().position(|s| !s.in_use) {
            self.sockets[i].attach(&cfg);
            return Some(i);
        }
        #[cfg(feature = "alloc")]
        if let ManagedSlice::Owned(v) = &mut self.sockets {
            if v.len() >= u16::MAX as usize {
                return None;
            }
            let rcv =
                crate::socket::sockbuf::SockBuf::new(alloc::vec![0u8; cfg.recvspace as usize]);
            let snd =
                crate::socket::sockbuf::SockBuf::new(alloc::vec![0u8; cfg.sendspace as usize]);
            let mut s = Socket::new(rcv, snd, &cfg);
            s.attach(&cfg);
            v.push(s);
            return Some(v.len() - 1);
        }
        None
    }

    /// `socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)`. `ENOBUFS` when every slot is taken.
    pub fn socket(&mut self) -> Result<SocketHandle, Errno> {
        let i = self.alloc_socket().ok_or(Errno::ENOBUFS)?;
        let s = &self.sockets[i];
        Ok(SocketHandle {
            idx: i as u16,
            gen: s.generation,
        })
    }

    fn port_in_use(&self, addr: Ipv4Addr, port: u16, except: usize) -> bool {
        self.sockets.iter().enumerate().any(|(i, s)| {
            i != except
                && s.in_use
                && s.inp.lport == port
                && (s.inp.laddr == addr
                    || s.inp.laddr == Ipv4Addr::UNSPECIFIED
                    || addr == Ipv4Addr::UNSPECIFIED)
                && (s.so_options & so::REUSEADDR == 0 || s.tp.t_state != TcpState::TimeWait)
                && s.so_options & so::REUSEPORT == 0
        })
    }

    fn ephemeral_port(&mut self, addr: Ipv4Addr, except: usize) -> Result<u16, Errno> {
        let span = (IPPORT_EPHEMERALLAST - IPPORT_EPHEMERALFIRST) as u64 + 1;
        let start = self.next_random() % span;
        for k in 0..span {
            let p = IPPORT_EPHEMERALFIRST + ((start + k) % span) as u16;
            if !self.port_in_use(addr, p, except) {
                return Ok(p);
            }
        }
        Err(Errno::EADDRNOTAVAIL)
    }

    /// `bind(2)`. The address must be ours (or unspecified).
    pub fn bind(&mut self, h: SocketHandle, addr: SocketAddrV4) -> Result<(), Errno> {
        let s = self.sock(h)?;
        if s.inp.lport != 0 {
            return Err(Errno::EINVAL);
        }
        let ip = *addr.ip();
        if ip != Ipv4Addr::UNSPECIFIED && !self.is_local(ip) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        let i = h.idx as usize;
        let port = if addr.port() == 0 {
            self.ephemeral_port(ip, i)?
        } else {
            let reuse = self.sockets[i].so_options & (so::REUSEADDR | so::REUSEPORT) != 0;
            if self.port_in_use(ip, addr.port(), i) && !reuse {
                return Err(Errno::EADDRINUSE);
            }
            addr.port()
        };
        let s = &mut self.sockets[i];
        s.inp.laddr = ip;
        s.inp.lport = port;
        Ok(())
    }

    /// `listen(2)`.
    pub fn listen(&mut self, h: SocketHandle, backlog: i32) -> Result<(), Errno> {
        let i = h.idx as usize;
        {
            let s = self.sock(h)?;
            if s.so_state & (ss::ISCONNECTED | ss::ISCONNECTING | ss::ISDISCONNECTING) != 0
                || !matches!(s.tp.t_state, TcpState::Closed | TcpState::Listen)
            {
                return Err(Errno::EINVAL);
            }
        }
        if self.sockets[i].inp.lport == 0 {
            let p = self.ephemeral_port(Ipv4Addr::UNSPECIFIED, i)?;
            self.sockets[i].inp.lport = p;
        }
        let s = &mut self.sockets[i];
        s.so_qlimit = if backlog < 0 || backlog > SOMAXCONN as i32 {
            SOMAXCONN
        } else {
            backlog as u16
        };
        s.so_options |= so::ACCEPTCONN;
        s.tp.t_state = TcpState::Listen;
        Ok(())
    }

    /// `accept(2)`: the oldest completed connection. `EWOULDBLOCK` when none is ready.
    pub fn accept(&mut self, h: SocketHandle) -> Result<(SocketHandle, SocketAddrV4), Errno> {
        let l = h.idx as usize;
        let s = self.sock(h)?;
        if !s.is_listening() {
            return Err(Errno::EINVAL);
        }
        let mut best: Option<(usize, u32)> = None;
        for (i, c) in self.sockets.iter().enumerate() {
            if let QState::Complete { head, order } = c.so_qstate {
                if c.in_use && head as usize == l {
                    let older = match best {
                        None => true,
                        Some((_, o)) => (order.wrapping_sub(o) as i32) < 0,
                    };
                    if older {
                        best = Some((i, order));
                    }
                }
            }
        }
        let Some((i, _)) = best else {
            if let Some(e) = self.sockets[l].so_error.take() {
                return Err(e);
            }
            return Err(Errno::EWOULDBLOCK);
        };
        let c = &mut self.sockets[i];
        c.so_qstate = QState::None;
        c.so_state &= !ss::NOFDREF;
        self.tcpstat.accepts += 1;
        let c = &self.sockets[i];
        Ok((
            SocketHandle {
                idx: i as u16,
                gen: c.generation,
            },
            SocketAddrV4::new(c.inp.faddr, c.inp.fport),
        ))
    }

    /// `connect(2)`, non-blocking: `EINPROGRESS` once the SYN is queued. The connection's
    /// outcome arrives as an event and through `SO_ERROR`.
    pub fn connect(
        &mut self,
        now: Instant,
        h: SocketHandle,
        to: SocketAddrV4,
    ) -> Result<(), Errno> {
        let i = h.idx as usize;
        {
            let s = self.sock(h)?;
            if s.is_listening() {
                return Err(Errno::EOPNOTSUPP);
            }
            if s.so_state & ss::ISCONNECTING != 0 {
                return Err(Errno::EALREADY);
            }
            if s.so_state & ss::ISCONNECTED != 0 || s.tp.t_state != TcpState::Closed {
                return Err(Errno::EISCONN);
            }
            if s.so_state & ss::ISDISCONNECTED != 0 {
                return Err(Errno::EINVAL);
            }
        }
        if to.ip().is_unspecified()
            || to.ip().is_broadcast()
            || to.ip().is_multicast()
            || to.port() == 0
        {
            return Err(Errno::EADDRNOTAVAIL);
        }
        // Source address: the bound one, else our first.
        let laddr = match self.sockets[i].inp.laddr {
            a if a != Ipv4Addr::UNSPECIFIED => a,
            _ => *self.addresses().first().ok_or(Errno::EADDRNOTAVAIL)?,
        };
        if self.sockets[i].inp.lport == 0 {
            let p = self.ephemeral_port(laddr, i)?;
            self.sockets[i].inp.lport = p;
        }
        let lport = self.sockets[i].inp.lport;
        if self
            .lookup_conn(laddr, lport, *to.ip(), to.port())
            .is_some()
        {
            return Err(Errno::EADDRINUSE);
        }
        let iss = self
            .secret
            .isn(now.total_micros(), laddr, lport, *to.ip(), to.port());
        let ts_offset = self.secret.ts_offset(laddr, lport, *to.ip(), to.port());
        let wscale = request_wscale(&self.sysctl);
        let cfg = self.sysctl.clone();
        let mtu = self.mtu;
        let encap = self.encap_overhead;
        self.tcpstat.connattempt += 1;
        let s = &mut self.sockets[i];
        s.inp.laddr = laddr;
        s.inp.faddr = *to.ip();
        s.inp.fport = to.port();
        let tp = &mut s.tp;
        tp.request_r_scale = wscale;
        tp.ts_offset = ts_offset;
        tp.iss = iss;
        tp.snd_una = iss;
        tp.snd_nxt = iss;
        tp.snd_max = iss;
        tp.snd_up = iss;
        tp.snd_recover = iss;
        // t_maxseg stays at mssdflt until the peer's MSS option arrives (tcp_mss).
        let _ = (mtu, encap, TCPIP_HDR_LEN);
        tp.t_state = TcpState::SynSent;
        tp.t_rcvtime = now.ticks();
        s.so_state |= ss::ISCONNECTING;
        let t = keepinit(s, &cfg);
        s.tp.t_timers.activate(TimerKind::Keep, now, t);
        s.output_wanted = true;
        Err(Errno::EINPROGRESS)
    }

    /// `send(2)`: queues what fits in the send buffer.
    pub fn send(
        &mut self,
        _now: Instant,
        h: SocketHandle,
        data: &[u8],
        flags: u32,
    ) -> Result<usize, Errno> {
        let s = self.sock_mut(h)?;
        if flags & msg::OOB != 0 {
            // deviation: no urgent-data send path.
            return Err(Errno::EOPNOTSUPP);
        }
        if s.so_snd_cantsendmore {
            return Err(Errno::EPIPE);
        }
        if let Some(e) = s.so_error.take() {
            return Err(e);
        }
        if s.so_state & (ss::ISCONNECTED | ss::ISCONNECTING) == 0 {
            return Err(Errno::ENOTCONN);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = s.so_snd.append(data);
        if n == 0 {
            return Err(Errno::EWOULDBLOCK);
        }
        if s.tp.ft.ack_ahead.is_some() {
            crate::netinet::tcp_input::ft_apply_ack_ahead(s);
        }
        if s.tp.t_state.have_established() || s.tp.t_state == TcpState::SynReceived {
            s.output_wanted = true;
        }
        Ok(n)
    }

    /// `recv(2)`: `Ok(0)` is end of stream.
    pub fn recv(
        &mut self,
        _now: Instant,
        h: SocketHandle,
        buf: &mut [u8],
        flags: u32,
    ) -> Result<usize, Errno> {
        let s = self.sock_mut(h)?;
        if s.tp.ft.read_limit.is_some() {
            return ft_recv(s, buf, flags);
        }
        if s.is_listening() {
            return Err(Errno::ENOTCONN);
        }
        if flags & msg::OOB != 0 {
            return Err(Errno::EINVAL);
        }
        if s.so_rcv.is_empty() {
            if let Some(e) = s.so_error.take() {
                return Err(e);
            }
            if s.so_rcv_cantrcvmore {
                return Ok(0);
            }
            if s.so_state & (ss::ISCONNECTED | ss::ISCONNECTING) == 0 {
                return Err(Errno::ENOTCONN);
            }
            return Err(Errno::EWOULDBLOCK);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if flags & msg::PEEK != 0 {
            s.so_rcv.peek(0, buf)
        } else {
            let n = s.so_rcv.read(buf);
            // tcp_usr_rcvd: the window may have opened enough to tell the peer.
            if s.tp.t_state.have_established() {
                s.output_wanted = true;
            }
            n
        };
        Ok(n)
    }

    /// Bytes ready to read and room to write, for poll(2)-style readiness.
    pub fn readiness(&self, h: SocketHandle) -> Result<(usize, usize), Errno> {
        let s = self.sock(h)?;
        Ok((s.so_rcv.len(), s.so_snd.space()))
    }

    /// `shutdown(2)`.
    pub fn shutdown(&mut self, now: Instant, h: SocketHandle, how: Shutdown) -> Result<(), Errno> {
        let i = h.idx as usize;
        {
            let s = self.sock(h)?;
            if s.so_state & (ss::ISCONNECTED | ss::ISCONNECTING | ss::ISDISCONNECTING) == 0 {
                return Err(Errno::ENOTCONN);
            }
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            let s = &mut self.sockets[i];
            s.so_rcv_cantrcvmore = true;
            s.so_rcv.clear();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.sockets[i].socantsendmore();
            self.tcp_usrclosed(now, i);
            if self.sockets[i].in_use {
                self.sockets[i].output_wanted = true;
            }
        }
        Ok(())
    }

    /// `tcp_usrclosed`: our side is done sending.
    fn tcp_usrclosed(&mut self, now: Instant, i: usize) {
        let state = self.sockets[i].tp.t_state;
        match state {
            TcpState::Listen | TcpState::Closed => {
                let (mut ctx, socks) = self.ctx_parts(now);
                tcp_close(&mut socks[i], &mut ctx);
            }
            TcpState::SynSent | TcpState::SynReceived => {
                self.sockets[i].tp.t_flags |= tf::NEEDFIN;
            }
            TcpState::Established => self.sockets[i].tp.t_state = TcpState::FinWait1,
            TcpState::CloseWait => self.sockets[i].tp.t_state = TcpState::LastAck,
            _ => {}
        }
        let so = &mut self.sockets[i];
        if so.tp.t_state >= TcpState::FinWait2 {
            so.soisdisconnected();
            if so.tp.t_state == TcpState::FinWait2 {
                let t = crate::netinet::tcp_input::maxidle(so, &self.sysctl).max(1);
                so.tp.t_timers.activate(TimerKind::TwoMsl, now, t);
            }
        }
    }

    /// `close(2)`: the handle is gone; the connection finishes on its own (or is reset, with
    /// `SO_LINGER` 0).
    pub fn close(&mut self, now: Instant, h: SocketHandle) -> Result<(), Errno> {
        let i = h.idx as usize;
        self.sock(h)?;
        if self.sockets[i].is_listening() {
            // Abort every connection still waiting in the queues (soabort -> tcp_drop).
            for c in 0..self.sockets.len() {
                let queued = match self.sockets[c].so_qstate {
                    QState::Incomplete { head } | QState::Complete { head, .. } => {
                        head as usize == i
                    }
                    QState::None => false,
                };
                if queued && self.sockets[c].in_use {
                    self.sockets[c].so_qstate = QState::None;
                    let (mut ctx, socks) = self.ctx_parts(now);
                    tcp_drop(&mut socks[c], &mut ctx, Some(Errno::ECONNABORTED));
                    self.reap(c);
                }
            }
            let lid = (i as u16, self.sockets[i].generation);
            self.syncache.drop_listener(lid);
            let so = &mut self.sockets[i];
            so.so_options &= !so::ACCEPTCONN;
            so.tp.t_state = TcpState::Closed;
            set_nofdref(so);
            so.detach();
            return Ok(());
        }
        set_nofdref(&mut self.sockets[i]);
        let state = self.sockets[i].tp.t_state;
        let linger0 = {
            let s = &self.sockets[i];
            s.so_options & so::LINGER != 0 && s.so_linger == 0
        };
        if state < TcpState::Established {
            let (mut ctx, socks) = self.ctx_parts(now);
            if state != TcpState::Closed {
                tcp_close(&mut socks[i], &mut ctx);
            } else {
                socks[i].tp.t_state = TcpState::Closed;
            }
        } else if linger0 {
            let (mut ctx, socks) = self.ctx_parts(now);
            tcp_drop(&mut socks[i], &mut ctx, None);
        } else {
            let so = &mut self.sockets[i];
            // soisdisconnecting: nobody will read any more.
            so.so_state |= ss::ISDISCONNECTING;
            so.so_rcv_cantrcvmore = true;
            so.so_rcv.clear();
            so.socantsendmore();
            self.tcp_usrclosed(now, i);
            if self.sockets[i].in_use {
                self.sockets[i].output_wanted = true;
            }
        }
        self.reap(i);
        Ok(())
    }

    /// `setsockopt(2)`.
    pub fn setsockopt(&mut self, h: SocketHandle, opt: SockOpt) -> Result<(), Errno> {
        let maxsockbuf = self.sysctl.maxsockbuf;
        let cfg = self.sysctl.clone();
        let now = self.now;
        let s = self.sock_mut(h)?;
        let secs_to_ms = |v: u32| -> Result<u32, Errno> {
            if v == 0 || v > i32::MAX as u32 / 1000 {
                Err(Errno::EINVAL)
            } else {
                Ok(v * 1000)
            }
        };
        match opt {
            SockOpt::RcvBuf(n) | SockOpt::SndBuf(n) => {
                if n == 0 {
                    return Err(Errno::EINVAL);
                }
                // sbreserve refuses more than the mbuf-adjusted maxsockbuf.
                let max_adj = maxsockbuf.saturating_mul(2048) / (256 + 2048);
                if n as u64 > max_adj {
                    return Err(Errno::ENOBUFS);
                }
                if matches!(opt, SockOpt::RcvBuf(_)) {
                    s.so_rcv.reserve(n);
                    s.so_rcv_user = true;
                } else {
                    s.so_snd.reserve(n);
                    s.so_snd_user = true;
                }
            }
            SockOpt::ReuseAddr(on) => set_bit(&mut s.so_options, so::REUSEADDR, on),
            SockOpt::ReusePort(on) => set_bit(&mut s.so_options, so::REUSEPORT, on),
            SockOpt::KeepAlive(on) => set_bit(&mut s.so_options, so::KEEPALIVE, on),
            SockOpt::Linger(l) => {
                set_bit(&mut s.so_options, so::LINGER, l.is_some());
                s.so_linger = l.unwrap_or(0);
            }
            SockOpt::NoDelay(on) => set_flag(&mut s.tp, tf::NODELAY, on),
            SockOpt::NoOpt(on) => set_flag(&mut s.tp, tf::NOOPT, on),
            SockOpt::NoPush(on) => {
                set_flag(&mut s.tp, tf::NOPUSH, on);
                if !on && s.tp.t_state.have_established() {
                    s.output_wanted = true;
                }
            }
            SockOpt::MaxSeg(v) => {
                if v == 0 || v > 65535 {
                    return Err(Errno::EINVAL);
                }
                s.tp.t_maxseg = s.tp.t_maxseg.min(v).max(64);
            }
            SockOpt::KeepInit(v) => {
                s.tp.t_keepinit = secs_to_ms(v)?;
            }
            SockOpt::KeepIdle(v) => {
                s.tp.t_keepidle = secs_to_ms(v)?;
                // tcp_ctloutput: an established connection's keepalive restarts from now.
                if s.tp.t_state.have_established() && s.tp.t_timers.active(TimerKind::Keep) {
                    let t = s.tp.t_keepidle;
                    s.tp.t_timers.activate(TimerKind::Keep, now, t);
                }
            }
            SockOpt::KeepIntvl(v) => {
                s.tp.t_keepintvl = secs_to_ms(v)?;
                // A half-closed connection's FIN_WAIT_2 timeout follows the new idle limit.
                if s.tp.t_state == TcpState::FinWait2 {
                    let t = crate::netinet::tcp_input::maxidle(s, &cfg).max(1);
                    s.tp.t_timers.activate(TimerKind::TwoMsl, now, t);
                }
            }
            SockOpt::KeepCnt(v) => {
                if v == 0 {
                    return Err(Errno::EINVAL);
                }
                s.tp.t_keepcnt = v;
                if s.tp.t_state == TcpState::FinWait2 {
                    let t = crate::netinet::tcp_input::maxidle(s, &cfg).max(1);
                    s.tp.t_timers.activate(TimerKind::TwoMsl, now, t);
                }
            }
        }
        Ok(())
    }

    /// `getsockopt(2)`. `SO_ERROR` clears the pending error, as it does on FreeBSD.
    pub fn getsockopt(&mut self, h: SocketHandle, name: OptName) -> Result<OptValue, Errno> {
        let cfg = self.sysctl.clone();
        let s = self.sock_mut(h)?;
        let int = |v: u64| OptValue::Int(v as i64);
        let bit = |b: u16| OptValue::Int((s.so_options & b != 0) as i64);
        Ok(match name {
            OptName::RcvBuf => int(s.so_rcv.hiwat() as u64),
            OptName::SndBuf => int(s.so_snd.hiwat() as u64),
            OptName::ReuseAddr => bit(so::REUSEADDR),
            OptName::ReusePort => bit(so::REUSEPORT),
            OptName::KeepAlive => bit(so::KEEPALIVE),
            OptName::Linger => {
                OptValue::Linger((s.so_options & so::LINGER != 0).then_some(s.so_linger))
            }
            OptName::Error => OptValue::Error(s.so_error.take()),
            OptName::NoDelay => int(s.tp.has_flag(tf::NODELAY) as u64),
            OptName::NoOpt => int(s.tp.has_flag(tf::NOOPT) as u64),
            OptName::NoPush => int(s.tp.has_flag(tf::NOPUSH) as u64),
            OptName::MaxSeg => int(s.tp.t_maxseg as u64),
            OptName::KeepInit => int((keepinit(s, &cfg) / 1000) as u64),
            OptName::KeepIdle => int((crate::netinet::tcp_input::keepidle(s, &cfg) / 1000) as u64),
            OptName::KeepIntvl => {
                int((crate::netinet::tcp_input::keepintvl(s, &cfg) / 1000) as u64)
            }
            OptName::KeepCnt => int(crate::netinet::tcp_input::keepcnt(s, &cfg) as u64),
        })
    }

    /// `getsockopt(TCP_INFO)`.
    pub fn tcp_info(&self, h: SocketHandle) -> Result<TcpInfo, Errno> {
        let s = self.sock(h)?;
        let tp = &s.tp;
        let mut options = 0;
        if tp.has_flag(tf::RCVD_TSTMP) && tp.has_flag(tf::REQ_TSTMP) {
            options |= TCPI_OPT_TIMESTAMPS;
        }
        if tp.has_flag(tf::SACK_PERMIT) && tp.t_state.have_established() {
            options |= TCPI_OPT_SACK;
        }
        if tp.has_flag(tf::RCVD_SCALE) && tp.has_flag(tf::REQ_SCALE) {
            options |= TCPI_OPT_WSCALE;
        }
        if tp.t_flags2 & crate::netinet::tcp_var::tf2::ECN_PERMIT != 0 {
            options |= TCPI_OPT_ECN;
        }
        Ok(TcpInfo {
            tcpi_state: tp.t_state as u8,
            tcpi_options: options,
            tcpi_snd_wscale: tp.snd_scale,
            tcpi_rcv_wscale: tp.rcv_scale,
            tcpi_rto: tp.t_rxtcur.saturating_mul(1000),
            tcpi_snd_mss: tp.t_maxseg,
            tcpi_rcv_mss: tp.t_maxseg,
            tcpi_rtt: ((tp.t_srtt as u64 * 1000) >> crate::netinet::tcp_timer::TCP_RTT_SHIFT)
                as u32,
            tcpi_rttvar: ((tp.t_rttvar as u64 * 1000)
                >> crate::netinet::tcp_timer::TCP_RTTVAR_SHIFT) as u32,
            tcpi_snd_ssthresh: tp.snd_ssthresh,
            tcpi_snd_cwnd: tp.snd_cwnd,
            tcpi_rcv_space: tp.rcv_wnd,
            tcpi_snd_wnd: tp.snd_wnd,
            tcpi_snd_nxt: tp.snd_nxt.0,
            tcpi_rcv_nxt: tp.rcv_nxt.0,
            tcpi_snd_rexmitpack: 0,
            tcpi_rcv_ooopack: 0,
        })
    }

    /// The connection state of a socket.
    pub fn state(&self, h: SocketHandle) -> Result<TcpState, Errno> {
        Ok(self.sock(h)?.tp.t_state)
    }

    /// Local and peer addresses.
    pub fn local_addr(&self, h: SocketHandle) -> Result<SocketAddrV4, Errno> {
        let s = self.sock(h)?;
        Ok(SocketAddrV4::new(s.inp.laddr, s.inp.lport))
    }
    pub fn peer_addr(&self, h: SocketHandle) -> Result<SocketAddrV4, Errno> {
        let s = self.sock(h)?;
        if s.inp.fport == 0 {
            return Err(Errno::ENOTCONN);
        }
        Ok(SocketAddrV4::new(s.inp.faddr, s.inp.fport))
    }
    /// Whether a pending connect finished (and how): `None` while still connecting.
    pub fn connect_result(&mut self, h: SocketHandle) -> Result<Option<Result<(), Errno>>, Errno> {
        let s = self.sock_mut(h)?;
        if s.so_state & ss::ISCONNECTED != 0 {
            return Ok(Some(Ok(())));
        }
        if let Some(e) = s.so_error.take() {
            return Ok(Some(Err(e)));
        }
        if s.so_state & ss::ISCONNECTING != 0 && s.tp.t_state != TcpState::Closed {
            return Ok(None);
        }
        Ok(Some(Err(Errno::ECONNREFUSED)))
    }
    /// The pending socket error without clearing it.
    pub fn peek_error(&self, h: SocketHandle) -> Result<Option<Errno>, Errno> {
        Ok(self.sock(h)?.so_error)
    }
    /// Bytes acknowledged by the peer so far is not tracked; bytes still queued to send:
    pub fn send_queue(&self, h: SocketHandle) -> Result<usize, Errno> {
        Ok(self.sock(h)?.so_snd.len())
    }
}

/// `recv` on a socket whose readable data is bounded by the group's delivery order.
fn ft_recv(s: &mut Socket<'_>, buf: &mut [u8], flags: u32) -> Result<usize, Errno> {
    let limit = s.tp.ft.read_limit.unwrap_or(s.tp.rcv_nxt);
    let head = s.tp.ft.rcv_read;
    let fin_seen = s.tp.t_state.have_rcvd_fin();
    // Sequence space of the FIN (if any) sits just after the data.
    let data_end = if fin_seen {
        s.tp.rcv_nxt - 1
    } else {
        s.tp.rcv_nxt
    };
    let allowed_end = if crate::netinet::tcp_seq::seq_lt(limit, data_end) {
        limit
    } else {
        data_end
    };
    let avail = if crate::netinet::tcp_seq::seq_gt(allowed_end, head) {
        ((allowed_end - head) as usize).min(s.so_rcv.len())
    } else {
        0
    };
    if avail == 0 {
        if let Some(e) = s.so_error.take() {
            return Err(e);
        }
        // End of stream once the FIN itself was delivered in the group's order.
        if fin_seen && crate::netinet::tcp_seq::seq_geq(limit, s.tp.rcv_nxt) && s.so_rcv.is_empty()
        {
            return Ok(0);
        }
        if s.so_rcv_cantrcvmore && !fin_seen {
            return Ok(0);
        }
        return Err(Errno::EWOULDBLOCK);
    }
    let want = buf.len().min(avail);
    let n = if flags & msg::PEEK != 0 {
        s.so_rcv.peek(0, &mut buf[..want])
    } else {
        let n = s.so_rcv.read(&mut buf[..want]);
        s.tp.ft.rcv_read += n as u32;
        if s.tp.t_state.have_established() {
            s.output_wanted = true;
        }
        n
    };
    Ok(n)
}

fn set_bit(bits: &mut u16, b: u16, on: bool) {
    if on {
        *bits |= b;
    } else {
        *bits &= !b;
    }
}

fn set_flag(tp: &mut TcpCb, f: u32, on: bool) {
    if on {
        tp.t_flags |= f;
    } else {
        tp.t_flags &= !f;
    }
}
