//! TCP, organised as FreeBSD's `sys/netinet` is.

pub mod cc;
pub mod tcp_reass;
pub mod tcp_sack;
pub mod tcp_seq;
