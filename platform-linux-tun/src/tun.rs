//! TUN devices: raw IPv4 packets in and out of a Linux interface, without a link layer.
//!
//! [`Tun`] is the file descriptor; [`TunDriver`] puts it behind `embassy-net-driver` so the core's
//! `poll_device` can pump it. Both are non-blocking: the owner sleeps in [`wait_readable`]
//! (poll(2)) and polls again when the fd is readable or a timer is due.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::Context;
use std::time::Duration;

use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};

/// The largest IPv4 packet; a read buffer of this size never truncates a packet, whatever MTU
/// the interface is later given.
const MAX_PACKET: usize = 65535;

/// An attached TUN interface (`IFF_TUN | IFF_NO_PI`, non-blocking).
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
    mtu: usize,
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL"))?;
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ || name.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} must be 1..={} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is a plain C struct (arrays, integers, a union of those and a pointer);
    // all-zero is a valid value of each of them.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn last_error_is_again(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS))
        || err.kind() == io::ErrorKind::WouldBlock
}

/// A datagram socket for interface ioctls, in the calling thread's network namespace.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(sock) })
}

/// An interface ioctl that reads or writes `req`.
fn if_ioctl(sock: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: the SIOC[GS]IF* requests used here read the name and at most one integer member
    // of the ifreq and write back at most one; the struct outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The MTU of interface `name` in the calling thread's network namespace.
fn interface_mtu(name: &str) -> io::Result<usize> {
    let mut req = ifreq_for(name)?;
    if_ioctl(&ioctl_socket()?, libc::SIOCGIFMTU, &mut req)
        .map_err(|e| io::Error::new(e.kind(), format!("SIOCGIFMTU {name}: {e}")))?;
    // SAFETY: the kernel filled the ifru_mtu member of the union on success.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| io::Error::other(format!("{name}: negative MTU {mtu}")))
}

fn interface_flags(sock: &OwnedFd, name: &str) -> io::Result<libc::c_int> {
    let mut req = ifreq_for(name)?;
    if_ioctl(sock, libc::SIOCGIFFLAGS, &mut req)
        .map_err(|e| io::Error::new(e.kind(), format!("SIOCGIFFLAGS {name}: {e}")))?;
    // SAFETY: the kernel filled the ifru_flags member of the union on success. The flags are
    // a 16-bit field in ifreq; reinterpret them as unsigned so IFF_* bits above 0x7fff do not
    // sign-extend.
    Ok(libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags } as u16))
}

/// Waits until interface `name` (in the calling thread's namespace) can carry packets, or
/// `timeout` passes; `Ok(false)` on timeout and at once when the interface is down.
///
/// Why this is needed: when a link gains its carrier (a veth whose peer comes up, a TUN device
/// that gets a reader), the kernel's link watcher activates the transmit queues later, from a
/// work queue. Until then every packet routed to the interface is dropped silently (counted
/// as a TX drop), so the first packet of a test sent right after setup can vanish. The watcher
/// sets the operational state (`IFF_RUNNING`) just before it activates the queues, under the
/// RTNL lock; once `IFF_RUNNING` shows, one request that takes the RTNL lock (setting the MTU
/// to its current value, a no-op) returns only after the watcher is done with the device.
pub fn wait_running(name: &str, timeout: Duration) -> io::Result<bool> {
    let sock = ioctl_socket()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let flags = interface_flags(&sock, name)?;
        if flags & libc::IFF_UP == 0 {
            return Ok(false);
        }
        if flags & libc::IFF_RUNNING != 0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut req = ifreq_for(name)?;
    if_ioctl(&sock, libc::SIOCGIFMTU, &mut req)?;
    // Without CAP_NET_ADMIN this fails; the window it closes is microseconds wide, so carry on.
    let _ = if_ioctl(&sock, libc::SIOCSIFMTU, &mut req);
    Ok(true)
}

