//! The FreeBSD kernel module of HydraNet-FT: the Rust side.
//!
//! A thin C file (`kmod/hydranet_kmod.c`) does what only the kernel can: `DECLARE_MODULE`,
//! three `SYSCALL_MODULE`s (`v_host`, `setportopt`, `hydranet_ctl` for the group and
//! redirector configuration), the inbound `pfil(9)` hook on the `inet` head, the `callout(9)`,
//! mbufs, `ip_output`, the relay sockets and the process fork/exit events. Everything else is
//! here, built `no_std` as a static library and linked into the module by `bsd.kmod.mk`. The
//! core's tables live on the heap (its `alloc` feature, over `malloc(9)`: the global allocator
//! in `ffi`), so nothing large is built on the kernel's 16 KiB stack:
//!
//! * [`module::Module`]: the host server (the core's [`hydranet_core::ft::host::Host`]) as a
//!   sans-IO object over [`kernel::KernelOps`], the kernel services the shim provides;
//! * [`mbuf::Chain`]: mbuf chains as segment lists, gathered when headers are split;
//! * [`syscall`]: argument fetching and checking (`EFAULT`, `EINVAL`, `EPERM`);
//! * [`ctl`]: the control protocol's host-server requests, parsed without `std`;
//! * [`relay`]: the in-kernel relay to the unmodified server's own socket;
//! * `ffi` (feature `kmod`): the `extern "C"` entry points the shim calls, and the
//!   [`kernel::KernelOps`] implementation that calls the shim back.
//!
//! The tests run the module against a fake kernel (`tests/fake`), since no FreeBSD kernel can
//! boot where this is built.
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod ctl;
pub mod kernel;
pub mod mbuf;
pub mod module;
pub mod relay;
pub mod syscall;

#[cfg(feature = "kmod")]
mod ffi;

pub use kernel::{Caller, KernelOps, Level, Privilege, Verdict};
pub use mbuf::Chain;
pub use module::{ModStats, Module, RelayEvent, Storage, UnloadReport};
