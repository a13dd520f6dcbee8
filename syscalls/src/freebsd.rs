//! The FreeBSD backend: the kernel module's system calls (`platform-freebsd`).
//!
//! The module registers its calls with `SYSCALL_MODULE` under the names `sys/v_host`,
//! `sys/setportopt` and `sys/hydranet_ctl`, in whatever free slots of the syscall table the
//! kernel gives it. `modfind(2)` finds each by name and `modstat(2)` reads its number
//! (`data.intval`); then `syscall(2)` makes the call. A module that is not loaded makes every
//! call `ENOSYS`, as a missing system call would.
//!
//! The kernel knows which process calls, so `setportopt` names no virtual host: the module
//! looks up the one the process (or the parent it was forked from) bound with `v_host`.
#![allow(unsafe_code)]

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, CStr};
use core::net::Ipv4Addr;

use crate::ctl::{Request, Response, MAX_LINE};
use crate::{DetectorParams, Errno, PortMode};

/// The module name of `v_host`.
pub const V_HOST_MODULE: &CStr = c"sys/v_host";
/// The module name of `setportopt`.
pub const SETPORTOPT_MODULE: &CStr = c"sys/setportopt";
/// The module name of `hydranet_ctl`, which takes the control protocol's request lines.
pub const CTL_MODULE: &CStr = c"sys/hydranet_ctl";

/// `MAXMODNAME` of `<sys/module.h>`.
const MAXMODNAME: usize = 32;

/// `modspecific_t` of `<sys/module.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
union ModSpecific {
    intval: c_int,
    uintval: c_uint,
    longval: c_long,
    ulongval: c_ulong,
}

/// `struct module_stat` of `<sys/module.h>`.
#[repr(C)]
struct ModuleStat {
    version: c_int,
    name: [c_char; MAXMODNAME],
    refs: c_int,
    id: c_int,
    data: ModSpecific,
}

extern "C" {
    // In FreeBSD's libc; the libc crate does not bind them.
    fn modfind(modname: *const c_char) -> c_int;
    fn modstat(modid: c_int, stat: *mut ModuleStat) -> c_int;
}

fn last_errno() -> Errno {
    // On FreeBSD the host's numbers are the API's numbers.
    std::io::Error::last_os_error()
        .raw_os_error()
        .and_then(Errno::from_code)
        .unwrap_or(Errno::EIO)
}

/// The syscall number the module got for `name`; `ENOSYS` when the module is not loaded.
pub fn syscall_number(name: &CStr) -> Result<c_int, Errno> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let id = unsafe { modfind(name.as_ptr()) };
    if id < 0 {
        return Err(Errno::ENOSYS);
    }
    let mut st = ModuleStat {
        version: core::mem::size_of::<ModuleStat>() as c_int,
        name: [0; MAXMODNAME],
        refs: 0,
        id: 0,
        data: ModSpecific { longval: 0 },
    };
    // SAFETY: `st` is a writable module_stat whose version field says its size.
    if unsafe { modstat(id, &mut st) } < 0 {
        return Err(Errno::ENOSYS);
    }
    // SAFETY: SYSCALL_MODULE stores the slot as an int (data.intval); all fields are plain
    // integers, so reading this one is defined whatever was written.
    Ok(unsafe { st.data.intval })
}

/// `v_host(ip)` through the module.
pub fn v_host(ip: Ipv4Addr) -> Result<(), Errno> {
    let num = syscall_number(V_HOST_MODULE)?;
    let arg = c_ulong::from(u32::from(ip).to_be());
    // SAFETY: the module's v_host takes one u_long and touches no memory of ours.
    if unsafe { libc::syscall(num, arg) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// `setportopt(port, mode, &params)` through the module, on the calling process's virtual
/// host.
pub fn setportopt(port: u16, mode: PortMode, params: &DetectorParams) -> Result<(), Errno> {
    let num = syscall_number(SETPORTOPT_MODULE)?;
    let p: *const DetectorParams = params;
    // SAFETY: the module copies in sizeof(struct hydranet_detector_params) bytes from `p`,
    // which points to a live #[repr(C)] DetectorParams of exactly that layout.
    let rc = unsafe { libc::syscall(num, c_uint::from(port), mode.to_raw() as c_uint, p) };
    if rc < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// One control request (`group`, `redirector`, `status`...) to the module; its answer, as the
/// host daemon would give it on Linux.
pub fn ctl(req: &Request) -> Result<Response, Errno> {
    let num = syscall_number(CTL_MODULE)?;
    let line = req.to_string();
    let mut resp = vec![0u8; MAX_LINE];
    // SAFETY: the module reads `line.len()` bytes of `line` and writes at most `resp.len()`
    // bytes into `resp`; both stay alive for the call.
    let n = unsafe {
        libc::syscall(
            num,
            line.as_ptr(),
            line.len(),
            resp.as_mut_ptr(),
            resp.len(),
        )
    };
    if n < 0 {
        return Err(last_errno());
    }
    resp.truncate((n as usize).min(MAX_LINE));
    let text = String::from_utf8(resp).map_err(|_| Errno::EIO)?;
    Response::parse(&text)
}
