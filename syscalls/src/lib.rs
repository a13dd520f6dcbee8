//! The HydraNet-FT application API: `v_host(ip)` and `setportopt(port, mode, &params)`.
//!
//! HydraNet (FreeBSD 3.1) added two system calls for the processes of a host server:
//!
//! * `int v_host(u_long ip_address)` binds the calling process (and its children) to the virtual
//!   host with the origin server's address; sockets it binds belong to that virtual host.
//! * `int setportopt(port, mode, detector_parameters)` puts a port of that virtual host into a
//!   fault-tolerant mode (primary or backup) with the parameters of its failure detector.
//!
//! This crate holds the Rust types of that API ([`PortMode`], [`DetectorParams`] with its
//! validation, [`Errno`]), the C ABI that `include/hydranet.h` declares (built into the crate's
//! static and shared libraries), and the backends:
//!
//! * **Linux**: the host server is a user-space daemon, so the calls become requests on its
//!   control socket ([`ctl`], a line protocol over a Unix stream socket at [`ctl::ctl_path`],
//!   `$HYDRANET_CTL` or `/run/hydranet/host.sock`). [`v_host`] tells the daemon about the virtual
//!   host and remembers it as the process's own ([`current_vhost`]); [`setportopt`] names that
//!   virtual host in its request, since the daemon cannot tell which process is asking.
//!   [`v_host_at`] and [`setportopt_at`] take the socket and the virtual host explicitly, for
//!   tools and tests.
//! * **FreeBSD**: `modfind`/`modstat` to find the kernel module's syscall numbers, then
//!   `syscall(2)` (`freebsd`, [`FREEBSD_BACKEND_ISSUE`]); `ENOSYS` when the module is not
//!   loaded. Elsewhere [`v_host`] and [`setportopt`] check their arguments and return
//!   [`Errno::ENOSYS`].
//!
//! Errors carry FreeBSD's numbering on every platform, including in the C ABI's `errno`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;
use core::net::Ipv4Addr;
#[cfg(unix)]
use std::path::Path;
use std::sync::Mutex;

pub mod ctl;
#[cfg(unix)]
mod sys;

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
mod capi;
#[cfg(target_os = "freebsd")]
pub mod freebsd;

pub use ctl::{ctl_path, Request, Response, CTL_ENV, DEFAULT_CTL_PATH};
#[cfg(unix)]
pub use ctl::{CtlClient, CtlListener};

/// The issue that brought the Linux backend (host-server daemon and its control socket).
pub const LINUX_BACKEND_ISSUE: u32 = 4;
/// The issue that brings the FreeBSD backend (the kernel module and its syscalls).
pub const FREEBSD_BACKEND_ISSUE: u32 = 7;

/// An error number, with FreeBSD's numbering (as `hydranet_core::Errno` numbers the socket
/// layer's errors), limited to what this API and the control protocol can return.
///
/// The numbering is FreeBSD's on Linux too: C callers compare `errno` with the
/// `HYDRANET_E*` constants of `hydranet.h`, not with `<errno.h>` (Linux's `EADDRNOTAVAIL`, for
/// one, is 99, not 49).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    /// The operation is not permitted (FreeBSD `EPERM`, 1).
    EPERM = 1,
    /// No such file or directory: no control socket at the path, or no such entry in a daemon's
    /// table (FreeBSD `ENOENT`, 2).
    ENOENT = 2,
    /// Input/output error: the daemon's answer was garbled or missing (FreeBSD `EIO`, 5).
    EIO = 5,
    /// Permission denied, e.g. on the control socket (FreeBSD `EACCES`, 13).
    EACCES = 13,
    /// The entry already exists (FreeBSD `EEXIST`, 17).
    EEXIST = 17,
    /// An argument is out of range or inconsistent, or a request is malformed
    /// (FreeBSD `EINVAL`, 22).
    EINVAL = 22,
    /// No space left in a table (FreeBSD `ENOSPC`, 28).
    ENOSPC = 28,
    /// The address and port are already in use (FreeBSD `EADDRINUSE`, 48).
    EADDRINUSE = 48,
    /// The address is not a virtual host of this host server, or the process has not called
    /// `v_host` (FreeBSD `EADDRNOTAVAIL`, 49).
    EADDRNOTAVAIL = 49,
    /// Out of buffers or connections (FreeBSD `ENOBUFS`, 55).
    ENOBUFS = 55,
    /// The daemon did not answer in time (FreeBSD `ETIMEDOUT`, 60).
    ETIMEDOUT = 60,
    /// Nothing listens on the control socket (FreeBSD `ECONNREFUSED`, 61).
    ECONNREFUSED = 61,
    /// The call is not implemented on this platform, or the daemon does not serve the request
    /// (FreeBSD `ENOSYS`, 78).
    ENOSYS = 78,
}

