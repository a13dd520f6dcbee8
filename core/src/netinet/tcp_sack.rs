//! Selective acknowledgements (RFC 2018, RFC 6675), after FreeBSD's `tcp_sack.c`.
//!
//! * [`SackReport`] is the receiver's list of blocks to advertise (`tp->sackblks`,
//!   `tcp_update_sack_list`, `tcp_clean_sackreport`).
//! * [`SackScoreboard`] is the sender's record of holes (`tp->snd_holes`, `tp->sackhint`,
//!   `tcp_sack_doack`, `tcp_sack_output`, `tcp_free_sackholes`).
//!
//! Both have fixed capacity. When the scoreboard is full it forgets SACK information rather
//! than growing: data it cannot describe is treated as not SACKed, which only costs a spurious
//! retransmission, never a lost one.

use heapless::Vec;

use crate::netinet::tcp_seq::{seq_geq, seq_gt, seq_leq, seq_lt, seq_max, seq_min, Seq};

/// Blocks the receiver remembers (FreeBSD `MAX_SACK_BLKS`). At most 4 fit in one option (3
/// beside timestamps); the rest are kept so older blocks can resurface as newer ones are
/// filled.
pub const MAX_SACK_BLKS: usize = 6;

/// A SACK block `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SackBlk {
    pub start: Seq,
    pub end: Seq,
}

/// The receiver's SACK blocks, most recently changed first (RFC 2018 §4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SackReport {
    blocks: Vec<SackBlk, MAX_SACK_BLKS>,
}

impl SackReport {
    pub const fn new() -> Self {
        SackReport { blocks: Vec::new() }
    }

    /// Data `[rcv_start, rcv_end)` arrived and `rcv_nxt` is the value after reassembly
    /// (`tcp_update_sack_list`). If the data is out of order its block, merged with every block
    /// it overlaps or touches, goes first; untouched blocks keep their order behind it, and
    /// blocks at or below `rcv_nxt` are dropped. When more than [`MAX_SACK_BLKS`] remain the
    /// oldest is forgotten.
    ///
    /// deviation: no D-SACK (RFC 2883) block is generated for duplicate data.
    pub fn update(&mut self, rcv_nxt: Seq, rcv_start: Seq, rcv_end: Seq) {
        if !seq_lt(rcv_start, rcv_end) {
            // FreeBSD asserts here; an empty segment carries nothing to report.
            self.clean(rcv_nxt);
            return;
        }
        let mut head = SackBlk {
            start: rcv_start,
            end: rcv_end,
        };
        let mut kept: Vec<SackBlk, MAX_SACK_BLKS> = Vec::new();
        for b in &self.blocks {
            if !seq_lt(b.start, b.end) || seq_leq(b.start, rcv_nxt) {
                continue;
            }
            if seq_leq(head.start, b.end) && seq_geq(head.end, b.start) {
                head.start = seq_min(head.start, b.start);
                head.end = seq_max(head.end, b.end);
            } else {
                // Cannot fail: kept never holds more than the blocks it is filled from.
                let _ = kept.push(*b);
            }
        }
        self.blocks.clear();
        if seq_gt(head.start, rcv_nxt) {
            if kept.is_full() {
                kept.pop();
            }
            let _ = self.blocks.push(head);
        }
        for b in kept {
            if self.blocks.push(b).is_err() {
                break;
            }
        }
    }

    /// `rcv_nxt` advanced: drop blocks it fully acknowledges and trim any it reaches into.
    pub fn clean(&mut self, rcv_nxt: Seq) {
        self.blocks
            .retain(|b| seq_lt(b.start, b.end) && seq_gt(b.end, rcv_nxt));
        for b in self.blocks.iter_mut() {
            if seq_lt(b.start, rcv_nxt) {
                b.start = rcv_nxt;
            }
        }
    }

    /// The blocks, in the order they should be sent.
    pub fn blocks(&self) -> &[SackBlk] {
        &self.blocks
    }

