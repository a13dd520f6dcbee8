//! What the module needs from the kernel: the services the C shim provides.
//!
//! Everything the Rust side does to the outside world goes through [`KernelOps`], so the whole
//! module runs against a fake kernel in `cargo test` (see `tests/fake/mod.rs`) and against the
//! C shim (`kmod/hydranet_kmod.c`, through [`crate::ffi`]) in a FreeBSD kernel.

use core::fmt;
use core::net::SocketAddrV4;

use hydranet_core::Errno;

/// The verdict of the inbound pfil(9) hook on one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Verdict {
    /// Not ours: the kernel's IP input carries on with it (`PFIL_PASS`).
    Pass = 0,
    /// The module took it (tunnelled client traffic, ack channel, virtual-host TCP); the shim
    /// frees the mbuf chain, the core has a copy (`PFIL_CONSUMED`).
    Consumed = 1,
    /// Ours but unusable (a garbled tunnel packet from an accepted redirector): freed and
    /// counted (`PFIL_DROPPED`).
    Dropped = 2,
}

/// The privileges the system calls check, each mapped to a `priv(9)` constant by the shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Privilege {
    /// `v_host`: the host starts answering for another address (`PRIV_NET_ADDIFADDR`).
    VirtualHost = 1,
    /// `setportopt` and the control call: how traffic of an address is handled
    /// (`PRIV_NET_ROUTE`).
    Configure = 2,
}

/// Who makes a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The calling process (`td->td_proc->p_pid`).
    pub pid: i32,
}

/// Log levels, as `log(9)` priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    /// `LOG_ERR`.
    Error = 3,
    /// `LOG_WARNING`.
    Warning = 4,
    /// `LOG_NOTICE`.
    Notice = 5,
    /// `LOG_INFO`.
    Info = 6,
}

/// The kernel services. Every method is non-blocking: the module calls them with its lock held
/// (except `copyin`/`copyout`, which the kernel entry points call before taking the lock).
pub trait KernelOps {
    /// Monotonic time in microseconds (the shim: `getsbinuptime()` converted).
    fn now_us(&self) -> u64;
    /// Wall-clock seconds since 1970 (`time_second`): only to tell this load of the module
    /// from earlier ones on the ack channel.
    fn wall_secs(&self) -> u64;
    /// Fills `buf` with unpredictable bytes (`arc4random_buf(9)`).
    fn random(&mut self, buf: &mut [u8]);

    /// Sends one complete IPv4 packet (header included, checksums done): the shim copies it
    /// into an mbuf chain and calls `ip_output(9)` with `IP_RAWOUTPUT`.
    fn ip_output(&mut self, packet: &[u8]) -> Result<(), Errno>;

    /// (Re)arms the module's one callout to fire once, `delay_us` from now
    /// (`callout_reset_sbt(9)`); it replaces any earlier arming.
    fn callout_reset(&mut self, delay_us: u64);
    /// Disarms the callout (`callout_stop(9)`; the shim drains it on unload).
    fn callout_stop(&mut self);

    /// `copyin(9)`: `dst.len()` bytes from the caller's address `uaddr`. `EFAULT` when any of
    /// them is not readable.
    fn copyin(&self, uaddr: u64, dst: &mut [u8]) -> Result<(), Errno>;
    /// `copyout(9)`: `src` to the caller's address `uaddr`. `EFAULT` when not writable.
    fn copyout(&mut self, src: &[u8], uaddr: u64) -> Result<(), Errno>;
    /// `priv_check(9)` on the calling thread. `EPERM` without the privilege.
    fn priv_check(&self, caller: &Caller, what: Privilege) -> Result<(), Errno>;

    /// Opens relay `id`: a kernel socket (`socreate`/`soconnect`, non-blocking) to the
    /// server's own listening socket at `dst`. The shim reports back through the relay entry
    /// points (connected, data, end of stream, error).
    fn relay_open(&mut self, id: usize, dst: SocketAddrV4) -> Result<(), Errno>;
    /// Relay `id` has bytes (or an end of stream) for the server, or room for the server's
    /// bytes: the shim's task should move data.
    fn relay_kick(&mut self, id: usize);
    /// Closes relay `id`'s socket (`soclose`); no more entry-point calls for it.
    fn relay_close(&mut self, id: usize);

    /// `log(9)`.
    fn log(&mut self, level: Level, args: fmt::Arguments<'_>);
}
