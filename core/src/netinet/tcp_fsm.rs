//! TCP connection states, numbered as FreeBSD's `tcp_fsm.h` numbers them.

/// The eleven states of RFC 793 in FreeBSD's order. The numeric value is what `TCP_INFO`'s
/// `tcpi_state` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum TcpState {
    Closed = 0,
    Listen = 1,
    SynSent = 2,
    SynReceived = 3,
    Established = 4,
    CloseWait = 5,
    FinWait1 = 6,
    Closing = 7,
    LastAck = 8,
    FinWait2 = 9,
    TimeWait = 10,
}

impl TcpState {
    /// Every state, indexed by its FreeBSD number.
    pub const ALL: [TcpState; 11] = [
        TcpState::Closed,
        TcpState::Listen,
        TcpState::SynSent,
        TcpState::SynReceived,
        TcpState::Established,
        TcpState::CloseWait,
        TcpState::FinWait1,
        TcpState::Closing,
        TcpState::LastAck,
        TcpState::FinWait2,
        TcpState::TimeWait,
    ];

    /// The state with FreeBSD's number `n` (`TCPS_*`, as `tcpi_state` reports it).
    pub fn from_number(n: u8) -> Option<TcpState> {
        Self::ALL.get(n as usize).copied()
    }

    /// `TCPS_HAVERCVDSYN`: a SYN has been received from the peer.
    pub fn have_rcvd_syn(self) -> bool {
        self >= TcpState::SynReceived
    }
    /// `TCPS_HAVEESTABLISHED`: the handshake completed at some point.
    pub fn have_established(self) -> bool {
        self >= TcpState::Established
    }
    /// `TCPS_HAVERCVDFIN`: the peer's FIN has been received.
    pub fn have_rcvd_fin(self) -> bool {
        matches!(
            self,
            TcpState::CloseWait | TcpState::Closing | TcpState::LastAck | TcpState::TimeWait
        )
    }
    /// States in which our FIN has been (or is being) sent.
    pub fn fin_sent(self) -> bool {
        matches!(
            self,
            TcpState::FinWait1
                | TcpState::Closing
                | TcpState::LastAck
                | TcpState::FinWait2
                | TcpState::TimeWait
        )
    }
    /// `tcp_outflags[]`: the flags `tcp_output` sends in each state.
    pub fn outflags(self) -> crate::wire::tcp::TcpFlags {
        use crate::wire::tcp::TcpFlags as F;
        match self {
            TcpState::Closed => F(F::RST.0 | F::ACK.0),
            TcpState::Listen => F(0),
            TcpState::SynSent => F::SYN,
            TcpState::SynReceived => F(F::SYN.0 | F::ACK.0),
            TcpState::Established | TcpState::CloseWait | TcpState::FinWait2 => F::ACK,
            TcpState::FinWait1 | TcpState::Closing | TcpState::LastAck => F(F::FIN.0 | F::ACK.0),
            TcpState::TimeWait => F::ACK,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RCVD",
            TcpState::Established => "ESTABLISHED",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }
}
