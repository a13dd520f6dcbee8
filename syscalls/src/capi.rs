//! The C ABI that `include/hydranet.h` declares, as system calls behave: 0 on success, -1 with
//! `errno` set on failure. The `errno` values are [`Errno`]'s, FreeBSD's numbering, on every
//! platform.
#![allow(unsafe_code)]

use crate::{DetectorParams, Errno, PortMode};
use core::ffi::{c_char, c_int, CStr};
use core::net::Ipv4Addr;
use std::panic::{catch_unwind, UnwindSafe};

fn set_errno(code: c_int) {
    // SAFETY: the C library returns a valid pointer to the calling thread's errno, which lives
    // as long as the thread and which nothing else touches while this thread runs here.
    unsafe {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            *libc::__errno_location() = code;
        }
        #[cfg(target_os = "freebsd")]
        {
            *libc::__error() = code;
        }
    }
}

/// Runs a call for C: a panic must not unwind into C (it would abort), so it becomes `EIO`.
fn syscall(f: impl FnOnce() -> Result<(), Errno> + UnwindSafe) -> c_int {
    match catch_unwind(f).unwrap_or(Err(Errno::EIO)) {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e.code());
            -1
        }
    }
}

/// `int v_host(uint32_t ip_address)`, the address in network byte order.
#[unsafe(no_mangle)]
pub extern "C" fn v_host(ip_address: u32) -> c_int {
    syscall(|| crate::v_host(Ipv4Addr::from(u32::from_be(ip_address))))
}

/// `int setportopt(uint16_t port, uint32_t mode, const struct hydranet_detector_params *params)`.
/// `params` may be NULL for `HYDRANET_PORT_NORMAL`, which has no detector; the daemon is then
/// sent the default parameters, which it ignores.
///
/// # Safety
///
/// `params` is NULL or points to a readable `struct hydranet_detector_params`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setportopt(port: u16, mode: u32, params: *const DetectorParams) -> c_int {
    syscall(|| {
        let mode = PortMode::from_raw(mode)?;
        let params = if params.is_null() {
            if mode != PortMode::Normal {
                return Err(Errno::EINVAL);
            }
            DetectorParams::default()
        } else {
            // SAFETY: the caller passes NULL (handled above) or a pointer to a readable
            // struct hydranet_detector_params, which has DetectorParams's layout (#[repr(C)],
            // four uint32_t; the header test checks it). Read unaligned in case the C side
            // packed it.
            unsafe { params.read_unaligned() }
        };
        crate::setportopt(port, mode, &params)
    })
}

/// `const char *hydranet_strerror(int errnum)`: FreeBSD's text for one of our error numbers.
#[unsafe(no_mangle)]
pub extern "C" fn hydranet_strerror(errnum: c_int) -> *const c_char {
    Errno::from_code(errnum)
        .map_or(c"Unknown error", description)
        .as_ptr()
}

/// `const char *hydranet_errname(int errnum)`: the symbolic name of one of our error numbers.
#[unsafe(no_mangle)]
pub extern "C" fn hydranet_errname(errnum: c_int) -> *const c_char {
    Errno::from_code(errnum).map_or(c"UNKNOWN", name).as_ptr()
}

fn name(e: Errno) -> &'static CStr {
    match e {
        Errno::EPERM => c"EPERM",
        Errno::ENOENT => c"ENOENT",
        Errno::EIO => c"EIO",
        Errno::EACCES => c"EACCES",
        Errno::EEXIST => c"EEXIST",
        Errno::EINVAL => c"EINVAL",
        Errno::ENOSPC => c"ENOSPC",
        Errno::EADDRINUSE => c"EADDRINUSE",
        Errno::EADDRNOTAVAIL => c"EADDRNOTAVAIL",
        Errno::ENOBUFS => c"ENOBUFS",
        Errno::ETIMEDOUT => c"ETIMEDOUT",
        Errno::ECONNREFUSED => c"ECONNREFUSED",
        Errno::ENOSYS => c"ENOSYS",
    }
}

fn description(e: Errno) -> &'static CStr {
    match e {
        Errno::EPERM => c"Operation not permitted",
        Errno::ENOENT => c"No such file or directory",
        Errno::EIO => c"Input/output error",
        Errno::EACCES => c"Permission denied",
        Errno::EEXIST => c"File exists",
        Errno::EINVAL => c"Invalid argument",
        Errno::ENOSPC => c"No space left on device",
        Errno::EADDRINUSE => c"Address already in use",
        Errno::EADDRNOTAVAIL => c"Can't assign requested address",
        Errno::ENOBUFS => c"No buffer space available",
        Errno::ETIMEDOUT => c"Operation timed out",
        Errno::ECONNREFUSED => c"Connection refused",
        Errno::ENOSYS => c"Function not implemented",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }

    fn text(p: *const c_char) -> &'static str {
        // SAFETY: the functions under test return pointers to 'static C string literals.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    }

    #[test]
    fn c_strings_match_the_rust_ones() {
        for e in Errno::ALL {
            assert_eq!(text(hydranet_errname(e.code())), e.name());
            assert_eq!(text(hydranet_strerror(e.code())), e.description());
        }
        assert_eq!(text(hydranet_errname(0)), "UNKNOWN");
        assert_eq!(text(hydranet_strerror(-1)), "Unknown error");
    }

    #[test]
    fn failures_set_errno() {
        assert_eq!(v_host(0), -1);
        assert_eq!(errno(), Errno::EINVAL.code());
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { setportopt(80, 7, core::ptr::null()) }, -1);
        assert_eq!(errno(), Errno::EINVAL.code());
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { setportopt(80, 1, core::ptr::null()) }, -1);
        assert_eq!(errno(), Errno::EINVAL.code());
        let bad = DetectorParams {
            heartbeat_timeout_ms: 1,
            ..DetectorParams::default()
        };
        // SAFETY: `bad` is a live DetectorParams.
        assert_eq!(unsafe { setportopt(80, 2, &bad) }, -1);
        assert_eq!(errno(), Errno::EINVAL.code());
    }
}