    /// Forget everything (`tcp_clean_sackreport`).
    pub fn clear(&mut self) {
        self.blocks.clear();
    }
}

/// Holes the sender tracks (FreeBSD's `net.inet.tcp.sack.maxholes` is 128 per connection;
/// 64 covers a 4-block-per-ACK peer for many RTTs of loss).
pub const MAX_SACK_HOLES: usize = 64;

/// A run of un-SACKed data `[start, end)`; `[start, rxmit)` has been retransmitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SackHole {
    pub start: Seq,
    pub end: Seq,
    pub rxmit: Seq,
}

/// The sender's SACK scoreboard.
///
/// Invariants: holes are non-empty, sorted, disjoint and lie in `[snd_una, highest_sack)`;
/// everything in that span outside the holes has been SACKed. If the hole table overflows,
/// SACK information is dropped (never invented), so holes may then cover SACKed data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SackScoreboard {
    holes: Vec<SackHole, MAX_SACK_HOLES>,
    /// `snd_una` as of the last ACK seen.
    una: Seq,
    /// Whether `una` has been learnt yet.
    una_valid: bool,
    /// `snd_fack`: end of the highest SACKed block, while above `una`.
    fack: Option<Seq>,
    /// `sackhint.sack_bytes_rexmit`: bytes retransmitted from the current holes.
    pub sack_bytes_rexmit: u32,
    /// `sackhint.last_sack_ack`: end of the highest valid block in the latest ACK.
    pub last_sack_ack: Seq,
    /// Times a hole could not be created for lack of room (`tcps_sack_sboverflow`).
    pub holes_overflowed: u32,
}

impl SackScoreboard {
    pub const fn new() -> Self {
        SackScoreboard {
            holes: Vec::new(),
            una: Seq(0),
            una_valid: false,
            fack: None,
            sack_bytes_rexmit: 0,
            last_sack_ack: Seq(0),
            holes_overflowed: 0,
        }
    }

    /// Process an acceptable ACK carrying `blocks` as they came in the option (host order)
    /// (`tcp_sack_doack`). Also applies the cumulative ACK, as [`cum_ack`](Self::cum_ack).
    ///
    /// A block is used only if it is non-empty, starts above both `th_ack` and the
    /// scoreboard's `snd_una`, and ends at or below `snd_max`; anything else is a stale or
    /// forged block and is ignored. Returns whether any data not SACKed before is now.
    pub fn do_ack(&mut self, th_ack: Seq, snd_max: Seq, blocks: &[(u32, u32)]) -> bool {
        self.cum_ack(th_ack);
        let mut changed = false;
        let mut highest: Option<Seq> = None;
        for &(s, e) in blocks {
            let (start, end) = (Seq(s), Seq(e));
            let valid = seq_lt(start, end)
                && seq_gt(start, th_ack)
                && seq_gt(start, self.una)
                && seq_leq(end, snd_max);
            if !valid {
                continue;
            }
            highest = Some(highest.map_or(end, |h| seq_max(h, end)));
            changed |= self.sack_block(start, end);
        }
        if let Some(h) = highest {
            self.last_sack_ack = h;
        }
        self.recount_rexmit();
        changed
    }

    /// Mark `[start, end)` SACKed. Blocks may come in any order: the result is the same, except
    /// when the table is full.
    fn sack_block(&mut self, start: Seq, end: Seq) -> bool {
        let fack = self.fack.unwrap_or(self.una);
        let mut changed = false;
        if seq_gt(end, fack) {
            if seq_gt(start, fack) {
                // Everything between the old highest SACK and this block is a new hole.
                let hole = SackHole {
                    start: fack,
                    end: start,
                    rxmit: fack,
                };
                if self.holes.push(hole).is_err() {
                    // Forget the block instead: its data just looks un-SACKed.
                    self.holes_overflowed = self.holes_overflowed.saturating_add(1);
                    return false;
                }
            }
            self.fack = Some(end);
            changed = true;
        }
        let hi = seq_min(end, fack);
        if seq_lt(start, hi) {
            changed |= self.fill(start, hi);
        }
        changed
    }

