//! The SYN cache and SYN cookies (FreeBSD `tcp_syncache.c`): a passive open keeps only a
//! small entry until the handshake completes, and when the cache overflows the SYN-ACK's ISS
//! (a keyed cookie) carries what the entry would have held.

use core::net::Ipv4Addr;

use crate::netinet::tcp_seq::Seq;
use crate::netinet::tcp_subr::IsnSecret;
use crate::store::BoundedVec;
use crate::time::Instant;

/// Entries held at once. FreeBSD sizes its cache in buckets of 30; one fixed table suffices for
/// the core, and overflow falls back to cookies exactly as a full bucket does.
pub const SYNCACHE_SIZE: usize = 64;

/// `struct syncache`.
#[derive(Clone, Debug)]
pub struct SynCacheEntry {
    pub laddr: Ipv4Addr,
    pub lport: u16,
    pub faddr: Ipv4Addr,
    pub fport: u16,
    /// The listening socket (slot and generation) the connection will be queued on.
    pub listener: (u16, u16),
    pub irs: Seq,
    pub iss: Seq,
    /// The peer's TSval to echo, when timestamps were offered (`SCF_TIMESTAMP`).
    pub ts_reflect: Option<u32>,
    pub ts_offset: u32,
    pub peer_mss: u16,
    /// Peer's shift, and ours, when both sides scale (`SCF_WINSCALE`).
    pub wscale: Option<(u8, u8)>,
    pub sack: bool,
    pub ecn: bool,
    pub noopt: bool,
    /// The window we advertise in the SYN-ACK (`sc_wnd`).
    pub wnd: u32,
    pub rxmits: u32,
    pub rxttime: Instant,
    /// Insertion order, for evicting the oldest entry on overflow.
    pub age: u32,
    /// The SYN-ACK waits until the port's owner releases it (a replica group's primary waits
    /// until every backup holds the SYN: the SYN-ACK acknowledges it).
    ///
    /// deviation: FreeBSD answers a SYN at once; this is the HydraNet-FT gate.
    pub held: bool,
}

#[derive(Debug, Default)]
pub struct SynCache {
    pub entries: BoundedVec<SynCacheEntry, SYNCACHE_SIZE>,
    pub next_age: u32,
}

impl SynCache {
    pub fn find(&self, laddr: Ipv4Addr, lport: u16, faddr: Ipv4Addr, fport: u16) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.laddr == laddr && e.lport == lport && e.faddr == faddr && e.fport == fport
        })
    }
    pub fn remove(&mut self, i: usize) -> SynCacheEntry {
        self.entries.swap_remove(i)
    }
    /// Inserts, evicting the oldest entry when full. Returns whether an entry was evicted.
    pub fn insert(&mut self, mut e: SynCacheEntry) -> bool {
        e.age = self.next_age;
        self.next_age = self.next_age.wrapping_add(1);
        let mut evicted = false;
        if self.entries.is_full() {
            if let Some((i, _)) = self
                .entries
                .iter()
                .enumerate()
                .max_by_key(|(_, x)| e.age.wrapping_sub(x.age))
            {
                self.entries.swap_remove(i);
                evicted = true;
            }
        }
        let _ = self.entries.push(e);
        evicted
    }
    pub fn next_timeout(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.rxttime).min()
    }
    /// Drops every entry that belongs to `listener` (the listening socket closed).
    pub fn drop_listener(&mut self, listener: (u16, u16)) {
        self.entries.retain(|e| e.listener != listener);
    }
}

/// MSS values a cookie can carry (3 bits), as FreeBSD's `tcp_sc_msstab` does.
pub const COOKIE_MSS: [u16; 8] = [216, 536, 1200, 1360, 1400, 1440, 1452, 1460];
/// Cookie epochs last 16 s; a cookie is honoured in its epoch and the next.
pub const COOKIE_EPOCH_MS: u64 = 16_000;

/// What a valid cookie tells about the connection it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieInfo {
    pub mss: u16,
    pub peer_wscale: Option<u8>,
    pub sack: bool,
}