impl Errno {
    /// Every error number, in numeric order.
    pub const ALL: [Errno; 13] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::EIO,
        Errno::EACCES,
        Errno::EEXIST,
        Errno::EINVAL,
        Errno::ENOSPC,
        Errno::EADDRINUSE,
        Errno::EADDRNOTAVAIL,
        Errno::ENOBUFS,
        Errno::ETIMEDOUT,
        Errno::ECONNREFUSED,
        Errno::ENOSYS,
    ];

    /// The numeric value, as a C caller sees it in `errno`.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The symbolic name, as the control protocol spells it (`EINVAL`).
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::EIO => "EIO",
            Errno::EACCES => "EACCES",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::ENOSPC => "ENOSPC",
            Errno::EADDRINUSE => "EADDRINUSE",
            Errno::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::ENOBUFS => "ENOBUFS",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ECONNREFUSED => "ECONNREFUSED",
            Errno::ENOSYS => "ENOSYS",
        }
    }

    /// FreeBSD's `strerror(3)` text.
    pub const fn description(self) -> &'static str {
        match self {
            Errno::EPERM => "Operation not permitted",
            Errno::ENOENT => "No such file or directory",
            Errno::EIO => "Input/output error",
            Errno::EACCES => "Permission denied",
            Errno::EEXIST => "File exists",
            Errno::EINVAL => "Invalid argument",
            Errno::ENOSPC => "No space left on device",
            Errno::EADDRINUSE => "Address already in use",
            Errno::EADDRNOTAVAIL => "Can't assign requested address",
            Errno::ENOBUFS => "No buffer space available",
            Errno::ETIMEDOUT => "Operation timed out",
            Errno::ECONNREFUSED => "Connection refused",
            Errno::ENOSYS => "Function not implemented",
        }
    }

    /// The error with this symbolic name (exact, upper case), if this API knows it.
    pub fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The error with this FreeBSD number, if this API knows it.
    pub const fn from_code(code: i32) -> Option<Errno> {
        let mut i = 0;
        while i < Errno::ALL.len() {
            if Errno::ALL[i].code() == code {
                return Some(Errno::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Errno {}

impl From<std::io::Error> for Errno {
    /// By kind, not by `raw_os_error`: the host's numbers are Linux's, ours are FreeBSD's.
    /// A timeout shows up as `WouldBlock` on a socket with `SO_RCVTIMEO`, hence `ETIMEDOUT`.
    fn from(e: std::io::Error) -> Errno {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound => Errno::ENOENT,
            K::PermissionDenied => Errno::EACCES,
            K::ConnectionRefused => Errno::ECONNREFUSED,
            K::AddrInUse => Errno::EADDRINUSE,
            K::AddrNotAvailable => Errno::EADDRNOTAVAIL,
            K::AlreadyExists => Errno::EEXIST,
            K::InvalidInput => Errno::EINVAL,
            K::TimedOut | K::WouldBlock => Errno::ETIMEDOUT,
            K::StorageFull => Errno::ENOSPC,
            K::OutOfMemory => Errno::ENOBUFS,
            K::Unsupported => Errno::ENOSYS,
            _ => Errno::EIO,
        }
    }
}

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
    /// Every mode, in numeric order.
    pub const ALL: [PortMode; 3] = [PortMode::Normal, PortMode::Primary, PortMode::Backup];

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

    /// The control protocol's spelling: `normal`, `primary` or `backup`.
    pub const fn name(self) -> &'static str {
        match self {
            PortMode::Normal => "normal",
            PortMode::Primary => "primary",
            PortMode::Backup => "backup",
        }
    }

    /// Decodes the control protocol's spelling (exact, lower case); anything else is `EINVAL`.
    pub fn from_name(name: &str) -> Result<PortMode, Errno> {
        PortMode::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or(Errno::EINVAL)
    }
}

impl fmt::Display for PortMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// Client retransmissions (a count) that must be seen within `retransmit_window_ms`
    /// before a backup declares the primary dead; 0 turns this input off.
    pub retransmit_threshold: u32,
    /// The sliding window, in milliseconds (at least 1 when the input is on, at most an
    /// hour), over which retransmissions are counted.
    pub retransmit_window_ms: u32,
    /// Milliseconds between two heartbeats a replica sends on the ack channel; 0 turns
    /// heartbeats off (then only client retransmissions can reveal a dead primary).
    pub heartbeat_interval_ms: u32,
    /// Milliseconds of silence after which a replica is declared dead; strictly greater than
    /// `heartbeat_interval_ms`, or a single delayed heartbeat would kill a live replica.
    pub heartbeat_timeout_ms: u32,
}

