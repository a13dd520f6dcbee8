//! FreeBSD's numeric values for the symbols packetdrill scripts use.
//!
//! The scripts in the FreeBSD tcp-testsuite were written against FreeBSD's headers, so every
//! symbolic constant (socket option names, fcntl flags, TCP states) is resolved with FreeBSD's
//! numbering, whatever the host the runner itself happens to run on.

use hydranet_core::Errno;

pub const AF_INET: i64 = 2;
pub const SOCK_STREAM: i64 = 1;

pub const SOL_SOCKET: i32 = 0xffff;
pub const IPPROTO_IP: i32 = 0;
pub const IPPROTO_TCP: i32 = 6;

pub const SO_REUSEADDR: i32 = 0x4;
pub const SO_KEEPALIVE: i32 = 0x8;
pub const SO_LINGER: i32 = 0x80;
pub const SO_REUSEPORT: i32 = 0x200;
pub const SO_SNDBUF: i32 = 0x1001;
pub const SO_RCVBUF: i32 = 0x1002;
pub const SO_SNDLOWAT: i32 = 0x1003;
pub const SO_RCVLOWAT: i32 = 0x1004;
pub const SO_ERROR: i32 = 0x1007;
pub const SO_TYPE: i32 = 0x1008;

pub const TCP_NODELAY: i32 = 1;
pub const TCP_MAXSEG: i32 = 2;
pub const TCP_NOPUSH: i32 = 4;
pub const TCP_NOOPT: i32 = 8;
pub const TCP_INFO: i32 = 32;
pub const TCP_KEEPINIT: i32 = 128;
pub const TCP_KEEPIDLE: i32 = 256;
pub const TCP_KEEPINTVL: i32 = 512;
pub const TCP_KEEPCNT: i32 = 1024;

pub const O_RDONLY: i32 = 0;
pub const O_WRONLY: i32 = 1;
pub const O_RDWR: i32 = 2;
pub const O_NONBLOCK: i32 = 4;

pub const F_GETFL: i32 = 3;
pub const F_SETFL: i32 = 4;

pub const SHUT_RD: i32 = 0;
pub const SHUT_WR: i32 = 1;
pub const SHUT_RDWR: i32 = 2;

/// `TCPS_*` from `<netinet/tcp_fsm.h>`.
pub const TCPS_CLOSED: u8 = 0;
pub const TCPS_LISTEN: u8 = 1;
pub const TCPS_SYN_SENT: u8 = 2;
pub const TCPS_SYN_RECEIVED: u8 = 3;
pub const TCPS_ESTABLISHED: u8 = 4;
pub const TCPS_CLOSE_WAIT: u8 = 5;
pub const TCPS_FIN_WAIT_1: u8 = 6;
pub const TCPS_CLOSING: u8 = 7;
pub const TCPS_LAST_ACK: u8 = 8;
pub const TCPS_FIN_WAIT_2: u8 = 9;
pub const TCPS_TIME_WAIT: u8 = 10;

/// `tcpi_options` bits from `<netinet/tcp.h>`.
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
pub const TCPI_OPT_SACK: u8 = 2;
pub const TCPI_OPT_WSCALE: u8 = 4;
pub const TCPI_OPT_ECN: u8 = 8;
pub const TCPI_OPT_TOE: u8 = 16;

/// The value of a symbol that may appear as a system call argument or expected value.
pub fn symbol(name: &str) -> Option<i64> {
    let v: i64 = match name {
        "AF_INET" | "PF_INET" => AF_INET,
        "SOCK_STREAM" => SOCK_STREAM,
        "SOL_SOCKET" => SOL_SOCKET.into(),
        "IPPROTO_IP" => IPPROTO_IP.into(),
        "IPPROTO_TCP" => IPPROTO_TCP.into(),
        "SO_REUSEADDR" => SO_REUSEADDR.into(),
        "SO_KEEPALIVE" => SO_KEEPALIVE.into(),
        "SO_LINGER" => SO_LINGER.into(),
        "SO_REUSEPORT" => SO_REUSEPORT.into(),
        "SO_SNDBUF" => SO_SNDBUF.into(),
        "SO_RCVBUF" => SO_RCVBUF.into(),
        "SO_SNDLOWAT" => SO_SNDLOWAT.into(),
        "SO_RCVLOWAT" => SO_RCVLOWAT.into(),
        "SO_ERROR" => SO_ERROR.into(),
        "SO_TYPE" => SO_TYPE.into(),
        "TCP_NODELAY" => TCP_NODELAY.into(),
        "TCP_MAXSEG" => TCP_MAXSEG.into(),
        "TCP_NOPUSH" => TCP_NOPUSH.into(),
        "TCP_NOOPT" => TCP_NOOPT.into(),
        "TCP_INFO" => TCP_INFO.into(),
        "TCP_KEEPINIT" => TCP_KEEPINIT.into(),
        "TCP_KEEPIDLE" => TCP_KEEPIDLE.into(),
        "TCP_KEEPINTVL" => TCP_KEEPINTVL.into(),
        "TCP_KEEPCNT" => TCP_KEEPCNT.into(),
        "O_RDONLY" => O_RDONLY.into(),
        "O_WRONLY" => O_WRONLY.into(),
        "O_RDWR" => O_RDWR.into(),
        "O_NONBLOCK" => O_NONBLOCK.into(),
        "F_GETFL" => F_GETFL.into(),
        "F_SETFL" => F_SETFL.into(),
        "SHUT_RD" => SHUT_RD.into(),
        "SHUT_WR" => SHUT_WR.into(),
        "SHUT_RDWR" => SHUT_RDWR.into(),
        _ => {
            return tcp_state_symbol(name)
                .map(i64::from)
                .or_else(|| errno(name).map(|e| e.code().into()))
        }
    };
    Some(v)
}

