//! The `extern "C"` entry points `kmod/hydranet_kmod.c` calls, and the kernel services it
//! provides back (`hn_k_*`), as [`KernelOps`].
//!
//! Locking: the shim holds its mutex (`hn_mtx`) around every entry point except the system
//! calls. Those fetch and check their arguments first (`copyin(9)` may sleep, which is not
//! allowed under a mutex), then take the mutex through `hn_k_lock` for the module's part, and
//! copy results out after dropping it.
#![allow(unsafe_code)]

#[cfg(target_os = "none")]
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt::{self, Write as _};
use core::mem::MaybeUninit;
use core::net::{Ipv4Addr, SocketAddrV4};

use hydranet_core::netinet::tcp_sysctl::TcpSysctl;
use hydranet_core::socket::sockbuf::SockBuf;
use hydranet_core::socket::socketvar::Socket;
use hydranet_core::stack::Stack;
use hydranet_core::Errno;

use crate::kernel::{Caller, KernelOps, Level, Privilege};
use crate::mbuf::Chain;
use crate::module::{Module, RelayEvent, Storage};
use crate::syscall;

/// TCP sockets of the module: listeners and relayed connections.
const SOCKETS: usize = 32;
/// Each socket's receive and send buffer.
const SOCKBUF: usize = 64 * 1024;
/// Segments of one mbuf chain the shim passes (it `m_collapse`s longer chains first).
pub const MAX_SEGS: usize = 32;

extern "C" {
    fn hn_k_now_us() -> u64;
    fn hn_k_wall_secs() -> u64;
    fn hn_k_random(buf: *mut u8, len: usize);
    fn hn_k_ip_output(pkt: *const u8, len: usize) -> i32;
    fn hn_k_callout_reset(delay_us: u64);
    fn hn_k_callout_stop();
    fn hn_k_copyin(uaddr: u64, dst: *mut u8, len: usize) -> i32;
    fn hn_k_copyout(src: *const u8, uaddr: u64, len: usize) -> i32;
    fn hn_k_priv_check(what: i32) -> i32;
    fn hn_k_relay_open(id: i32, addr_be: u32, port: u16) -> i32;
    fn hn_k_relay_kick(id: i32);
    fn hn_k_relay_close(id: i32);
    fn hn_k_log(level: i32, msg: *const u8, len: usize);
    fn hn_k_lock();
    fn hn_k_unlock();
    #[cfg(target_os = "none")]
    fn hn_k_panic(msg: *const u8, len: usize) -> !;
    #[cfg(target_os = "none")]
    fn hn_k_malloc(size: usize, zero: i32) -> *mut u8;
    #[cfg(target_os = "none")]
    fn hn_k_free(p: *mut u8);
}

/// The heap of the core's tables (its `alloc` feature): malloc(9), type `M_HYDRANET`, through
/// the shim. Every allocation happens with hn_mtx held (or in the pfil hook), so the shim never
/// sleeps (`M_NOWAIT`): a NULL answer is a failed allocation, which the core's bounded tables
/// (`hydranet_core::store`, fallible growth) take as full. Whatever is left when the module is
/// dropped on unload is freed then, so `M_HYDRANET` reports no leak.
#[cfg(target_os = "none")]
struct KernelHeap;

/// The alignment malloc(9) guarantees: a pointer's (its zones are `UMA_ALIGN_PTR`; large blocks
/// are page-aligned). The core asks no more; a larger alignment is refused rather than broken.
#[cfg(target_os = "none")]
const KMALLOC_ALIGN: usize = core::mem::align_of::<usize>();

