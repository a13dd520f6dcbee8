//! The HydraNet-FT application API: `v_host(ip)` and `setportopt(port, mode, &params)`.
//!
//! HydraNet (FreeBSD 3.1) added two system calls for the processes of a host server:
//!
//! * `int v_host(u_long ip_address)` binds the calling process (and its children) to the virtual
//!   host with the origin server's address; sockets it binds belong to that virtual host.
//! * `int setportopt(port, mode, detector_parameters)` puts a port of that virtual host into a
//!   fault-tolerant mode (primary or backup) with the parameters of its failure detector.
//!
//! This crate holds what is settled today: the Rust types of that API ([`PortMode`],
//! [`DetectorParams`] with its validation, [`Errno`]) and the C ABI the header
//! `include/hydranet.h` declares.
//!
//! **Nothing here reaches a host server yet.** [`v_host`] and [`setportopt`] check their
//! arguments and then return [`Errno::ENOSYS`] on every platform. The backends come later:
//!
//! * Linux: a request to the local host-server daemon over its control socket, with the
//!   replicated demo ([`LINUX_BACKEND_ISSUE`]);
//! * FreeBSD: `modfind`/`modstat` to find the kernel module's syscall numbers, then `syscall(2)`
//!   ([`FREEBSD_BACKEND_ISSUE`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;
use core::net::Ipv4Addr;

/// The issue that brings the Linux backend (host-server daemon and its control socket).
pub const LINUX_BACKEND_ISSUE: u32 = 4;
/// The issue that brings the FreeBSD backend (the kernel module and its syscalls).
pub const FREEBSD_BACKEND_ISSUE: u32 = 7;

/// An error number, with FreeBSD's numbering (as `hydranet_core::Errno` numbers the socket
/// layer's errors), limited to what this API can return today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    /// An argument is out of range or inconsistent (FreeBSD `EINVAL`, 22).
    EINVAL = 22,
    /// The call is not implemented on this platform yet (FreeBSD `ENOSYS`, 78).
    ENOSYS = 78,
}

impl Errno {
    /// The numeric value, as a C caller sees it in `errno`.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The symbolic name.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EINVAL => "EINVAL",
            Errno::ENOSYS => "ENOSYS",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Errno {}

/// The role of one port of a virtual host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PortMode {
    /// Plain TCP: no replication (the default for every port).
    #[default]
    Normal = 0,
    /// The replica whose segments reach the client (rank 0 of its group).
    Primary = 1,
    /// A replica that runs the same service with its output suppressed, and takes over when the
    /// failure detector declares the primary dead.
    Backup = 2,
}

impl PortMode {
    /// The value the C ABI carries (`HYDRANET_PORT_*` in `hydranet.h`).
    pub const fn to_raw(self) -> u32 {
        self as u32
    }