impl Tun {
    /// Attaches to (or creates) the TUN interface `name` in the calling thread's network
    /// namespace: `IFF_TUN | IFF_NO_PI`, `O_NONBLOCK | O_CLOEXEC`. Reads the MTU with
    /// `SIOCGIFMTU`.
    ///
    /// A persistent device made by `ip tuntap add mode tun` is attached to as is: the kernel
    /// takes the packet-information flag from this call, not from the creator, so the packets
    /// are raw IP either way. Only one `Tun` can be attached to a device at a time (a second
    /// open fails with `ResourceBusy`); a TAP device of that name fails with `InvalidInput`.
    ///
    /// When the interface is up, returns only once the kernel queues packets for this reader
    /// (see [`wait_running`]), so that nothing sent right after `open` is lost.
    pub fn open(name: &str) -> io::Result<Tun> {
        let mut req = ifreq_for(name)?;
        // SAFETY: the path is a NUL-terminated literal; the result is checked.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads the ifreq (name and flags) and writes back the name; the
        // struct outlives the call.
        let rc = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETIFF,
                &mut req as *mut libc::ifreq,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("TUNSETIFF {name}: {err}"),
            ));
        }
        let mtu = interface_mtu(name)?;
        // Attaching gives the device its carrier; wait until packets routed to it are queued
        // for this reader rather than dropped. A device that is down has nothing to wait for,
        // and on timeout (a swamped machine) the device still starts working a little later.
        let _ = wait_running(name, Duration::from_secs(2))?;
        Ok(Tun {
            fd,
            name: name.to_string(),
            mtu,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MTU read when the device was opened.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// One packet into `buf`; `Ok(None)` when nothing is waiting. A packet longer than `buf`
    /// is cut to `buf.len()` and the rest of it is lost: give a buffer of the MTU at least.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: the kernel writes at most buf.len() bytes into buf.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                // This kernel returns what it copied (checked on 6.18); the clamp keeps a
                // caller's `buf[..n]` from panicking whatever a kernel reports.
                return Ok(Some((n as usize).min(buf.len())));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(err),
            }
        }
    }

    /// One packet out; `Ok(false)` when the device refuses it for now (EAGAIN/ENOBUFS), so the
    /// caller still has it and may retry.
    pub fn send(&self, pkt: &[u8]) -> io::Result<bool> {
        loop {
            // SAFETY: the kernel reads pkt.len() bytes from pkt.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
            if n >= 0 {
                // A TUN write takes the packet whole or not at all.
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if last_error_is_again(&err) {
                return Ok(false);
            }
            return Err(err);
        }
    }

    /// Whether a write would not block right now.
    pub fn writable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc > 0 && pfd.revents & libc::POLLOUT != 0
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None` = forever) and returns
/// which are readable. EINTR is a normal return with none readable.
///
/// An fd in error or hung up counts as readable, so that the caller's next read reports the
/// condition instead of the loop spinning on it. A timeout is rounded up to whole
/// milliseconds: rounding down would turn a short wait into a busy loop.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms: libc::c_int = match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    };
    // SAFETY: `pfds` is a live array of exactly pfds.len() pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; fds.len()]);
        }
        return Err(err);
    }
    if let Some(bad) = pfds.iter().find(|p| p.revents & libc::POLLNVAL != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("wait_readable: fd {} is not open", bad.fd),
        ));
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
        .collect())
}

/// Which way a packet crossed the device, as seen by a tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read from the device (towards the core).
    In,
    /// Written to the device (from the core).
    Out,
}

/// A callback that sees every packet the driver moves.
pub type Tap = Box<dyn FnMut(Direction, &[u8]) + Send>;

/// Packet counters of a [`TunDriver`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TunStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets that a transmit token could not write (the device refused or failed); they are
    /// lost, since the stack has already handed them over.
    pub tx_errors: u64,
    /// Reads that failed with something other than "nothing waiting".
    pub rx_errors: u64,
}

/// A [`Tun`] as an `embassy-net-driver` device, with buffers allocated once.
///
/// Wakers are ignored: the owner drives the device from a poll(2) loop ([`wait_readable`] on
/// [`Tun::as_raw_fd`] plus the core's timer deadline), so nothing ever needs to be woken from
/// another context. `transmit` offers a token only while the fd is writable, and a TUN fd is
/// writable except under memory pressure, so a poll loop never waits on write readiness.
pub struct TunDriver {
    tun: Tun,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    stats: TunStats,
    tap: Option<Tap>,
}

impl std::fmt::Debug for TunDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDriver")
            .field("tun", &self.tun)
            .field("stats", &self.stats)
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

impl TunDriver {
    pub fn new(tun: Tun) -> Self {
        let tx_len = tun.mtu().clamp(1, MAX_PACKET);
        TunDriver {
            tun,
            rx_buf: vec![0; MAX_PACKET],
            tx_buf: vec![0; tx_len],
            stats: TunStats::default(),
            tap: None,
        }
    }

    pub fn tun(&self) -> &Tun {
        &self.tun
    }

    pub fn stats(&self) -> TunStats {
        self.stats
    }

    /// Installs (or removes) a callback that sees every packet: [`Direction::In`] when read
    /// from the device, [`Direction::Out`] when written to it (also when the write fails).
    pub fn set_tap(&mut self, tap: Option<Tap>) {
        self.tap = tap;
    }
}

/// A packet read from the device.
pub struct TunRxToken<'a> {
    buf: &'a mut [u8],
}

impl embassy_net_driver::RxToken for TunRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        f(self.buf)
    }
}

/// Permission to write one packet to the device.
pub struct TunTxToken<'a> {
    tun: &'a Tun,
    buf: &'a mut Vec<u8>,
    stats: &'a mut TunStats,
    tap: &'a mut Option<Tap>,
}

impl embassy_net_driver::TxToken for TunTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // The buffer holds one MTU. A caller that asks for more still gets its packet built
        // (the kernel then judges it) instead of a panic; the growth is kept for next time.
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let pkt = &mut self.buf[..len];
        let r = f(pkt);
        if let Some(tap) = self.tap.as_mut() {
            tap(Direction::Out, pkt);
        }
        match self.tun.send(pkt) {
            Ok(true) => {
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += len as u64;
            }
            Ok(false) | Err(_) => self.stats.tx_errors += 1,
        }
        r
    }
}

impl Driver for TunDriver {
    type RxToken<'a>
        = TunRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TunTxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // Writability first: a packet read while the reply could not be written would have to
        // be dropped or held, and the contract is to hand out both tokens or none.
        if !self.tun.writable() {
            return None;
        }
        let n = match self.tun.recv(&mut self.rx_buf) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(_) => {
                self.stats.rx_errors += 1;
                return None;
            }
        };
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += n as u64;
        if let Some(tap) = self.tap.as_mut() {
            tap(Direction::In, &self.rx_buf[..n]);
        }
        Some((
            TunRxToken {
                buf: &mut self.rx_buf[..n],
            },
            TunTxToken {
                tun: &self.tun,
                buf: &mut self.tx_buf,
                stats: &mut self.stats,
                tap: &mut self.tap,
            },
        ))
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<Self::TxToken<'_>> {
        if !self.tun.writable() {
            return None;
        }
        Some(TunTxToken {
            tun: &self.tun,
            buf: &mut self.tx_buf,
            stats: &mut self.stats,
            tap: &mut self.tap,
        })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = self.tun.mtu();
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}