#[cfg(target_os = "none")]
// SAFETY: malloc(9) returns NULL or a block of at least `size` bytes, aligned to
// KMALLOC_ALIGN, that stays valid until free(9); larger alignments get NULL.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > KMALLOC_ALIGN {
            return core::ptr::null_mut();
        }
        // SAFETY: a plain C call with a non-zero size (GlobalAlloc's contract).
        unsafe { hn_k_malloc(layout.size(), 0) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() > KMALLOC_ALIGN {
            return core::ptr::null_mut();
        }
        // SAFETY: as above; M_ZERO clears the block.
        unsafe { hn_k_malloc(layout.size(), 1) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from hn_k_malloc (GlobalAlloc's contract) and is freed once.
        unsafe { hn_k_free(ptr) }
    }
}

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: KernelHeap = KernelHeap;

fn errno_of(rc: i32) -> Result<(), Errno> {
    match rc {
        0 => Ok(()),
        14 => Err(Errno::EFAULT),
        1 => Err(Errno::EPERM),
        55 => Err(Errno::ENOBUFS),
        61 => Err(Errno::ECONNREFUSED),
        _ => Err(Errno::EINVAL),
    }
}

/// The kernel, through the shim.
pub struct CKernel;

impl KernelOps for CKernel {
    fn now_us(&self) -> u64 {
        // SAFETY: a plain C function without arguments.
        unsafe { hn_k_now_us() }
    }
    fn wall_secs(&self) -> u64 {
        // SAFETY: as above.
        unsafe { hn_k_wall_secs() }
    }
    fn random(&mut self, buf: &mut [u8]) {
        // SAFETY: `buf` is valid for writes of its length for the call.
        unsafe { hn_k_random(buf.as_mut_ptr(), buf.len()) }
    }
    fn ip_output(&mut self, packet: &[u8]) -> Result<(), Errno> {
        // SAFETY: `packet` is valid for reads of its length; the shim copies it (m_devget).
        errno_of(unsafe { hn_k_ip_output(packet.as_ptr(), packet.len()) })
    }
    fn callout_reset(&mut self, delay_us: u64) {
        // SAFETY: called with hn_mtx held, which the callout was initialised with.
        unsafe { hn_k_callout_reset(delay_us) }
    }
    fn callout_stop(&mut self) {
        // SAFETY: as above.
        unsafe { hn_k_callout_stop() }
    }
    fn copyin(&self, uaddr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: `dst` is kernel memory valid for writes of its length; the user address is
        // checked by copyin(9) itself.
        errno_of(unsafe { hn_k_copyin(uaddr, dst.as_mut_ptr(), dst.len()) })
    }
    fn copyout(&mut self, src: &[u8], uaddr: u64) -> Result<(), Errno> {
        // SAFETY: `src` is kernel memory valid for reads; copyout(9) checks the user side.
        errno_of(unsafe { hn_k_copyout(src.as_ptr(), uaddr, src.len()) })
    }
    fn priv_check(&self, _caller: &Caller, what: Privilege) -> Result<(), Errno> {
        // SAFETY: the shim checks curthread, which is the caller.
        errno_of(unsafe { hn_k_priv_check(what as i32) })
    }
    fn relay_open(&mut self, id: usize, dst: SocketAddrV4) -> Result<(), Errno> {
        let addr = u32::from(*dst.ip()).to_be();
        // SAFETY: plain values; the shim queues the connect for its task.
        errno_of(unsafe { hn_k_relay_open(id as i32, addr, dst.port()) })
    }
    fn relay_kick(&mut self, id: usize) {
        // SAFETY: plain value.
        unsafe { hn_k_relay_kick(id as i32) }
    }
    fn relay_close(&mut self, id: usize) {
        // SAFETY: plain value.
        unsafe { hn_k_relay_close(id as i32) }
    }
    fn log(&mut self, level: Level, args: fmt::Arguments<'_>) {
        let mut b = Buf::<256>::new();
        let _ = b.write_fmt(args);
        // SAFETY: the bytes are valid for reads of `len`; log(9) formats them with "%.*s".
        unsafe { hn_k_log(level as i32, b.buf.as_ptr(), b.len) }
    }
}

struct Buf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    const fn new() -> Self {
        Buf {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> fmt::Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Module state, touched only with hn_mtx held (or during load/unload, when no hook, callout
/// or syscall can run).
struct Global<T>(UnsafeCell<T>);

// SAFETY: every access is serialised by the shim's mutex (see the module comment).
unsafe impl<T> Sync for Global<T> {}

static STORAGE: Global<Storage> = Global(UnsafeCell::new(Storage::new()));
static SOCKBUFS: Global<[[u8; SOCKBUF]; 2 * SOCKETS]> =
    Global(UnsafeCell::new([[0; SOCKBUF]; 2 * SOCKETS]));
static SOCKETS_MEM: Global<[MaybeUninit<Socket<'static>>; SOCKETS]> =
    Global(UnsafeCell::new([const { MaybeUninit::uninit() }; SOCKETS]));
// MaybeUninit and a flag rather than an Option: the module is large and an Option's `None`
// would put all of it in .data instead of .bss.
static MODULE: Global<MaybeUninit<Module<'static, CKernel>>> =
    Global(UnsafeCell::new(MaybeUninit::uninit()));
static LOADED: Global<bool> = Global(UnsafeCell::new(false));

/// The module, if loaded.
///
/// # Safety
///
/// hn_mtx is held, and no other reference from this function is alive.
unsafe fn module() -> Option<&'static mut Module<'static, CKernel>> {
    // SAFETY: the caller holds the lock that serialises every access; LOADED says whether
    // MODULE is initialised.
    unsafe {
        if *LOADED.0.get() {
            Some((*MODULE.0.get()).assume_init_mut())
        } else {
            None
        }
    }
}

/// Runs `f` on the module with hn_mtx taken (for the syscalls, which enter unlocked).
fn locked<R>(
    f: impl FnOnce(&mut Module<'static, CKernel>) -> Result<R, Errno>,
) -> Result<R, Errno> {
    // SAFETY: the lock functions take and drop hn_mtx; between them we are the only user.
    unsafe {
        hn_k_lock();
        let r = match module() {
            Some(m) => f(m),
            None => Err(Errno::EINVAL),
        };
        hn_k_unlock();
        r
    }
}

fn code(r: Result<(), Errno>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// The module's sockets, each written into its static slot over its static buffers: one
/// socket (1.7 KiB) at a time is a value on the stack, never the array of them. Not inlined, so
/// its frame is gone before `hn_mod_load` builds the stack and the module.
///
/// # Safety
///
/// Only during `MOD_LOAD`, when nothing else touches these statics; the buffers are handed
/// out again, to this load's sockets only (the previous load's are gone).
#[inline(never)]
unsafe fn init_sockets() -> &'static mut [Socket<'static>] {
    // SAFETY: as documented above, these statics are ours alone for the call.
    unsafe {
        let cfg = TcpSysctl::default();
        let bufs = &mut *SOCKBUFS.0.get();
        let slots = &mut *SOCKETS_MEM.0.get();
        let mut it = bufs.iter_mut();
        for slot in slots.iter_mut() {
            let rcv = it.next().map(|b| &mut b[..]).unwrap_or(&mut []);
            let snd = it.next().map(|b| &mut b[..]).unwrap_or(&mut []);
            slot.write(Socket::new(SockBuf::new(rcv), SockBuf::new(snd), &cfg));
        }
        // Every slot was just written, and MaybeUninit<T> has T's layout.
        core::slice::from_raw_parts_mut(slots.as_mut_ptr().cast::<Socket<'static>>(), SOCKETS)
    }
}

/// `MOD_LOAD`: the host server with its own address `addr_be` (network byte order, from the
/// `hydranet.addr` tunable). Returns an errno.
///
/// Nothing large is a value on the stack: the sockets are made one at a time
/// ([`init_sockets`]), and with the core's `alloc` feature the `Stack` (1.7 KiB), the `Host`
/// (2 KiB) and the `Module` (3 KiB) built by value here are small; the groups `ft_group` adds
/// later (2.2 KiB each by value) keep their tables on the heap. See README, "Stack use".
#[no_mangle]
pub extern "C" fn hn_mod_load(addr_be: u32) -> i32 {
    let addr = Ipv4Addr::from(u32::from_be(addr_be));
    // SAFETY: MOD_LOAD runs before the hooks, callout and syscalls are registered, so nothing
    // else touches these statics.
    unsafe {
        let sockets = init_sockets();
        let mut k = CKernel;
        let seed = Module::<CKernel>::seed(&mut k);
        let stack = Stack::new(sockets, seed);
        match Module::load(k, stack, addr, &mut *STORAGE.0.get()) {
            Ok(m) => {
                (*MODULE.0.get()).write(m);
                *LOADED.0.get() = true;
                0
            }
            Err(e) => e.code(),
        }
    }
}

/// `MOD_QUIESCE`: `EBUSY` while connections are live. Called with hn_mtx held.
#[no_mangle]
pub extern "C" fn hn_mod_quiesce() -> i32 {
    // SAFETY: hn_mtx is held by the caller.
    code(unsafe { module() }.map_or(Ok(()), |m| m.quiesce()))
}

/// `MOD_UNLOAD`, after the hooks, syscalls and process events are gone; called with hn_mtx
/// held. The shim drains the callout afterwards.
#[no_mangle]
pub extern "C" fn hn_mod_unload() {
    // SAFETY: hn_mtx is held; after this nothing refers to the module.
    unsafe {
        if *LOADED.0.get() {
            *LOADED.0.get() = false;
            let _ = (*MODULE.0.get()).assume_init_read().unload();
        }
    }
}

/// One segment of an mbuf chain: `m_data` and `m_len`.
#[repr(C)]
pub struct HnSeg {
    pub data: *const u8,
    pub len: usize,
}

/// The inbound pfil hook: 0 pass, 1 consumed, 2 dropped (the shim frees the chain for 1 and
/// 2). Called with hn_mtx held.
///
/// # Safety
///
/// `segs` points to `nsegs` segments whose data stay valid and unchanged for the call.
#[no_mangle]
pub unsafe extern "C" fn hn_pfil_in(segs: *const HnSeg, nsegs: usize) -> i32 {
    if segs.is_null() || nsegs == 0 || nsegs > MAX_SEGS {
        return 0;
    }
    // SAFETY: the caller passes `nsegs` valid segments.
    let raw = unsafe { core::slice::from_raw_parts(segs, nsegs) };
    let mut views: heapless::Vec<&[u8], MAX_SEGS> = heapless::Vec::new();
    for s in raw {
        if s.data.is_null() || s.len == 0 {
            continue;
        }
        // SAFETY: each segment's data is valid for reads of its length for the call.
        let _ = views.push(unsafe { core::slice::from_raw_parts(s.data, s.len) });
    }
    // SAFETY: hn_mtx is held.
    match unsafe { module() } {
        Some(m) => m.pfil_in(Chain::new(&views)) as i32,
        None => 0,
    }
}

/// The callout fired (it runs with hn_mtx held: callout_init_mtx).
#[no_mangle]
pub extern "C" fn hn_callout_fire() {
    // SAFETY: hn_mtx is held.
    if let Some(m) = unsafe { module() } {
        m.callout_fire();
    }
}

/// `v_host(ip)`; returns an errno.
#[no_mangle]
pub extern "C" fn hn_sys_v_host(pid: i32, ip: u64) -> i32 {
    let caller = Caller { pid };
    code(
        syscall::fetch_v_host(&CKernel, &caller, ip)
            .and_then(|ip| locked(|m| m.apply_v_host(&caller, ip))),
    )
}

/// `setportopt(port, mode, params)`; returns an errno.
#[no_mangle]
pub extern "C" fn hn_sys_setportopt(pid: i32, port: u64, mode: u64, uparams: u64) -> i32 {
    let caller = Caller { pid };
    code(
        syscall::fetch_setportopt(&CKernel, &caller, port, mode, uparams)
            .and_then(|opt| locked(|m| m.apply_setportopt(&caller, opt))),
    )
}

/// `hydranet_ctl(req, reqlen, resp, resplen)`; `scratch` is kernel memory of
/// `2 * MAX_LINE + 1` bytes the shim allocated. The answer's length goes to `*retval`.
/// Returns an errno.
///
/// # Safety
///
/// `scratch` is valid for writes of `scratch_len` bytes and `retval` for one write.
#[no_mangle]
pub unsafe extern "C" fn hn_sys_ctl(
    pid: i32,
    ureq: u64,
    req_len: u64,
    uresp: u64,
    resp_len: u64,
    scratch: *mut u8,
    scratch_len: usize,
    retval: *mut i64,
) -> i32 {
    let caller = Caller { pid };
    if scratch.is_null() || retval.is_null() || scratch_len < 2 * crate::ctl::MAX_LINE + 1 {
        return Errno::EINVAL.code();
    }
    // SAFETY: the caller passes a writable buffer of `scratch_len` bytes.
    let scratch = unsafe { core::slice::from_raw_parts_mut(scratch, scratch_len) };
    let (req, resp) = scratch.split_at_mut(crate::ctl::MAX_LINE);
    let r = syscall::fetch_ctl(&CKernel, &caller, ureq, req_len, uresp, resp_len, req)
        .and_then(|n| locked(|m| Ok(m.apply_ctl(&req[..n], resp))))
        .and_then(|n| syscall::store_ctl(&mut CKernel, uresp, resp, n));
    match r {
        Ok(n) => {
            // SAFETY: `retval` is valid for one write.
            unsafe { *retval = n as i64 };
            0
        }
        Err(e) => e.code(),
    }
}

/// `process_fork` event handler (hn_mtx held).
#[no_mangle]
pub extern "C" fn hn_proc_fork(parent: i32, child: i32) {
    // SAFETY: hn_mtx is held.
    if let Some(m) = unsafe { module() } {
        m.proc_fork(parent, child);
    }
}

/// `process_exit` event handler (hn_mtx held).
#[no_mangle]
pub extern "C" fn hn_proc_exit(pid: i32) {
    // SAFETY: hn_mtx is held.
    if let Some(m) = unsafe { module() } {
        m.proc_exit(pid);
    }
}

/// Bytes for the server (not consumed); `*eof` set once the client's end of stream is next.
///
/// # Safety
///
/// `buf` is valid for writes of `cap` bytes, `eof` for one write (hn_mtx held).
#[no_mangle]
pub unsafe extern "C" fn hn_relay_pull(id: i32, buf: *mut u8, cap: usize, eof: *mut i32) -> usize {
    if buf.is_null() || eof.is_null() || id < 0 {
        return 0;
    }
    // SAFETY: as documented above.
    let (out, eof) = unsafe { (core::slice::from_raw_parts_mut(buf, cap), &mut *eof) };
    // SAFETY: hn_mtx is held.
    let (n, e) = unsafe { module() }.map_or((0, false), |m| m.relay_pull(id as usize, out));
    *eof = e as i32;
    n
}

/// `n` pulled bytes reached the server (hn_mtx held).
#[no_mangle]
pub extern "C" fn hn_relay_consumed(id: i32, n: usize) {
    // SAFETY: hn_mtx is held.
    if let (Some(m), Ok(id)) = (unsafe { module() }, usize::try_from(id)) {
        m.relay_consumed(id, n);
    }
}

/// Room for the server's bytes (hn_mtx held).
#[no_mangle]
pub extern "C" fn hn_relay_room(id: i32) -> usize {
    // SAFETY: hn_mtx is held.
    match (unsafe { module() }, usize::try_from(id)) {
        (Some(m), Ok(id)) => m.relay_room(id),
        _ => 0,
    }
}

/// The server's bytes; returns how many were taken (hn_mtx held).
///
/// # Safety
///
/// `data` is valid for reads of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hn_relay_push(id: i32, data: *const u8, len: usize) -> usize {
    if data.is_null() {
        return 0;
    }
    // SAFETY: as documented above.
    let data = unsafe { core::slice::from_raw_parts(data, len) };
    // SAFETY: hn_mtx is held.
    match (unsafe { module() }, usize::try_from(id)) {
        (Some(m), Ok(id)) => m.relay_push(id, data),
        _ => 0,
    }
}

/// News about a relay socket: 1 connected, 2 end of stream, 3 error (hn_mtx held).
#[no_mangle]
pub extern "C" fn hn_relay_event(id: i32, ev: i32) {
    let ev = match ev {
        1 => RelayEvent::Connected,
        2 => RelayEvent::Eof,
        _ => RelayEvent::Error,
    };
    // SAFETY: hn_mtx is held.
    if let (Some(m), Ok(id)) = (unsafe { module() }, usize::try_from(id)) {
        m.relay_event(id, ev);
    }
}

/// A panic in the kernel is the kernel's panic(9): unwinding does not exist there.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut b = Buf::<192>::new();
    let _ = write!(b, "{}", info.message());
    if let Some(l) = info.location() {
        let _ = write!(b, " at {}:{}", l.file(), l.line());
    }
    // SAFETY: the bytes are valid for reads of `len`; hn_k_panic does not return.
    unsafe { hn_k_panic(b.buf.as_ptr(), b.len) }
}