    /// Remove `[lo, hi)` from the holes, trimming or splitting those it overlaps.
    fn fill(&mut self, lo: Seq, hi: Seq) -> bool {
        let mut changed = false;
        let mut i = 0;
        while let Some(h) = self.holes.get(i).copied() {
            if seq_geq(lo, h.end) || seq_leq(hi, h.start) {
                i += 1;
                continue;
            }
            if seq_leq(lo, h.start) && seq_geq(hi, h.end) {
                self.holes.remove(i);
                changed = true;
                continue;
            }
            if seq_leq(lo, h.start) {
                self.set_hole(i, hi, h.end, seq_max(h.rxmit, hi));
            } else if seq_geq(hi, h.end) {
                self.set_hole(i, h.start, lo, seq_min(h.rxmit, lo));
            } else {
                let right = SackHole {
                    start: hi,
                    end: h.end,
                    rxmit: seq_max(h.rxmit, hi),
                };
                if self.holes.insert(i + 1, right).is_err() {
                    // Leave the hole whole; the SACKed middle is simply not recorded.
                    self.holes_overflowed = self.holes_overflowed.saturating_add(1);
                    i += 1;
                    continue;
                }
                self.set_hole(i, h.start, lo, seq_min(h.rxmit, lo));
                i += 1;
            }
            changed = true;
            i += 1;
        }
        changed
    }

    fn set_hole(&mut self, i: usize, start: Seq, end: Seq, rxmit: Seq) {
        if let Some(h) = self.holes.get_mut(i) {
            *h = SackHole { start, end, rxmit };
        }
    }

    fn recount_rexmit(&mut self) {
        self.sack_bytes_rexmit = self
            .holes
            .iter()
            .fold(0u32, |acc, h| acc.saturating_add(h.rxmit - h.start));
    }

    /// The next hole to retransmit from, as `(seq, len)` (`tcp_sack_output`).
    pub fn output(&self) -> Option<(Seq, u32)> {
        self.holes
            .iter()
            .find(|h| seq_lt(h.rxmit, h.end))
            .map(|h| (h.rxmit, h.end - h.rxmit))
    }

    /// `len` bytes from `seq` were retransmitted: advance the hole's `rxmit` past them.
    ///
    /// The stack sends from [`output`](Self::output)'s `seq`, so `seq` is normally the hole's
    /// `rxmit`; a later `seq` also counts the skipped bytes, which keeps pipe on the high side.
    pub fn mark_retransmitted(&mut self, seq: Seq, len: u32) {
        if let Some(h) = self
            .holes
            .iter_mut()
            .find(|h| seq_leq(h.start, seq) && seq_lt(seq, h.end))
        {
            let end = seq + len.min(h.end - seq);
            if seq_gt(end, h.rxmit) {
                h.rxmit = end;
            }
        }
        self.recount_rexmit();
    }

    /// Bytes SACKed above `snd_una` (`sackhint.sacked_bytes`), for
    /// `pipe = snd_max - snd_una - sacked_bytes + sack_bytes_rexmit`.
    pub fn sacked_bytes(&self) -> u32 {
        match self.fack {
            Some(f) => {
                let span = f - self.una;
                let holes = self
                    .holes
                    .iter()
                    .fold(0u32, |acc, h| acc.saturating_add(h.end - h.start));
                span.saturating_sub(holes)
            }
            None => 0,
        }
    }

    /// End of the highest SACKed block (`snd_fack`), if anything above `snd_una` is SACKed.
    pub fn highest_sack(&self) -> Option<Seq> {
        self.fack
    }

    /// The holes, lowest first.
    pub fn holes(&self) -> &[SackHole] {
        &self.holes
    }

