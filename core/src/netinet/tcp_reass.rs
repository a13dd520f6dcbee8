//! Reassembly bookkeeping (the role of FreeBSD's `tcp_reass.c`).
//!
//! Only the sequence ranges are tracked here. The bytes themselves are written by the caller
//! into the receive buffer beyond its in-order data, so out-of-order data costs no second copy
//! and the queue needs no mbufs.
//!
//! deviation: FreeBSD limits the queue by segment count (`net.inet.tcp.reass.maxqueuelen`);
//! this queue merges adjacent segments and limits the number of disjoint ranges instead, which
//! bounds the same thing (bookkeeping per gap) without penalising in-order bursts.

use heapless::Vec;

use crate::netinet::tcp_seq::{seq_geq, seq_gt, seq_leq, seq_lt, seq_max, seq_min, Seq};

/// Disjoint ranges the queue can hold.
pub const MAX_REASS_SEGS: usize = 32;

/// A new disjoint range did not fit (FreeBSD counts this as `tcps_rcvreassfull` and drops the
/// segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReassFull;

/// Out-of-order data held above `rcv_nxt`: sorted, disjoint, non-adjacent `[start, end)`
/// ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReassQueue {
    segs: Vec<(Seq, Seq), MAX_REASS_SEGS>,
    /// The most recent successful insert, to find the block that now contains it.
    last: Option<(Seq, Seq)>,
}

impl ReassQueue {
    pub const fn new() -> Self {
        ReassQueue {
            segs: Vec::new(),
            last: None,
        }
    }

    /// Record `[start, end)` as held. Ranges it overlaps or touches are merged with it, so a
    /// segment that bridges or extends existing data always fits; only a new disjoint range
    /// can be refused. An empty range is accepted and ignored.
    pub fn insert(&mut self, start: Seq, end: Seq) -> Result<(), ReassFull> {
        if !seq_lt(start, end) {
            return Ok(());
        }
        // First range that is not entirely (and non-adjacently) below the new one.
        let first = self
            .segs
            .iter()
            .position(|&(_, e)| seq_geq(e, start))
            .unwrap_or(self.segs.len());
        // Ranges from `first` that overlap or touch the growing union.
        let (mut lo, mut hi) = (start, end);
        let mut past = first;
        while let Some(&(s, e)) = self.segs.get(past) {
            if seq_gt(s, hi) {
                break;
            }
            lo = seq_min(lo, s);
            hi = seq_max(hi, e);
            past += 1;
        }
        if past == first {
            self.segs.insert(first, (lo, hi)).map_err(|_| ReassFull)?;
        } else {
            if let Some(slot) = self.segs.get_mut(first) {
                *slot = (lo, hi);
            }
            for _ in first + 1..past {
                if first + 1 < self.segs.len() {
                    self.segs.remove(first + 1);
                }
            }
        }
        self.last = Some((start, end));
        Ok(())
    }

    /// In-order data has brought `rcv_nxt` here: absorb every range that now starts at or
    /// below it and return how far contiguous data extends (never less than `rcv_nxt`).
    pub fn advance(&mut self, rcv_nxt: Seq) -> Seq {
        let mut nxt = rcv_nxt;
        while let Some(&(s, e)) = self.segs.first() {
            if !seq_leq(s, nxt) {
                break;
            }
            nxt = seq_max(nxt, e);
            self.segs.remove(0);
        }
        nxt
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Number of disjoint ranges held.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// The ranges, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = (Seq, Seq)> + '_ {
        self.segs.iter().copied()
    }

    /// End of the highest range held, i.e. how far into the window the caller has buffered.
    pub fn highest(&self) -> Option<Seq> {
        self.segs.last().map(|&(_, e)| e)
    }

    /// Drop everything (connection reset or close).
    pub fn clear(&mut self) {
        self.segs.clear();
        self.last = None;
    }

