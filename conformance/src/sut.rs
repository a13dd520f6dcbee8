//! The system under test: what the runner needs from a TCP implementation.
//!
//! Everything runs in virtual time: the runner owns the clock and hands `now_us` (microseconds
//! since the start of the script) to every call. Nothing is ever sent on a real network; the
//! addresses are from the documentation ranges.

use std::net::Ipv4Addr;

use hydranet_core::Errno;

/// The SUT's own address.
pub const LOCAL_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The address of the script's peer.
pub const REMOTE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// `bind(fd, ..., ...)` binds `LOCAL_ADDR:LOCAL_BIND_PORT`.
pub const LOCAL_BIND_PORT: u16 = 8080;
/// `connect(fd, ..., ...)` connects to `REMOTE_ADDR:REMOTE_PORT`; inbound packets come from it.
pub const REMOTE_PORT: u16 = 57002;

/// A socket-layer call, with FreeBSD's numbering for every constant (see [`crate::bsd`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)`; returns the new descriptor.
    Socket,
    /// Bind to `LOCAL_ADDR:LOCAL_BIND_PORT`.
    Bind {
        fd: i32,
    },
    Listen {
        fd: i32,
        backlog: i32,
    },
    /// Returns the new descriptor.
    Accept {
        fd: i32,
    },
    /// Connect to `REMOTE_ADDR:REMOTE_PORT`.
    Connect {
        fd: i32,
    },
    Close {
        fd: i32,
    },
    /// `how`: 0 `SHUT_RD`, 1 `SHUT_WR`, 2 `SHUT_RDWR`.
    Shutdown {
        fd: i32,
        how: i32,
    },
    /// Returns the number of bytes read (the data itself is not checked).
    Read {
        fd: i32,
        len: usize,
    },
    /// Writes `len` zero bytes; returns the number of bytes accepted.
    Write {
        fd: i32,
        len: usize,
    },
    /// `fcntl(fd, F_GETFL)`.
    GetFl {
        fd: i32,
    },
    /// `fcntl(fd, F_SETFL, flags)`.
    SetFl {
        fd: i32,
        flags: i32,
    },
    SetSockOpt {
        fd: i32,
        level: i32,
        name: i32,
        value: i32,
    },
    /// Answered with [`CallResult::Value`] on success.
    GetSockOpt {
        fd: i32,
        level: i32,
        name: i32,
    },
}

/// What a [`Call`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// Returned this (non-negative) value.
    Ok(i64),
    /// `getsockopt`: returned 0 and this option value.
    Value(i64),
    /// Returned -1 with this errno.
    Err(Errno),
    /// A blocking call that has not completed yet; the runner asks [`Sut::poll_blocked`] later.
    Blocked,
}

/// The subset of FreeBSD's `struct tcp_info` that scripts can assert on (`%{ assert tcpi_x ... }%`).
///
/// Field names follow FreeBSD's; construct it with `..Default::default()` so fields added later
/// do not break implementations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// FreeBSD `TCPS_*` numbering (see [`crate::bsd`]).
    pub tcpi_state: u8,
    /// `TCPI_OPT_*` bits.
    pub tcpi_options: u8,
    pub tcpi_snd_wscale: u8,
    pub tcpi_rcv_wscale: u8,
    pub tcpi_snd_mss: u32,
    pub tcpi_rcv_mss: u32,
    /// Microseconds.
    pub tcpi_rto: u32,
    /// Microseconds.
    pub tcpi_rtt: u32,
    /// Microseconds.
    pub tcpi_rttvar: u32,
    pub tcpi_snd_ssthresh: u32,
    pub tcpi_snd_cwnd: u32,
    pub tcpi_snd_wnd: u32,
    pub tcpi_rcv_space: u32,
    pub tcpi_snd_nxt: u32,
    pub tcpi_rcv_nxt: u32,
}

impl TcpInfo {
    /// The names of the fields [`TcpInfo::field`] knows.
    pub const FIELDS: &'static [&'static str] = &[
        "tcpi_state",
        "tcpi_options",
        "tcpi_snd_wscale",
        "tcpi_rcv_wscale",
        "tcpi_snd_mss",
        "tcpi_rcv_mss",
        "tcpi_rto",
        "tcpi_rtt",
        "tcpi_rttvar",
        "tcpi_snd_ssthresh",
        "tcpi_snd_cwnd",
        "tcpi_snd_wnd",
        "tcpi_rcv_space",
        "tcpi_snd_nxt",
        "tcpi_rcv_nxt",
    ];

    /// A field by its FreeBSD name.
    pub fn field(&self, name: &str) -> Option<i64> {
        Some(match name {
            "tcpi_state" => self.tcpi_state.into(),
            "tcpi_options" => self.tcpi_options.into(),
            "tcpi_snd_wscale" => self.tcpi_snd_wscale.into(),
            "tcpi_rcv_wscale" => self.tcpi_rcv_wscale.into(),
            "tcpi_snd_mss" => self.tcpi_snd_mss.into(),
            "tcpi_rcv_mss" => self.tcpi_rcv_mss.into(),
            "tcpi_rto" => self.tcpi_rto.into(),
            "tcpi_rtt" => self.tcpi_rtt.into(),
            "tcpi_rttvar" => self.tcpi_rttvar.into(),
            "tcpi_snd_ssthresh" => self.tcpi_snd_ssthresh.into(),
            "tcpi_snd_cwnd" => self.tcpi_snd_cwnd.into(),
            "tcpi_snd_wnd" => self.tcpi_snd_wnd.into(),
            "tcpi_rcv_space" => self.tcpi_rcv_space.into(),
            "tcpi_snd_nxt" => self.tcpi_snd_nxt.into(),
            "tcpi_rcv_nxt" => self.tcpi_rcv_nxt.into(),
            _ => return None,
        })
    }
}

