//! HydraNet-FT protocol core.
//!
//! A `#![no_std]`, sans-IO TCP/IPv4 stack whose behaviour on the wire follows FreeBSD 14's
//! `sys/netinet`, and (in later layers) the HydraNet-FT replication logic beside it.
//!
//! The core never reads a clock, a socket or a file: the caller passes time in through
//! `handle_*(now, ..)` and drains output through `poll_transmit`, `poll_timeout` and `poll_event`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[macro_use]
mod log;

pub mod driver;
pub mod errno;
pub mod ft;
pub mod netinet;
#[cfg(feature = "sim")]
pub mod sim;
pub mod socket;
pub mod stack;
pub mod store;
pub mod time;
pub mod wire;

pub use errno::Errno;
pub use time::{Duration, Instant};
