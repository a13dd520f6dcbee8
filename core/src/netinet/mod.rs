//! TCP, organised as FreeBSD's `sys/netinet` is.

pub mod cc;
pub mod tcp_cc;
pub mod tcp_fsm;
pub mod tcp_input;
pub mod tcp_output;
pub mod tcp_reass;
pub mod tcp_sack;
pub mod tcp_seq;
pub mod tcp_stat;
pub mod tcp_subr;
pub mod tcp_syncache;
pub mod tcp_sysctl;
pub mod tcp_timer;
pub mod tcp_usrreq;
pub mod tcp_var;

pub use tcp_sysctl::TcpSysctl;
