//! The system calls' arguments: fetched from the caller (`copyin`) and checked before the
//! module's lock is taken, since `copyin(9)` may fault and sleep and the lock is a mutex.
//!
//! * `int v_host(u_long ip_address)`: the address in network byte order, as the C API.
//! * `int setportopt(u_short port, u_int mode, const struct hydranet_detector_params *p)`.
//! * `int hydranet_ctl(const char *req, size_t reqlen, char *resp, size_t resplen)`: one
//!   control-protocol line; the answer line (NUL-terminated, no `\n`) is copied out and its
//!   length returned.

use core::net::Ipv4Addr;

use hydranet_core::ft::params::{DetectorParams, PortMode};
use hydranet_core::Errno;

use crate::ctl::MAX_LINE;
use crate::kernel::{Caller, KernelOps, Privilege};

/// `sizeof(struct hydranet_detector_params)`: four `uint32_t`.
pub const PARAMS_LEN: usize = 16;

/// The smallest answer buffer `hydranet_ctl` takes: a whole line and its NUL. Asking for it
/// up front means a request is never applied and then refused for want of room to answer.
pub const CTL_RESP_MIN: u64 = MAX_LINE as u64;

/// `v_host`'s argument, checked.
pub fn fetch_v_host<K: KernelOps + ?Sized>(
    k: &K,
    caller: &Caller,
    ip: u64,
) -> Result<Ipv4Addr, Errno> {
    k.priv_check(caller, Privilege::VirtualHost)?;
    let raw = u32::try_from(ip).map_err(|_| Errno::EINVAL)?;
    let ip = Ipv4Addr::from(u32::from_be(raw));
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(Errno::EINVAL);
    }
    Ok(ip)
}

/// `setportopt`'s arguments, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOpt {
    pub port: u16,
    pub mode: PortMode,
    pub params: DetectorParams,
}

pub fn fetch_setportopt<K: KernelOps + ?Sized>(
    k: &K,
    caller: &Caller,
    port: u64,
    mode: u64,
    uparams: u64,
) -> Result<PortOpt, Errno> {
    k.priv_check(caller, Privilege::Configure)?;
    let port = match u16::try_from(port) {
        Ok(p) if p != 0 => p,
        _ => return Err(Errno::EINVAL),
    };
    let mode = match mode {
        0 => PortMode::Normal,
        1 => PortMode::Primary,
        2 => PortMode::Backup,
        _ => return Err(Errno::EINVAL),
    };
    let params = if uparams == 0 {
        // A normal port has no detector, so NULL is allowed there (as in the C API).
        if mode != PortMode::Normal {
            return Err(Errno::EINVAL);
        }
        DetectorParams::default()
    } else {
        let mut b = [0u8; PARAMS_LEN];
        k.copyin(uparams, &mut b)?;
        // The caller's own byte order: the struct is native uint32_t.
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        DetectorParams {
            retransmit_threshold: w(0),
            retransmit_window_ms: w(4),
            heartbeat_interval_ms: w(8),
            heartbeat_timeout_ms: w(12),
        }
    };
    if mode != PortMode::Normal {
        params.validate()?;
    }
    Ok(PortOpt { port, mode, params })
}

/// Copies `hydranet_ctl`'s request line into `scratch` (kernel memory the shim provides, at
/// least [`MAX_LINE`] bytes) and returns its length.
pub fn fetch_ctl<K: KernelOps + ?Sized>(
    k: &K,
    caller: &Caller,
    ureq: u64,
    req_len: u64,
    uresp: u64,
    resp_len: u64,
    scratch: &mut [u8],
) -> Result<usize, Errno> {
    k.priv_check(caller, Privilege::Configure)?;
    let len = usize::try_from(req_len).map_err(|_| Errno::EINVAL)?;
    if len == 0 || len > MAX_LINE || resp_len < CTL_RESP_MIN || uresp == 0 {
        return Err(Errno::EINVAL);
    }
    if ureq == 0 {
        return Err(Errno::EFAULT);
    }
    let dst = scratch.get_mut(..len).ok_or(Errno::EINVAL)?;
    k.copyin(ureq, dst)?;
    Ok(len)
}

/// Copies the answer line of `n` bytes at the start of `resp` (which has room for one more)
/// to the caller, NUL-terminated; returns `n`.
pub fn store_ctl<K: KernelOps + ?Sized>(
    k: &mut K,
    uresp: u64,
    resp: &mut [u8],
    n: usize,
) -> Result<usize, Errno> {
    let n = n.min(MAX_LINE - 1);
    let out = resp.get_mut(..n + 1).ok_or(Errno::EINVAL)?;
    out[n] = 0;
    k.copyout(out, uresp)?;
    Ok(n)
}