    /// Decodes a C ABI value; anything unknown is `EINVAL`.
    pub const fn from_raw(raw: u32) -> Result<PortMode, Errno> {
        match raw {
            0 => Ok(PortMode::Normal),
            1 => Ok(PortMode::Primary),
            2 => Ok(PortMode::Backup),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The failure detector of a fault-tolerant port.
///
/// It has two inputs (design §4): the client's retransmissions, as in the original paper (a
/// primary that died stops acknowledging, the client retransmits, and the backups count the
/// retransmissions they see), and heartbeats on the acknowledgement channel, which catch a dead
/// primary when the client only receives and so never retransmits.
///
/// The layout matches `struct hydranet_detector_params` in `hydranet.h`: four `uint32_t`, in
/// this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct DetectorParams {
    /// Client retransmissions (a count, at least 1) that must be seen within
    /// `retransmit_window_ms` before a backup declares the primary dead.
    pub retransmit_threshold: u32,
    /// The sliding window, in milliseconds (at least 1), over which retransmissions are counted.
    pub retransmit_window_ms: u32,
    /// Milliseconds (at least 1) between two heartbeats a replica sends on the ack channel.
    pub heartbeat_interval_ms: u32,
    /// Milliseconds of silence after which a replica is declared dead; strictly greater than
    /// `heartbeat_interval_ms`, or a single delayed heartbeat would kill a live replica.
    pub heartbeat_timeout_ms: u32,
}

impl Default for DetectorParams {
    /// Three retransmissions within 3 s, heartbeats every 100 ms, dead after 500 ms of silence.
    fn default() -> Self {
        DetectorParams {
            retransmit_threshold: 3,
            retransmit_window_ms: 3000,
            heartbeat_interval_ms: 100,
            heartbeat_timeout_ms: 500,
        }
    }
}

impl DetectorParams {
    /// Checks the parameters: every field non-zero, and the heartbeat timeout strictly longer
    /// than the heartbeat interval. `EINVAL` otherwise.
    pub const fn validate(&self) -> Result<(), Errno> {
        if self.retransmit_threshold == 0
            || self.retransmit_window_ms == 0
            || self.heartbeat_interval_ms == 0
            || self.heartbeat_timeout_ms == 0
            || self.heartbeat_timeout_ms <= self.heartbeat_interval_ms
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// `v_host(ip)`: binds the calling process and its children to the virtual host `ip`.
///
/// **Not implemented yet**: after checking its argument (the unspecified, broadcast and
/// multicast addresses are `EINVAL`) it returns `Err(Errno::ENOSYS)` on every platform. The Linux
/// backend arrives with issue 4 ([`LINUX_BACKEND_ISSUE`]), the FreeBSD one with issue 7
/// ([`FREEBSD_BACKEND_ISSUE`]).
pub fn v_host(ip: Ipv4Addr) -> Result<(), Errno> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(Errno::EINVAL);
    }
    Err(Errno::ENOSYS)
}

/// `setportopt(port, mode, &params)`: puts `port` of the caller's virtual host into `mode`
/// with the failure-detector `params` (ignored for [`PortMode::Normal`]).
///
/// **Not implemented yet**: after checking its arguments (port 0 or invalid `params` for a
/// fault-tolerant mode are `EINVAL`) it returns `Err(Errno::ENOSYS)` on every platform. The
/// Linux backend arrives with issue 4 ([`LINUX_BACKEND_ISSUE`]), the FreeBSD one with issue 7
/// ([`FREEBSD_BACKEND_ISSUE`]).
pub fn setportopt(port: u16, mode: PortMode, params: &DetectorParams) -> Result<(), Errno> {
    if port == 0 {
        return Err(Errno::EINVAL);
    }
    if mode != PortMode::Normal {
        params.validate()?;
    }
    Err(Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: u32, w: u32, i: u32, o: u32) -> DetectorParams {
        DetectorParams {
            retransmit_threshold: t,
            retransmit_window_ms: w,
            heartbeat_interval_ms: i,
            heartbeat_timeout_ms: o,
        }
    }

    #[test]
    fn default_params_are_valid() {
        assert_eq!(DetectorParams::default().validate(), Ok(()));
    }

    #[test]
    fn smallest_valid_params() {
        assert_eq!(params(1, 1, 1, 2).validate(), Ok(()));
        assert_eq!(params(u32::MAX, u32::MAX, 1, u32::MAX).validate(), Ok(()));
    }

    #[test]
    fn zero_fields_are_einval() {
        assert_eq!(params(0, 1000, 100, 500).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 0, 100, 500).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 0, 500).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 100, 0).validate(), Err(Errno::EINVAL));
    }

    #[test]
    fn timeout_must_exceed_interval() {
        assert_eq!(params(3, 1000, 100, 100).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 100, 99).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 100, 101).validate(), Ok(()));
    }

    #[test]
    fn port_mode_raw_values() {
        for m in [PortMode::Normal, PortMode::Primary, PortMode::Backup] {
            assert_eq!(PortMode::from_raw(m.to_raw()), Ok(m));
        }
        assert_eq!(PortMode::from_raw(3), Err(Errno::EINVAL));
        assert_eq!(PortMode::default(), PortMode::Normal);
    }

    #[test]
    fn errno_values_follow_freebsd() {
        assert_eq!(Errno::EINVAL.code(), 22);
        assert_eq!(Errno::ENOSYS.code(), 78);
        assert_eq!(Errno::ENOSYS.to_string(), "ENOSYS");
    }

    #[test]
    fn calls_check_arguments_then_say_not_implemented() {
        let ip = Ipv4Addr::new(192, 0, 2, 10);
        assert_eq!(v_host(ip), Err(Errno::ENOSYS));
        assert_eq!(v_host(Ipv4Addr::UNSPECIFIED), Err(Errno::EINVAL));
        assert_eq!(v_host(Ipv4Addr::BROADCAST), Err(Errno::EINVAL));
        assert_eq!(v_host(Ipv4Addr::new(224, 0, 0, 1)), Err(Errno::EINVAL));

        let good = DetectorParams::default();
        let bad = params(3, 1000, 100, 50);
        assert_eq!(setportopt(80, PortMode::Primary, &good), Err(Errno::ENOSYS));
        assert_eq!(setportopt(80, PortMode::Backup, &bad), Err(Errno::EINVAL));
        assert_eq!(setportopt(0, PortMode::Primary, &good), Err(Errno::EINVAL));
        // Normal mode ignores the detector.
        assert_eq!(setportopt(80, PortMode::Normal, &bad), Err(Errno::ENOSYS));
    }

    #[test]
    fn c_layout_is_four_u32() {
        assert_eq!(core::mem::size_of::<DetectorParams>(), 16);
        assert_eq!(core::mem::align_of::<DetectorParams>(), 4);
    }
    /// The header and the Rust types agree on the mode values and the field order.
    #[test]
    fn header_matches_rust_types() {
        let h = include_str!("../include/hydranet.h");
        for m in [PortMode::Normal, PortMode::Primary, PortMode::Backup] {
            let name = format!("HYDRANET_PORT_{:?}", m).to_uppercase();
            let line = h
                .lines()
                .find(|l| l.starts_with("#define") && l.contains(&name))
                .unwrap_or_else(|| panic!("{name} missing from hydranet.h"));
            assert!(line.contains(&format!(" {}u", m.to_raw())), "{line}");
        }
        let fields = [
            "uint32_t retransmit_threshold;",
            "uint32_t retransmit_window_ms;",
            "uint32_t heartbeat_interval_ms;",
            "uint32_t heartbeat_timeout_ms;",
        ];
        let pos: Vec<usize> = fields.iter().map(|f| h.find(f).expect(f)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "field order differs");
        assert!(h.contains("NOT YET IMPLEMENTED"));
    }
}