/// An errno name as scripts write it (`EAGAIN` and `EWOULDBLOCK` are the same number).
pub fn errno(name: &str) -> Option<Errno> {
    Errno::from_name(name)
}

/// `TCPI_ESTABLISHED` and friends (the names packetdrill's code snippets use), with FreeBSD's
/// `TCPS_*` numbering.
pub fn tcp_state_symbol(name: &str) -> Option<u8> {
    let s = name
        .strip_prefix("TCPI_")
        .or_else(|| name.strip_prefix("TCPS_"))?;
    tcp_state_from_name(s)
}

/// A state as `sockstat -s` and `tcpdrop -s` spell it (`SYN_RCVD`, `TIME_WAIT`, ...), also
/// accepting the `tcp_fsm.h` spellings (`SYN_RECEIVED`).
pub fn tcp_state_from_name(s: &str) -> Option<u8> {
    Some(match s {
        "CLOSED" => TCPS_CLOSED,
        "LISTEN" => TCPS_LISTEN,
        "SYN_SENT" => TCPS_SYN_SENT,
        "SYN_RECEIVED" | "SYN_RCVD" => TCPS_SYN_RECEIVED,
        "ESTABLISHED" => TCPS_ESTABLISHED,
        "CLOSE_WAIT" => TCPS_CLOSE_WAIT,
        "FIN_WAIT_1" => TCPS_FIN_WAIT_1,
        "CLOSING" => TCPS_CLOSING,
        "LAST_ACK" => TCPS_LAST_ACK,
        "FIN_WAIT_2" => TCPS_FIN_WAIT_2,
        "TIME_WAIT" => TCPS_TIME_WAIT,
        _ => return None,
    })
}

/// The name `sockstat -s` prints for a state (FreeBSD's `tcpstates[]`).
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        TCPS_CLOSED => "CLOSED",
        TCPS_LISTEN => "LISTEN",
        TCPS_SYN_SENT => "SYN_SENT",
        TCPS_SYN_RECEIVED => "SYN_RCVD",
        TCPS_ESTABLISHED => "ESTABLISHED",
        TCPS_CLOSE_WAIT => "CLOSE_WAIT",
        TCPS_FIN_WAIT_1 => "FIN_WAIT_1",
        TCPS_CLOSING => "CLOSING",
        TCPS_LAST_ACK => "LAST_ACK",
        TCPS_FIN_WAIT_2 => "FIN_WAIT_2",
        TCPS_TIME_WAIT => "TIME_WAIT",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_resolve_with_freebsd_numbers() {
        assert_eq!(symbol("SOL_SOCKET"), Some(0xffff));
        assert_eq!(symbol("SO_RCVBUF"), Some(0x1002));
        assert_eq!(symbol("TCP_KEEPINIT"), Some(128));
        assert_eq!(symbol("O_NONBLOCK"), Some(4));
        assert_eq!(symbol("TCPI_TIME_WAIT"), Some(10));
        assert_eq!(symbol("ECONNRESET"), Some(54));
        assert_eq!(symbol("EWOULDBLOCK"), Some(35));
        assert_eq!(symbol("NOT_A_SYMBOL"), None);
        assert_eq!(tcp_state_from_name("SYN_RCVD"), Some(TCPS_SYN_RECEIVED));
        assert_eq!(tcp_state_name(TCPS_FIN_WAIT_2), "FIN_WAIT_2");
    }
}