    /// `snd_una` advanced to `th_ack`: drop what it covers. Call for every ACK that advances
    /// `snd_una` ([`do_ack`](Self::do_ack) does it itself).
    pub fn cum_ack(&mut self, th_ack: Seq) {
        if !self.una_valid {
            self.una = th_ack;
            self.una_valid = true;
        } else if seq_gt(th_ack, self.una) {
            self.una = th_ack;
        } else {
            return;
        }
        let una = self.una;
        match self.fack {
            Some(f) if seq_gt(f, una) => {
                self.holes.retain_mut(|h| {
                    if seq_lt(h.start, una) {
                        h.start = una;
                        h.rxmit = seq_max(h.rxmit, una);
                    }
                    seq_lt(h.start, h.end)
                });
            }
            _ => {
                self.fack = None;
                self.holes.clear();
            }
        }
        self.recount_rexmit();
    }

    /// Drop all SACK state (`tcp_free_sackholes`), e.g. after an RTO or when leaving recovery.
    /// The last `snd_una` seen is kept so stale blocks are still recognised.
    pub fn clear(&mut self) {
        self.holes.clear();
        self.fack = None;
        self.sack_bytes_rexmit = 0;
    }

    /// No holes and nothing SACKed above `snd_una`.
    pub fn is_empty(&self) -> bool {
        self.holes.is_empty() && self.fack.is_none()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;

    fn blk(s: u32, e: u32) -> SackBlk {
        SackBlk {
            start: Seq(s),
            end: Seq(e),
        }
    }

    #[test]
    fn report_orders_newest_first_and_merges() {
        let mut r = SackReport::new();
        r.update(Seq(100), Seq(200), Seq(300));
        r.update(Seq(100), Seq(400), Seq(500));
        r.update(Seq(100), Seq(600), Seq(700));
        assert_eq!(r.blocks(), &[blk(600, 700), blk(400, 500), blk(200, 300)]);
        // Filling between two blocks merges all three into the head.
        r.update(Seq(100), Seq(300), Seq(400));
        assert_eq!(r.blocks(), &[blk(200, 500), blk(600, 700)]);
        // Overlap on both sides.
        r.update(Seq(100), Seq(450), Seq(650));
        assert_eq!(r.blocks(), &[blk(200, 700)]);
    }

    #[test]
    fn report_drops_acknowledged_blocks() {
        let mut r = SackReport::new();
        r.update(Seq(100), Seq(200), Seq(300));
        r.update(Seq(100), Seq(400), Seq(500));
        // In-order data up to 300 (reassembly absorbed [200,300)): no head block.
        r.update(Seq(300), Seq(100), Seq(200));
        assert_eq!(r.blocks(), &[blk(400, 500)]);
        r.clean(Seq(450));
        assert_eq!(r.blocks(), &[blk(450, 500)]);
        r.clean(Seq(500));
        assert!(r.blocks().is_empty());
        r.update(Seq(0), Seq(10), Seq(10));
        assert!(r.blocks().is_empty());
    }

    #[test]
    fn report_keeps_at_most_six_and_forgets_oldest() {
        let mut r = SackReport::new();
        for i in 1..=8u32 {
            r.update(Seq(0), Seq(i * 100), Seq(i * 100 + 10));
        }
        assert_eq!(r.blocks().len(), MAX_SACK_BLKS);
        assert_eq!(r.blocks()[0], blk(800, 810));
        assert_eq!(r.blocks()[5], blk(300, 310));
    }

    #[test]
    fn report_wraps() {
        let mut r = SackReport::new();
        let n = u32::MAX - 50;
        r.update(Seq(n), Seq(n.wrapping_add(100)), Seq(n.wrapping_add(200)));
        r.update(Seq(n), Seq(n.wrapping_add(20)), Seq(n.wrapping_add(100)));
        assert_eq!(r.blocks(), &[blk(n.wrapping_add(20), n.wrapping_add(200))]);
        r.clean(Seq(n.wrapping_add(150)));
        assert_eq!(r.blocks(), &[blk(n.wrapping_add(150), n.wrapping_add(200))]);
    }

    #[test]
    fn scoreboard_basic_recovery() {
        let mut sb = SackScoreboard::new();
        // 10 segments of 100 bytes from 1000 in flight; 1000 and 1300 lost.
        assert!(sb.do_ack(Seq(1000), Seq(2000), &[(1100, 1300)]));
        assert_eq!(sb.holes().len(), 1);
        assert_eq!(sb.output(), Some((Seq(1000), 100)));
        assert!(sb.do_ack(Seq(1000), Seq(2000), &[(1400, 1600), (1100, 1300)]));
        assert_eq!(sb.holes().len(), 2);
        assert_eq!(sb.sacked_bytes(), 400);
        assert_eq!(sb.highest_sack(), Some(Seq(1600)));
        assert_eq!(sb.last_sack_ack, Seq(1600));
        // Same information again: nothing new.
        assert!(!sb.do_ack(Seq(1000), Seq(2000), &[(1400, 1600)]));
        // Retransmit the first hole.
        sb.mark_retransmitted(Seq(1000), 100);
        assert_eq!(sb.sack_bytes_rexmit, 100);
        assert_eq!(sb.output(), Some((Seq(1300), 100)));
        sb.mark_retransmitted(Seq(1300), 60);
        assert_eq!(sb.output(), Some((Seq(1360), 40)));
        assert_eq!(sb.sack_bytes_rexmit, 160);
        // Cumulative ACK for the first retransmission.
        assert!(!sb.do_ack(Seq(1300), Seq(2000), &[(1400, 1600)]));
        assert_eq!(sb.holes().len(), 1);
        assert_eq!(sb.sack_bytes_rexmit, 60);
        assert_eq!(sb.sacked_bytes(), 200);
        // Everything SACKed is now cumulatively ACKed.
        sb.cum_ack(Seq(1600));
        assert!(sb.is_empty());
        assert_eq!(sb.sacked_bytes(), 0);
        assert_eq!(sb.output(), None);
    }

    #[test]
    fn scoreboard_splits_and_trims_keep_rxmit() {
        let mut sb = SackScoreboard::new();
        sb.do_ack(Seq(0), Seq(1000), &[(900, 1000)]);
        assert_eq!(
            sb.holes(),
            &[SackHole {
                start: Seq(0),
                end: Seq(900),
                rxmit: Seq(0)
            }]
        );
        sb.mark_retransmitted(Seq(0), 500);
        sb.do_ack(Seq(0), Seq(1000), &[(300, 400)]);
        assert_eq!(
            sb.holes(),
            &[
                SackHole {
                    start: Seq(0),
                    end: Seq(300),
                    rxmit: Seq(300)
                },
                SackHole {
                    start: Seq(400),
                    end: Seq(900),
                    rxmit: Seq(500)
                },
            ]
        );
        assert_eq!(sb.sack_bytes_rexmit, 400);
        sb.do_ack(Seq(0), Seq(1000), &[(400, 450), (850, 900)]);
        assert_eq!(
            sb.holes()[1],
            SackHole {
                start: Seq(450),
                end: Seq(850),
                rxmit: Seq(500)
            }
        );
        assert_eq!(sb.output(), Some((Seq(500), 350)));
    }

    #[test]
    fn scoreboard_rejects_invalid_blocks() {
        let mut sb = SackScoreboard::new();
        let junk = [
            (100, 100),       // empty
            (200, 150),       // reversed
            (50, 150),        // starts below th_ack
            (100, 150),       // starts at th_ack
            (900, 1001),      // beyond snd_max
            (0x8000_0000, 5), // nonsense
        ];
        assert!(!sb.do_ack(Seq(100), Seq(1000), &junk));
        assert!(sb.is_empty());
        assert_eq!(sb.output(), None);
    }

    #[test]
    fn scoreboard_overflow_is_counted_and_conservative() {
        let mut sb = SackScoreboard::new();
        let mut blocks = std::vec::Vec::new();
        for i in 0..(MAX_SACK_HOLES as u32 + 10) {
            blocks.push((10 * i + 5, 10 * i + 10));
        }
        for b in &blocks {
            sb.do_ack(Seq(0), Seq(100_000), &[*b]);
        }
        assert_eq!(sb.holes().len(), MAX_SACK_HOLES);
        assert_eq!(sb.holes_overflowed, 10);
        assert_eq!(sb.highest_sack(), Some(Seq(10 * MAX_SACK_HOLES as u32)));
        assert_eq!(sb.sacked_bytes(), 5 * MAX_SACK_HOLES as u32);
        // Splitting a hole when full fails too, leaving the hole intact.
        sb.do_ack(Seq(0), Seq(100_000), &[(1, 2)]);
        assert_eq!(sb.holes_overflowed, 11);
        assert_eq!(sb.holes()[0].end, Seq(5));
        // Filling a hole entirely still works.
        assert!(sb.do_ack(Seq(0), Seq(100_000), &[(1, 5)]));
        assert_eq!(sb.holes().len(), MAX_SACK_HOLES);
        assert_eq!(sb.holes()[0].end, Seq(1));
    }

    #[test]
    fn scoreboard_wraps() {
        let base = u32::MAX - 300;
        let mut sb = SackScoreboard::new();
        let b = |o: u32| base.wrapping_add(o);
        sb.do_ack(
            Seq(base),
            Seq(b(1000)),
            &[(b(200), b(400)), (b(600), b(700))],
        );
        assert_eq!(sb.holes().len(), 2);
        assert_eq!(sb.sacked_bytes(), 300);
        sb.cum_ack(Seq(b(500)));
        assert_eq!(sb.holes().len(), 1);
        assert_eq!(sb.holes()[0].start, Seq(b(500)));
        assert_eq!(sb.sacked_bytes(), 100);
    }

    /// Model: which offsets (relative to `base`) are SACKed, with the same validity rules.
    #[derive(Debug, Clone)]
    enum Step {
        Ack {
            adv: u32,
            blocks: std::vec::Vec<(u32, u32)>,
        },
        Rexmit(u32),
        Clear,
    }

    const SPAN: u32 = 1500;

    fn step() -> impl Strategy<Value = Step> {
        let block = (0u32..SPAN + 20, 1u32..300).prop_map(|(s, l)| (s, s + l));
        prop_oneof![
            8 => (prop_oneof![3 => Just(0u32), 1 => 0u32..200],
                  proptest::collection::vec(block, 0..5))
                .prop_map(|(adv, blocks)| Step::Ack { adv, blocks }),
            2 => (1u32..200).prop_map(Step::Rexmit),
            1 => Just(Step::Clear),
        ]
    }

    fn check(sb: &SackScoreboard, base: u32, una: u32, sacked: &[bool], exact: bool) {
        let holes = sb.holes();
        let fack = sb.highest_sack().map(|f| f.0.wrapping_sub(base));
        let mut prev_end = una;
        for h in holes {
            let (s, e, r) = (
                h.start.0.wrapping_sub(base),
                h.end.0.wrapping_sub(base),
                h.rxmit.0.wrapping_sub(base),
            );
            assert!(s >= prev_end && s < e, "{holes:?}");
            assert!(s <= r && r <= e);
            assert!(e <= fack.unwrap_or(una));
            prev_end = e;
        }
        let in_hole = |o: u32| {
            holes.iter().any(|h| {
                let (s, e) = (h.start.0.wrapping_sub(base), h.end.0.wrapping_sub(base));
                s <= o && o < e
            })
        };
        if let Some(f) = fack {
            assert!(f > una);
            for o in una..f {
                let s = sacked[o as usize];
                if exact {
                    assert_eq!(s, !in_hole(o), "offset {o} holes {holes:?}");
                } else if !in_hole(o) {
                    assert!(s, "offset {o} claimed SACKed");
                }
            }
        }
        let model: u32 = (una..SPAN).filter(|&o| sacked[o as usize]).count() as u32;
        if exact {
            assert_eq!(sb.sacked_bytes(), model);
            let model_fack = (una..SPAN)
                .rev()
                .find(|&o| sacked[o as usize])
                .map(|o| o + 1);
            assert_eq!(fack, model_fack);
        } else {
            assert!(sb.sacked_bytes() <= model);
        }
        let rex: u32 = holes.iter().map(|h| h.rxmit - h.start).sum();
        assert_eq!(sb.sack_bytes_rexmit, rex);
    }

    fn run(base: u32, steps: &[Step], exact: bool) {
        let mut sb = SackScoreboard::new();
        let mut sacked = std::vec![false; SPAN as usize];
        let mut una = 0u32;
        let snd_max = SPAN;
        for st in steps {
            match st {
                Step::Ack { adv, blocks } => {
                    una = (una + adv).min(snd_max);
                    for o in 0..una {
                        sacked[o as usize] = false;
                    }
                    let mut new_data = false;
                    let raw: std::vec::Vec<(u32, u32)> = blocks
                        .iter()
                        .map(|&(s, e)| (base.wrapping_add(s), base.wrapping_add(e)))
                        .collect();
                    for &(s, e) in blocks {
                        if s > una && s < e && e <= snd_max {
                            for o in s..e {
                                new_data |= !sacked[o as usize];
                                sacked[o as usize] = true;
                            }
                        }
                    }
                    let changed = sb.do_ack(
                        Seq(base.wrapping_add(una)),
                        Seq(base.wrapping_add(snd_max)),
                        &raw,
                    );
                    if exact && sb.holes_overflowed == 0 {
                        assert_eq!(changed, new_data);
                    }
                }
                Step::Rexmit(len) => {
                    if let Some((seq, l)) = sb.output() {
                        sb.mark_retransmitted(seq, (*len).min(l));
                    }
                }
                Step::Clear => {
                    sb.clear();
                    sacked.iter_mut().for_each(|s| *s = false);
                }
            }
            let exact = exact && sb.holes_overflowed == 0;
            check(&sb, base, una, &sacked, exact);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn scoreboard_matches_model(
            base in prop_oneof![any::<u32>(), Just(u32::MAX - 700), Just(0u32)],
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            run(base, &steps, true);
        }

        #[test]
        fn scoreboard_never_claims_unsacked_data(
            base in any::<u32>(),
            starts in proptest::collection::vec(1u32..SPAN - 2, 1..200),
        ) {
            // Many one-byte blocks with gaps overflow the table.
            let steps: std::vec::Vec<Step> = starts
                .iter()
                .map(|&s| Step::Ack { adv: 0, blocks: std::vec![(s, s + 1)] })
                .collect();
            run(base, &steps, false);
        }

        #[test]
        fn scoreboard_survives_garbage(
            ops in proptest::collection::vec(
                (any::<u32>(), any::<u32>(),
                 proptest::collection::vec((any::<u32>(), any::<u32>()), 0..6),
                 any::<u32>(), any::<u32>()),
                1..50),
        ) {
            let mut sb = SackScoreboard::new();
            for (ack, max, blocks, rx, len) in ops {
                sb.do_ack(Seq(ack), Seq(max), &blocks);
                sb.mark_retransmitted(Seq(rx), len);
                let _ = sb.output();
                let _ = sb.sacked_bytes();
                sb.cum_ack(Seq(rx));
                prop_assert!(sb.holes().len() <= MAX_SACK_HOLES);
            }
        }

        #[test]
        fn report_survives_garbage(
            ops in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 1..50),
        ) {
            let mut r = SackReport::new();
            for (n, s, e) in ops {
                r.update(Seq(n), Seq(s), Seq(e));
                prop_assert!(r.blocks().len() <= MAX_SACK_BLKS);
                r.clean(Seq(n));
            }
        }
    }
}
