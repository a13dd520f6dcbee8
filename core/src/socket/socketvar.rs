//! The socket a TCP connection lives in: FreeBSD's `struct socket` (`socketvar.h`) and
//! `struct inpcb` (`in_pcb.h`), reduced to what TCP over IPv4 needs.

use core::net::Ipv4Addr;

use crate::netinet::tcp_subr::newtcpcb;
use crate::netinet::tcp_sysctl::TcpSysctl;
use crate::netinet::tcp_var::TcpCb;
use crate::socket::sockbuf::SockBuf;
use crate::Errno;

/// Addresses and ports of a connection (`struct inpcb`'s IPv4 part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Inpcb {
    pub laddr: Ipv4Addr,
    pub lport: u16,
    pub faddr: Ipv4Addr,
    pub fport: u16,
}

impl Inpcb {
    pub const UNBOUND: Inpcb = Inpcb {
        laddr: Ipv4Addr::UNSPECIFIED,
        lport: 0,
        faddr: Ipv4Addr::UNSPECIFIED,
        fport: 0,
    };
}

/// `so_state` bits.
pub mod ss {
    pub const ISCONNECTED: u16 = 0x0002;
    pub const ISCONNECTING: u16 = 0x0004;
    pub const ISDISCONNECTING: u16 = 0x0008;
    pub const NBIO: u16 = 0x0100;
    pub const ISDISCONNECTED: u16 = 0x2000;
    /// No user handle refers to the socket any more (closed, or never accepted).
    pub const NOFDREF: u16 = 0x0001;
}

/// `so_options` bits, with FreeBSD's values (they are also the `SO_*` option names).
pub mod so {
    pub const ACCEPTCONN: u16 = 0x0002;
    pub const REUSEADDR: u16 = 0x0004;
    pub const KEEPALIVE: u16 = 0x0008;
    pub const LINGER: u16 = 0x0080;
    pub const REUSEPORT: u16 = 0x0200;
}

/// Where a socket stands in its listener's queues (`so_qstate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QState {
    None,
    /// Created by the syncache, handshake not yet complete (`SQ_INCOMP`).
    Incomplete {
        head: u16,
    },
    /// Handshake complete, waiting for `accept`.
    Complete {
        head: u16,
        order: u32,
    },
}

/// Readiness bits reported through `Stack::poll_event`.
pub mod ev {
    pub const READABLE: u8 = 0x01;
    pub const WRITABLE: u8 = 0x02;
    pub const CONNECTED: u8 = 0x04;
    pub const ERROR: u8 = 0x08;
    pub const CLOSED: u8 = 0x10;
    pub const ACCEPTABLE: u8 = 0x20;
}

/// One socket slot. Buffers stay with the slot across reuse, so a stack without an allocator
/// recycles the caller's storage.
#[derive(Debug)]
pub struct Socket<'a> {
    pub in_use: bool,
    /// Bumped on every allocation so a stale handle cannot reach a new socket.
    pub generation: u16,
    pub so_state: u16,
    pub so_options: u16,
    /// `SO_LINGER` time in seconds.
    pub so_linger: u32,
    pub so_error: Option<Errno>,
    /// `SBS_CANTRCVMORE` on `so_rcv`.
    pub so_rcv_cantrcvmore: bool,
    /// `SBS_CANTSENDMORE` on `so_snd`.
    pub so_snd_cantsendmore: bool,
    pub so_rcv: SockBuf<'a>,
    pub so_snd: SockBuf<'a>,
    pub so_qlimit: u16,
    pub so_qstate: QState,
    /// The user set `SO_RCVBUF`/`SO_SNDBUF` (FreeBSD's `SB_AUTOSIZE` cleared): `tcp_mss` leaves
    /// the sizes alone except for MSS rounding.
    pub so_rcv_user: bool,
    pub so_snd_user: bool,
    pub inp: Inpcb,
    pub tp: TcpCb,
    /// `tcp_output` should be called: set wherever FreeBSD would call it.
    pub output_wanted: bool,
    pub events: u8,
}

impl<'a> Socket<'a> {
    pub fn new(rcv: SockBuf<'a>, snd: SockBuf<'a>, cfg: &TcpSysctl) -> Self {
        Socket {
            in_use: false,
            generation: 0,
            so_state: 0,
            so_options: 0,
            so_linger: 0,
            so_error: None,
            so_rcv_cantrcvmore: false,
            so_snd_cantsendmore: false,
            so_rcv: rcv,
            so_snd: snd,
            so_qlimit: 0,
            so_qstate: QState::None,
            so_rcv_user: false,
            so_snd_user: false,
            inp: Inpcb::UNBOUND,
            tp: newtcpcb(cfg),
            output_wanted: false,
            events: 0,
        }
    }

    /// Prepares a free slot for a new socket (`socreate` + `tcp_attach`).
    pub fn attach(&mut self, cfg: &TcpSysctl) {
        self.in_use = true;
        self.generation = self.generation.wrapping_add(1);
        self.so_state = 0;
        self.so_options = 0;
        self.so_linger = 0;
        self.so_error = None;
        self.so_rcv_cantrcvmore = false;
        self.so_snd_cantsendmore = false;
        self.so_rcv.clear();
        self.so_snd.clear();
        self.so_rcv.set_hiwat(cfg.recvspace);
        self.so_snd.set_hiwat(cfg.sendspace);
        self.so_qlimit = 0;
        self.so_qstate = QState::None;
        self.so_rcv_user = false;
        self.so_snd_user = false;
        self.inp = Inpcb::UNBOUND;
        self.tp = newtcpcb(cfg);
        self.output_wanted = false;
        self.events = 0;
    }

    /// Frees the slot (`sofree` + `in_pcbfree`).
    pub fn detach(&mut self) {
        self.in_use = false;
        self.so_rcv.clear();
        self.so_snd.clear();
        self.tp.t_timers.stop_all();
        self.output_wanted = false;
        self.events = 0;
        self.inp = Inpcb::UNBOUND;
    }

    pub fn is_listening(&self) -> bool {
        self.so_options & so::ACCEPTCONN != 0
    }
    pub fn nbio(&self) -> bool {
        self.so_state & ss::NBIO != 0
    }
    pub fn has_fd(&self) -> bool {
        self.so_state & ss::NOFDREF == 0
    }

    /// `soisconnected`.
    pub fn soisconnected(&mut self) {
        self.so_state &= !(ss::ISCONNECTING | ss::ISDISCONNECTING);
        self.so_state |= ss::ISCONNECTED;
        self.events |= ev::CONNECTED | ev::WRITABLE;
    }
    /// `socantrcvmore`: the peer's FIN arrived.
    pub fn socantrcvmore(&mut self) {
        self.so_rcv_cantrcvmore = true;
        self.events |= ev::READABLE;
    }
    /// `socantsendmore`.
    pub fn socantsendmore(&mut self) {
        self.so_snd_cantsendmore = true;
    }
    /// `soisdisconnected`.
    pub fn soisdisconnected(&mut self) {
        self.so_state &= !(ss::ISCONNECTING | ss::ISCONNECTED | ss::ISDISCONNECTING);
        self.so_state |= ss::ISDISCONNECTED;
        self.so_rcv_cantrcvmore = true;
        self.so_snd_cantsendmore = true;
        self.events |= ev::CLOSED | ev::READABLE | ev::WRITABLE;
    }
    /// `sorwakeup` / `sowwakeup`.
    pub fn sorwakeup(&mut self) {
        self.events |= ev::READABLE;
    }
    pub fn sowwakeup(&mut self) {
        self.events |= ev::WRITABLE;
    }
}