impl Default for DetectorParams {
    /// The core's default detector: two client retransmissions within 1 s, heartbeats every
    /// 10 ms, dead after 30 ms of silence.
    fn default() -> Self {
        DetectorParams {
            retransmit_threshold: 2,
            retransmit_window_ms: 1000,
            heartbeat_interval_ms: 10,
            heartbeat_timeout_ms: 30,
        }
    }
}

impl DetectorParams {
    /// Checks the parameters, by the rules the core applies: either detector input may be
    /// off (a zero threshold, a zero heartbeat interval) but not both; an input that is on
    /// needs a window or a timeout longer than its interval; no value beyond an hour (a
    /// detector that slow is a misconfiguration). `EINVAL` otherwise.
    pub const fn validate(&self) -> Result<(), Errno> {
        const HOUR_MS: u32 = 3_600_000;
        let retransmit_on = self.retransmit_threshold > 0;
        let heartbeat_on = self.heartbeat_interval_ms > 0;
        if !retransmit_on && !heartbeat_on {
            return Err(Errno::EINVAL);
        }
        if retransmit_on && (self.retransmit_window_ms == 0 || self.retransmit_window_ms > HOUR_MS)
        {
            return Err(Errno::EINVAL);
        }
        if heartbeat_on
            && (self.heartbeat_timeout_ms <= self.heartbeat_interval_ms
                || self.heartbeat_timeout_ms > HOUR_MS)
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// Whether `ip` can be a virtual host (or any other host the protocol names): not the
/// unspecified, broadcast or a multicast address. `EINVAL` otherwise.
pub const fn check_host_addr(ip: Ipv4Addr) -> Result<(), Errno> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The arguments of `setportopt`: port 0 is `EINVAL`, and so are invalid `params` for a
/// fault-tolerant mode (a `Normal` port has no detector, so its `params` are not checked).
pub const fn check_port_opt(
    port: u16,
    mode: PortMode,
    params: &DetectorParams,
) -> Result<(), Errno> {
    if port == 0 {
        return Err(Errno::EINVAL);
    }
    if !matches!(mode, PortMode::Normal) {
        return params.validate();
    }
    Ok(())
}

/// The virtual host of this process (and, through `fork`, of its children), set by a successful
/// [`v_host`].
static VHOST: Mutex<Option<Ipv4Addr>> = Mutex::new(None);

/// The virtual host the last successful [`v_host`] of this process bound it to; always `None`
/// where the calls are not implemented.
pub fn current_vhost() -> Option<Ipv4Addr> {
    *VHOST.lock().unwrap_or_else(|p| p.into_inner())
}

/// `v_host(ip)`: binds the calling process and its children to the virtual host `ip`.
///
/// On Linux, sends `v_host <ip>` to the host-server daemon at [`ctl_path`] and, once it
/// accepted, remembers `ip` as this process's virtual host ([`current_vhost`]) for
/// [`setportopt`]. Calling it again rebinds the process (if the daemon agrees).
///
/// Errors: `EINVAL` (unspecified, broadcast or multicast address; checked before the daemon is
/// asked), `ENOENT`/`ECONNREFUSED`/`EACCES` (no daemon listens at the control socket),
/// `ETIMEDOUT`/`EIO` (the daemon did not answer properly), or the daemon's refusal.
/// `ENOSYS` on FreeBSD without the kernel module loaded, and on targets other than Linux and
/// FreeBSD.
pub fn v_host(ip: Ipv4Addr) -> Result<(), Errno> {
    check_host_addr(ip)?;
    #[cfg(target_os = "linux")]
    {
        v_host_at(&ctl_path(), ip)?;
        *VHOST.lock().unwrap_or_else(|p| p.into_inner()) = Some(ip);
        Ok(())
    }
    #[cfg(target_os = "freebsd")]
    {
        freebsd::v_host(ip)?;
        *VHOST.lock().unwrap_or_else(|p| p.into_inner()) = Some(ip);
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    Err(Errno::ENOSYS)
}

/// `setportopt(port, mode, &params)`: puts `port` of the caller's virtual host into `mode`
/// with the failure-detector `params` (ignored for [`PortMode::Normal`]).
///
/// On Linux, sends `setportopt <vhost> <port> <mode> <params...>` to the daemon at
/// [`ctl_path`], where `<vhost>` is [`current_vhost`].
///
/// Errors: `EINVAL` (port 0, or invalid `params` for a fault-tolerant mode; checked first),
/// `EADDRNOTAVAIL` (the process has not called [`v_host`]), then the errors of [`v_host`].
/// `ENOSYS` on FreeBSD without the kernel module loaded, and on targets other than Linux and
/// FreeBSD.
pub fn setportopt(port: u16, mode: PortMode, params: &DetectorParams) -> Result<(), Errno> {
    check_port_opt(port, mode, params)?;
    #[cfg(target_os = "linux")]
    {
        let vip = current_vhost().ok_or(Errno::EADDRNOTAVAIL)?;
        setportopt_at(&ctl_path(), vip, port, mode, params)
    }
    // The kernel knows the caller's virtual host (and its parent's, for a forked child).
    #[cfg(target_os = "freebsd")]
    return freebsd::setportopt(port, mode, params);
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    Err(Errno::ENOSYS)
}

/// [`v_host`] against the daemon at `path`, without touching this process's
/// [`current_vhost`]: for tools that configure a daemon on another process's behalf, and tests.
#[cfg(unix)]
pub fn v_host_at(path: &Path, ip: Ipv4Addr) -> Result<(), Errno> {
    check_host_addr(ip)?;
    CtlClient::connect(path)?.call(&Request::VHost(ip))?;
    Ok(())
}

/// [`setportopt`] for the virtual host `vip`, against the daemon at `path`. Checks the
/// arguments (`EINVAL`) before it connects.
#[cfg(unix)]
pub fn setportopt_at(
    path: &Path,
    vip: Ipv4Addr,
    port: u16,
    mode: PortMode,
    params: &DetectorParams,
) -> Result<(), Errno> {
    check_host_addr(vip)?;
    check_port_opt(port, mode, params)?;
    let req = Request::SetPortOpt {
        vip,
        port,
        mode,
        params: *params,
    };
    CtlClient::connect(path)?.call(&req)?;
    Ok(())
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
        assert_eq!(params(u32::MAX, 3_600_000, 1, 3_600_000).validate(), Ok(()));
        assert_eq!(params(1, 3_600_001, 1, 2).validate(), Err(Errno::EINVAL));
        assert_eq!(params(1, 1, 1, 3_600_001).validate(), Err(Errno::EINVAL));
    }

    #[test]
    fn either_input_may_be_off_but_not_both() {
        assert_eq!(params(0, 0, 100, 500).validate(), Ok(()), "heartbeats only");
        assert_eq!(
            params(3, 1000, 0, 0).validate(),
            Ok(()),
            "retransmissions only"
        );
        assert_eq!(params(0, 1000, 0, 500).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 0, 100, 500).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 100, 0).validate(), Err(Errno::EINVAL));
    }