    /// The held range containing the most recent insert, for [`SackReport::update`]: as
    /// FreeBSD's `tcp_reass` widens the reported segment to its merged neighbours, the first
    /// SACK block then describes the whole contiguous run. `None` once that data has been
    /// delivered in order.
    ///
    /// [`SackReport::update`]: crate::netinet::tcp_sack::SackReport::update
    pub fn last_inserted(&self) -> Option<(Seq, Seq)> {
        let (s, _) = self.last?;
        self.segs
            .iter()
            .copied()
            .find(|&(a, b)| seq_leq(a, s) && seq_lt(s, b))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec as StdVec;

    fn ranges(q: &ReassQueue) -> StdVec<(u32, u32)> {
        q.iter().map(|(s, e)| (s.0, e.0)).collect()
    }

    #[test]
    fn merges_and_advances() {
        let mut q = ReassQueue::new();
        q.insert(Seq(300), Seq(400)).unwrap();
        q.insert(Seq(100), Seq(200)).unwrap();
        q.insert(Seq(500), Seq(600)).unwrap();
        assert_eq!(ranges(&q), [(100, 200), (300, 400), (500, 600)]);
        assert_eq!(q.last_inserted(), Some((Seq(500), Seq(600))));
        // Touching on the left, overlapping on the right.
        q.insert(Seq(200), Seq(350)).unwrap();
        assert_eq!(ranges(&q), [(100, 400), (500, 600)]);
        assert_eq!(q.last_inserted(), Some((Seq(100), Seq(400))));
        // Covering several.
        q.insert(Seq(50), Seq(700)).unwrap();
        assert_eq!(ranges(&q), [(50, 700)]);
        // Duplicate inside.
        q.insert(Seq(60), Seq(70)).unwrap();
        assert_eq!(ranges(&q), [(50, 700)]);
        q.insert(Seq(800), Seq(900)).unwrap();
        assert_eq!(q.advance(Seq(40)), Seq(40));
        assert_eq!(q.advance(Seq(50)), Seq(700));
        assert_eq!(ranges(&q), [(800, 900)]);
        assert_eq!(q.last_inserted(), Some((Seq(800), Seq(900))));
        assert_eq!(q.advance(Seq(850)), Seq(900));
        assert!(q.is_empty());
        assert_eq!(q.last_inserted(), None);
        // Empty ranges are ignored.
        q.insert(Seq(5), Seq(5)).unwrap();
        q.insert(Seq(6), Seq(5)).unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_refuses_only_new_ranges() {
        let mut q = ReassQueue::new();
        for i in 0..MAX_REASS_SEGS as u32 {
            q.insert(Seq(i * 10 + 1000), Seq(i * 10 + 1005)).unwrap();
        }
        assert_eq!(q.len(), MAX_REASS_SEGS);
        assert_eq!(q.insert(Seq(10), Seq(20)), Err(ReassFull));
        assert_eq!(q.insert(Seq(5000), Seq(5001)), Err(ReassFull));
        // Data already held is accepted without needing room.
        q.insert(Seq(1002), Seq(1003)).unwrap();
        assert_eq!(q.len(), MAX_REASS_SEGS);
        // Extending and bridging still work when full.
        q.insert(Seq(1005), Seq(1007)).unwrap();
        q.insert(Seq(1007), Seq(1010)).unwrap();
        assert_eq!(q.len(), MAX_REASS_SEGS - 1);
        assert_eq!(q.highest(), Some(Seq(1315)));
    }

    #[test]
    fn wraps_around_zero() {
        let mut q = ReassQueue::new();
        let b = u32::MAX - 99;
        q.insert(Seq(b.wrapping_add(150)), Seq(b.wrapping_add(200)))
            .unwrap();
        q.insert(Seq(b.wrapping_add(50)), Seq(b.wrapping_add(100)))
            .unwrap();
        q.insert(Seq(b.wrapping_add(100)), Seq(b.wrapping_add(150)))
            .unwrap();
        assert_eq!(ranges(&q), [(b.wrapping_add(50), 100)]);
        assert_eq!(q.advance(Seq(b.wrapping_add(10))), Seq(b.wrapping_add(10)));
        assert_eq!(q.advance(Seq(b.wrapping_add(50))), Seq(100));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u32),
        Advance(u32),
    }

    const SPAN: u32 = 600;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u32..SPAN - 1, 1u32..40).prop_map(|(s, l)| Op::Insert(s, (s + l).min(SPAN))),
            1 => (0u32..80).prop_map(Op::Advance),
        ]
    }

    /// Maximal runs of set bits at or above `from`.
    fn runs(bits: &[bool], from: u32) -> StdVec<(u32, u32)> {
        let mut out = StdVec::new();
        let mut o = from as usize;
        while o < bits.len() {
            if bits[o] {
                let s = o;
                while o < bits.len() && bits[o] {
                    o += 1;
                }
                out.push((s as u32, o as u32));
            } else {
                o += 1;
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_bitmap_model(
            base in prop_oneof![any::<u32>(), Just(u32::MAX - 300), Just(u32::MAX)],
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut q = ReassQueue::new();
            let mut held = std::vec![false; SPAN as usize];
            let mut nxt = 0u32;
            let rel = |s: Seq| s.0.wrapping_sub(base);
            for op in ops {
                match op {
                    Op::Insert(s, e) => {
                        let before = ranges(&q);
                        let r = q.insert(Seq(base.wrapping_add(s)), Seq(base.wrapping_add(e)));
                        match r {
                            Ok(()) => {
                                for o in s..e {
                                    held[o as usize] = true;
                                }
                                let (a, b) = q.last_inserted().map(|(a, b)| (rel(a), rel(b)))
                                    .expect("just inserted");
                                prop_assert!(a <= s && e <= b);
                            }
                            Err(ReassFull) => {
                                prop_assert_eq!(q.len(), MAX_REASS_SEGS);
                                prop_assert_eq!(ranges(&q), before);
                                // Refused only if it would be a new disjoint range.
                                let touches = (s.saturating_sub(1)..(e + 1).min(SPAN))
                                    .any(|o| held[o as usize]);
                                prop_assert!(!touches);
                            }
                        }
                    }
                    Op::Advance(d) => {
                        let raw = (nxt + d).min(SPAN);
                        nxt = raw;
                        for o in 0..nxt {
                            held[o as usize] = false;
                        }
                        while nxt < SPAN && held[nxt as usize] {
                            held[nxt as usize] = false;
                            nxt += 1;
                        }
                        let got = q.advance(Seq(base.wrapping_add(raw)));
                        prop_assert_eq!(rel(got), nxt);
                    }
                }
                let model: StdVec<(u32, u32)> = runs(&held, 0);
                let got: StdVec<(u32, u32)> = q.iter().map(|(s, e)| (rel(s), rel(e))).collect();
                prop_assert_eq!(got, model);
                prop_assert!(q.len() <= MAX_REASS_SEGS);
            }
        }

        #[test]
        fn survives_garbage(
            ops in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<bool>()), 1..100),
        ) {
            let mut q = ReassQueue::new();
            for (a, b, adv) in ops {
                if adv {
                    let _ = q.advance(Seq(a));
                } else {
                    let _ = q.insert(Seq(a), Seq(b));
                }
                let _ = q.last_inserted();
                prop_assert!(q.len() <= MAX_REASS_SEGS);
            }
        }
    }
}
