//! The FreeBSD kernel-module shim of HydraNet-FT. **Empty for now**: it arrives with issue 7.
//!
//! This crate exports nothing yet. It builds (for the host and any target) so that the
//! workspace stays whole; no FreeBSD code is in it.
//!
//! The plan (design §5):
//!
//! * a thin C file with `DECLARE_MODULE`, `SYSCALL_MODULE` for `v_host` and `setportopt`,
//!   `pfil(9)` hooks on the `inet` head, `callout(9)` timers and mbuf access;
//! * this crate, built as a Rust static library over `hydranet-core` (`no_std`, no `alloc`
//!   unless the kernel's `malloc(9)` backs it), exposing the entry points the C file calls:
//!   module load/unload, packet in (from a pfil hook), packet out (to `ip_output`), timer fire,
//!   and the two system calls;
//! * linked through `bsd.kmod.mk` and loaded with `kldload`. The module cannot be loaded on
//!   the project's Linux machines, so its logic is tested on Linux against a fake kernel
//!   interface; the README says how to build and load it on FreeBSD 14.
#![no_std]
#![forbid(unsafe_code)]