/// One line of `sockstat -4 -P tcp -s` output (optional SUT capability, see [`Sut::sockstat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockStatEntry {
    pub local_port: u16,
    pub foreign_port: u16,
    /// FreeBSD `TCPS_*` numbering.
    pub state: u8,
    /// Whether a descriptor of the script (packetdrill's process) refers to it. Syncache
    /// entries and connections whose descriptor was closed are not owned.
    pub owned: bool,
}

/// A TCP implementation driven by the runner.
pub trait Sut {
    /// `sysctl -w name=value`; Err(()) when the name is unknown to the SUT (the script then
    /// becomes unsupported).
    #[allow(clippy::result_unit_err)]
    fn sysctl(&mut self, name: &str, value: i64) -> Result<(), ()>;
    /// Advance virtual time to `now_us`, firing timers due up to then.
    fn advance(&mut self, now_us: u64);
    /// Deliver an inbound IPv4 packet at `now_us`.
    fn inject(&mut self, now_us: u64, packet: &[u8]);
    /// Next outbound IPv4 packet produced at or before `now_us` (after `advance`), if any.
    fn poll_transmit(&mut self, now_us: u64) -> Option<Vec<u8>>;
    /// When the SUT next needs `advance` (its earliest timer), if ever.
    fn poll_timeout(&self) -> Option<u64>;
    fn syscall(&mut self, now_us: u64, call: &Call) -> CallResult;
    /// After a call returned Blocked: has it completed by `now_us`? (called after every
    /// injection/advance)
    fn poll_blocked(&mut self, now_us: u64) -> Option<CallResult>;
    fn tcp_info(&mut self, fd: i32) -> Option<TcpInfo>;

    // ---- Optional capabilities. The defaults say "not supported", which makes the scripts
    // ---- that need them report UNSUPPORTED (never PASS).

    /// `Some(reason)`: this SUT cannot run scripts at all (a placeholder); every script is
    /// reported UNSUPPORTED with this reason before anything runs.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Every TCP endpoint, as `sockstat -4 -P tcp -s` would list it (including syncache
    /// entries, which FreeBSD lists as `SYN_RCVD`). `None`: not supported.
    ///
    /// Without it, `sockstat ... | grep packetdril | grep -c STATE` checks are answered from
    /// [`Sut::tcp_info`] on the script's open descriptors; other `sockstat` checks are
    /// unsupported.
    fn sockstat(&mut self) -> Option<Vec<SockStatEntry>> {
        None
    }
    /// `tcpdrop -s STATE`: drop every connection in `state` (FreeBSD numbering) at `now_us`.
    /// `None`: not supported.
    fn tcpdrop_state(&mut self, now_us: u64, state: u8) -> Option<()> {
        let _ = (now_us, state);
        None
    }
    /// `--mtu=N`: the MTU of the SUT's interface (default 1500). `Err(())`: not supported.
    #[allow(clippy::result_unit_err)]
    fn set_mtu(&mut self, mtu: u32) -> Result<(), ()> {
        let _ = mtu;
        Err(())
    }
}

/// A stand-in until the real SUT over the HydraNet core exists: every `sysctl` is unknown, so
/// every script (all of them start with `sysctl -w`) is reported UNSUPPORTED, never PASS.
#[derive(Debug, Default)]
pub struct NoSut;

impl Sut for NoSut {
    fn unavailable(&self) -> Option<String> {
        Some("no SUT wired in: new_sut() is still the NoSut placeholder".into())
    }
    fn sysctl(&mut self, _name: &str, _value: i64) -> Result<(), ()> {
        Err(())
    }
    fn advance(&mut self, _now_us: u64) {}
    fn inject(&mut self, _now_us: u64, _packet: &[u8]) {}
    fn poll_transmit(&mut self, _now_us: u64) -> Option<Vec<u8>> {
        None
    }
    fn poll_timeout(&self) -> Option<u64> {
        None
    }
    fn syscall(&mut self, _now_us: u64, _call: &Call) -> CallResult {
        CallResult::Err(Errno::EOPNOTSUPP)
    }
    fn poll_blocked(&mut self, _now_us: u64) -> Option<CallResult> {
        None
    }
    fn tcp_info(&mut self, _fd: i32) -> Option<TcpInfo> {
        None
    }
}