/// Cookie layout (the ISS of our SYN-ACK):
/// bits 31..9 MAC, bit 8 SACK, bit 7 epoch parity, bits 6..4 MSS index, bits 3..0 the peer's
/// window shift plus one (0: none). The MAC covers the 4-tuple, the peer's ISN, the epoch and
/// the low nine bits, so none of them can be altered.
#[allow(clippy::too_many_arguments)]
pub fn syncookie_generate(
    secret: &IsnSecret,
    now: Instant,
    laddr: Ipv4Addr,
    lport: u16,
    faddr: Ipv4Addr,
    fport: u16,
    irs: Seq,
    info: CookieInfo,
) -> Seq {
    let epoch = (now.total_millis() / COOKIE_EPOCH_MS) as u32;
    let mss_idx = COOKIE_MSS.iter().rposition(|&m| m <= info.mss).unwrap_or(0) as u32;
    let ws = info.peer_wscale.map_or(0, |w| w.min(14) as u32 + 1);
    let low = ((info.sack as u32) << 8) | ((epoch & 1) << 7) | (mss_idx << 4) | ws;
    let mac = secret.cookie_mac(laddr, lport, faddr, fport, irs.0, epoch ^ (low << 16));
    Seq((mac & 0xFFFF_FE00) | low)
}

/// Checks the cookie an ACK returns (`th_ack - 1`), for the epoch it names.
#[allow(clippy::too_many_arguments)]
pub fn syncookie_validate(
    secret: &IsnSecret,
    now: Instant,
    laddr: Ipv4Addr,
    lport: u16,
    faddr: Ipv4Addr,
    fport: u16,
    irs: Seq,
    cookie: Seq,
) -> Option<CookieInfo> {
    let low = cookie.0 & 0x1FF;
    let cur = (now.total_millis() / COOKIE_EPOCH_MS) as u32;
    let epoch = if (cur & 1) == ((low >> 7) & 1) {
        cur
    } else {
        cur.wrapping_sub(1)
    };
    let mac = secret.cookie_mac(laddr, lport, faddr, fport, irs.0, epoch ^ (low << 16));
    if (mac & 0xFFFF_FE00) != (cookie.0 & 0xFFFF_FE00) {
        return None;
    }
    let ws = low & 0xF;
    Some(CookieInfo {
        mss: COOKIE_MSS[((low >> 4) & 7) as usize],
        peer_wscale: if ws == 0 || ws > 15 {
            None
        } else {
            Some((ws - 1) as u8)
        },
        sack: low & 0x100 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip_and_forgery() {
        let s = IsnSecret::new([7; 16]);
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let b = Ipv4Addr::new(198, 51, 100, 1);
        let now = Instant::from_millis(100_000);
        let info = CookieInfo {
            mss: 1460,
            peer_wscale: Some(7),
            sack: true,
        };
        let c = syncookie_generate(&s, now, a, 80, b, 5000, Seq(1234), info);
        assert_eq!(
            syncookie_validate(&s, now, a, 80, b, 5000, Seq(1234), c),
            Some(info)
        );
        // Still valid in the next epoch, not two epochs on.
        let later = now + crate::time::Duration::from_millis(COOKIE_EPOCH_MS);
        assert!(syncookie_validate(&s, later, a, 80, b, 5000, Seq(1234), c).is_some());
        let much_later = now + crate::time::Duration::from_millis(3 * COOKIE_EPOCH_MS);
        assert!(syncookie_validate(&s, much_later, a, 80, b, 5000, Seq(1234), c).is_none());
        // Any other ISN, port or flipped bit fails.
        assert!(syncookie_validate(&s, now, a, 80, b, 5000, Seq(1235), c).is_none());
        assert!(syncookie_validate(&s, now, a, 81, b, 5000, Seq(1234), c).is_none());
        for bit in 0..32 {
            let forged = Seq(c.0 ^ (1 << bit));
            assert!(syncookie_validate(&s, now, a, 80, b, 5000, Seq(1234), forged).is_none());
        }
    }
}
