//! The FT layer's messages, several of which travel in one ack-channel DATA payload.
//!
//! Encoding (all integers big-endian), one message after another:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | kind: 1 PROGRESS, 2 DELIVER, 3 MISSING, 4 COMMIT |
//! | 4 | client IPv4 address |
//! | 2 | client port |
//! | 4 | PROGRESS: rcv_nxt; DELIVER, COMMIT: deliver-up-to sequence; MISSING: 0 |
//! | 4 | PROGRESS: right window edge; otherwise 0 |
//!
//! The service's address and port are the group's, so a connection is named by its client
//! end. Heartbeat payloads are `[rank, flags]` with flag bit 0 "I am the primary".

use core::net::Ipv4Addr;

use crate::netinet::tcp_seq::Seq;

pub const MSG_LEN: usize = 15;

/// The client end of a replicated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnKey {
    pub addr: Ipv4Addr,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FtMsg {
    /// Backup to primary: what it holds of the client's stream.
    Progress {
        conn: ConnKey,
        rcv_nxt: Seq,
        edge: Seq,
    },
    /// Primary to backups: client bytes below `upto` are held by the whole group and become
    /// readable, in the order these messages are sent, once committed.
    Deliver { conn: ConnKey, upto: Seq },
    /// Primary to backups: every backup holds the DELIVER of `conn` up to `upto`, so it and
    /// every DELIVER announced before it become readable.
    Commit { conn: ConnKey, upto: Seq },
    /// Backup to primary: the backup saw traffic for a connection it does not have (it missed
    /// the handshake), so it cannot be counted on for it.
    Missing { conn: ConnKey },
}

impl FtMsg {
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        if out.len() < MSG_LEN {
            return None;
        }
        let (kind, conn, a, b) = match *self {
            FtMsg::Progress {
                conn,
                rcv_nxt,
                edge,
            } => (1u8, conn, rcv_nxt.0, edge.0),
            FtMsg::Deliver { conn, upto } => (2, conn, upto.0, 0),
            FtMsg::Missing { conn } => (3, conn, 0, 0),
            FtMsg::Commit { conn, upto } => (4, conn, upto.0, 0),
        };
        out[0] = kind;
        out[1..5].copy_from_slice(&conn.addr.octets());
        out[5..7].copy_from_slice(&conn.port.to_be_bytes());
        out[7..11].copy_from_slice(&a.to_be_bytes());
        out[11..15].copy_from_slice(&b.to_be_bytes());
        Some(MSG_LEN)
    }

    /// Decodes every message of a payload; `None` for the first malformed one ends the walk.
    pub fn decode_all(payload: &[u8]) -> impl Iterator<Item = Option<FtMsg>> + '_ {
        payload.chunks(MSG_LEN).map(|c| {
            if c.len() != MSG_LEN {
                return None;
            }
            let conn = ConnKey {
                addr: Ipv4Addr::new(c[1], c[2], c[3], c[4]),
                port: u16::from_be_bytes([c[5], c[6]]),
            };
            let a = u32::from_be_bytes([c[7], c[8], c[9], c[10]]);
            let b = u32::from_be_bytes([c[11], c[12], c[13], c[14]]);
            match c[0] {
                1 => Some(FtMsg::Progress {
                    conn,
                    rcv_nxt: Seq(a),
                    edge: Seq(b),
                }),
                2 => Some(FtMsg::Deliver { conn, upto: Seq(a) }),
                3 => Some(FtMsg::Missing { conn }),
                4 => Some(FtMsg::Commit { conn, upto: Seq(a) }),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let conn = ConnKey {
            addr: Ipv4Addr::new(203, 0, 113, 9),
            port: 40000,
        };
        let msgs = [
            FtMsg::Progress {
                conn,
                rcv_nxt: Seq(7),
                edge: Seq(70000),
            },
            FtMsg::Deliver {
                conn,
                upto: Seq(0xffff_fff0),
            },
            FtMsg::Missing { conn },
            FtMsg::Commit {
                conn,
                upto: Seq(12345),
            },
        ];
        let mut buf = [0u8; 4 * MSG_LEN];
        let mut n = 0;
        for m in &msgs {
            n += m.encode(&mut buf[n..]).unwrap();
        }
        let back: heapless::Vec<FtMsg, 5> =
            FtMsg::decode_all(&buf[..n]).map(Option::unwrap).collect();
        assert_eq!(&back[..], &msgs[..]);
        assert_eq!(FtMsg::decode_all(&buf[..n - 1]).last(), Some(None));
        let mut bad = buf;
        bad[0] = 9;
        assert_eq!(FtMsg::decode_all(&bad[..MSG_LEN]).next(), Some(None));
    }
}