    #[test]
    fn validation_agrees_with_the_core() {
        let cases = [0u32, 1, 2, 10, 30, 1000, 3_600_000, 3_600_001, u32::MAX];
        for &a in &cases {
            for &b in &cases {
                for &c in &cases {
                    for &d in &cases {
                        let ours = params(a, b, c, d).validate().is_ok();
                        let core = hydranet_core::ft::params::DetectorParams {
                            retransmit_threshold: a,
                            retransmit_window_ms: b,
                            heartbeat_interval_ms: c,
                            heartbeat_timeout_ms: d,
                        }
                        .validate()
                        .is_ok();
                        assert_eq!(ours, core, "{a} {b} {c} {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn timeout_must_exceed_interval() {
        assert_eq!(params(3, 1000, 100, 100).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 100, 99).validate(), Err(Errno::EINVAL));
        assert_eq!(params(3, 1000, 100, 101).validate(), Ok(()));
    }

    #[test]
    fn port_mode_raw_values() {
        for m in PortMode::ALL {
            assert_eq!(PortMode::from_raw(m.to_raw()), Ok(m));
            assert_eq!(PortMode::from_name(m.name()), Ok(m));
        }
        assert_eq!(PortMode::from_raw(3), Err(Errno::EINVAL));
        assert_eq!(PortMode::from_name("Primary"), Err(Errno::EINVAL));
        assert_eq!(PortMode::default(), PortMode::Normal);
    }

    #[test]
    fn errno_values_follow_freebsd() {
        let expected = [
            ("EPERM", 1),
            ("ENOENT", 2),
            ("EIO", 5),
            ("EACCES", 13),
            ("EEXIST", 17),
            ("EINVAL", 22),
            ("ENOSPC", 28),
            ("EADDRINUSE", 48),
            ("EADDRNOTAVAIL", 49),
            ("ENOBUFS", 55),
            ("ETIMEDOUT", 60),
            ("ECONNREFUSED", 61),
            ("ENOSYS", 78),
        ];
        assert_eq!(Errno::ALL.len(), expected.len());
        for (e, (name, code)) in Errno::ALL.into_iter().zip(expected) {
            assert_eq!((e.name(), e.code()), (name, code));
            assert_eq!(e.to_string(), name);
            assert_eq!(Errno::from_name(name), Some(e));
            assert_eq!(Errno::from_code(code), Some(e));
            assert!(!e.description().is_empty());
        }
        assert_eq!(Errno::from_name("einval"), None);
        assert_eq!(Errno::from_name("EAGAIN"), None);
        assert_eq!(Errno::from_code(0), None);
        assert_eq!(Errno::from_code(99), None);
    }

    #[test]
    fn io_errors_map_by_kind() {
        use std::io::{Error, ErrorKind};
        let map = |k: ErrorKind| Errno::from(Error::from(k));
        assert_eq!(map(ErrorKind::NotFound), Errno::ENOENT);
        assert_eq!(map(ErrorKind::ConnectionRefused), Errno::ECONNREFUSED);
        assert_eq!(map(ErrorKind::WouldBlock), Errno::ETIMEDOUT);
        assert_eq!(map(ErrorKind::BrokenPipe), Errno::EIO);
    }

    #[test]
    fn calls_check_arguments_before_anything_else() {
        assert_eq!(v_host(Ipv4Addr::UNSPECIFIED), Err(Errno::EINVAL));
        assert_eq!(v_host(Ipv4Addr::BROADCAST), Err(Errno::EINVAL));
        assert_eq!(v_host(Ipv4Addr::new(224, 0, 0, 1)), Err(Errno::EINVAL));

        let good = DetectorParams::default();
        let bad = params(3, 1000, 100, 50);
        assert_eq!(setportopt(80, PortMode::Backup, &bad), Err(Errno::EINVAL));
        assert_eq!(setportopt(0, PortMode::Primary, &good), Err(Errno::EINVAL));
        assert_eq!(check_port_opt(80, PortMode::Normal, &bad), Ok(()));
    }

    /// No test in this process calls `v_host` with a valid address, so there is no virtual host.
    #[cfg(target_os = "linux")]
    #[test]
    fn setportopt_needs_a_virtual_host() {
        assert_eq!(current_vhost(), None);
        let good = DetectorParams::default();
        assert_eq!(
            setportopt(80, PortMode::Primary, &good),
            Err(Errno::EADDRNOTAVAIL)
        );
        // Normal mode ignores the detector, but still needs the virtual host.
        let bad = params(3, 1000, 100, 50);
        assert_eq!(
            setportopt(80, PortMode::Normal, &bad),
            Err(Errno::EADDRNOTAVAIL)
        );
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn calls_are_not_implemented_off_linux() {
        let good = DetectorParams::default();
        assert_eq!(v_host(Ipv4Addr::new(192, 0, 2, 10)), Err(Errno::ENOSYS));
        assert_eq!(setportopt(80, PortMode::Primary, &good), Err(Errno::ENOSYS));
    }

    #[test]
    fn c_layout_is_four_u32() {
        assert_eq!(core::mem::size_of::<DetectorParams>(), 16);
        assert_eq!(core::mem::align_of::<DetectorParams>(), 4);
    }

    /// The header and the Rust types agree on the mode values, the field order, the error
    /// numbers and the functions.
    #[test]
    fn header_matches_rust_types() {
        let h = include_str!("../include/hydranet.h");
        let define = |name: &str| {
            h.lines()
                .find(|l| l.starts_with("#define") && l.split_whitespace().nth(1) == Some(name))
                .unwrap_or_else(|| panic!("{name} missing from hydranet.h"))
        };
        for m in PortMode::ALL {
            let line = define(&format!("HYDRANET_PORT_{:?}", m).to_uppercase());
            assert!(line.contains(&format!(" {}u", m.to_raw())), "{line}");
        }
        for e in Errno::ALL {
            let line = define(&format!("HYDRANET_{}", e.name()));
            assert_eq!(
                line.split_whitespace().nth(2),
                Some(&*e.code().to_string()),
                "{line}"
            );
        }
        let fields = [
            "uint32_t retransmit_threshold;",
            "uint32_t retransmit_window_ms;",
            "uint32_t heartbeat_interval_ms;",
            "uint32_t heartbeat_timeout_ms;",
        ];
        let pos: Vec<usize> = fields.iter().map(|f| h.find(f).expect(f)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "field order differs");
        for decl in [
            "int v_host(uint32_t ip_address);",
            "int setportopt(uint16_t port, uint32_t mode, const struct hydranet_detector_params *params);",
            "const char *hydranet_strerror(int errnum);",
            "const char *hydranet_errname(int errnum);",
        ] {
            assert!(h.contains(decl), "{decl} missing from hydranet.h");
        }
        assert!(h.contains(CTL_ENV) && h.contains(DEFAULT_CTL_PATH));
        assert!(!h.contains("NOT YET IMPLEMENTED"));
    }
}
