//! A socket buffer: a byte ring in the spirit of FreeBSD's `struct sockbuf`.
//!
//! `hiwat` (`sb_hiwat`) is the logical limit the protocol advertises and enforces; the storage
//! length is the physical one, and `hiwat` never exceeds it. The queued bytes (`sb_ccc`) start at
//! `head` and may wrap around the end of the storage.
//!
//! For the receive side, bytes past the queued ones can be written ahead of time
//! ([`SockBuf::write_unqueued`]) and later made part of the queue
//! ([`SockBuf::enqueue_unqueued`]): TCP reassembly places out-of-order data directly where it
//! will end up, and only the bookkeeping moves when the hole fills.

use core::fmt;

use managed::ManagedSlice;

/// A ring buffer of bytes with a logical high-water mark. See the [module docs](self).
pub struct SockBuf<'a> {
    storage: ManagedSlice<'a, u8>,
    /// Physical index of the first queued byte.
    head: usize,
    /// Queued bytes (`sb_ccc`).
    len: usize,
    /// Logical limit (`sb_hiwat`), at most the storage length.
    hiwat: u32,
    /// One past the furthest byte written by [`write_unqueued`](SockBuf::write_unqueued),
    /// counted from `head`; 0 when no written byte lies beyond `len`. While it is non-zero the
    /// ring must not be re-based on empty, or that data would move.
    unqueued_end: usize,
}

impl<'a> SockBuf<'a> {
    /// A buffer over `storage`, empty, with `hiwat` equal to the storage length (saturated at
    /// `u32::MAX`).
    pub fn new(storage: impl Into<ManagedSlice<'a, u8>>) -> Self {
        let storage = storage.into();
        let hiwat = u32::try_from(storage.len()).unwrap_or(u32::MAX);
        SockBuf {
            storage,
            head: 0,
            len: 0,
            hiwat,
            unqueued_end: 0,
        }
    }

    /// Physical storage length in bytes.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// The logical limit (`sb_hiwat`).
    pub fn hiwat(&self) -> u32 {
        self.hiwat
    }

    /// Sets the logical limit, clamped to [`capacity`](Self::capacity). Lowering it below
    /// [`len`](Self::len) keeps the queued bytes; [`space`](Self::space) is then 0 until enough
    /// are dropped.
    pub fn set_hiwat(&mut self, n: u32) {
        let cap = u32::try_from(self.capacity()).unwrap_or(u32::MAX);
        // Bytes already placed beyond the queue (out-of-order data the window admitted) keep
        // their room: shrinking under them would make their later enqueue fall short.
        let floor = u32::try_from(self.unqueued_end).unwrap_or(u32::MAX);
        self.hiwat = n.max(floor).min(cap);
    }

    /// `sbreserve`: raises (or lowers) the limit to `n`. Storage the buffer owns grows to fit;
    /// caller-lent storage caps the limit at its length. Returns the limit in force.
    pub fn reserve(&mut self, n: u32) -> u32 {
        #[cfg(feature = "alloc")]
        if (n as usize) > self.capacity() {
            if let ManagedSlice::Owned(vec) = &mut self.storage {
                // Linearise the ring (queued and pending bytes) into the grown storage.
                let keep = self.len.max(self.unqueued_end);
                let mut grown = alloc::vec![0u8; n as usize];
                let (a, b) = {
                    let start = self.head;
                    let cap = vec.len();
                    let first = keep.min(cap - start.min(cap));
                    (&vec[start..start + first], &vec[..keep - first])
                };
                grown[..a.len()].copy_from_slice(a);
                grown[a.len()..a.len() + b.len()].copy_from_slice(b);
                *vec = grown;
                self.head = 0;
            }
        }
        self.set_hiwat(n);
        self.hiwat
    }

    /// Queued bytes (`sb_ccc`).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for more bytes below the limit (`sbspace()`).
    pub fn space(&self) -> usize {
        self.limit().saturating_sub(self.len)
    }

    /// Appends as much of `data` as [`space`](Self::space) allows (`sbappend`), returning the
    /// count. Overwrites any unqueued bytes in the range it fills.
    pub fn append(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        self.copy_in(self.len, &data[..n]);
        self.len += n;
        self.forget_covered_unqueued();
        n
    }

    /// Copies queued bytes starting `offset` bytes after the head into `out`, returning the
    /// count (0 if `offset` is at or past [`len`](Self::len)).
    pub fn peek(&self, offset: usize, out: &mut [u8]) -> usize {
        let (a, b) = self.slices(offset, out.len());
        out[..a.len()].copy_from_slice(a);
        out[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// The queued range `[offset, offset + len)`, clipped to [`len`](Self::len), as up to two
    /// contiguous slices (the second is non-empty only when the range wraps).
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        let n = len.min(self.len - offset);
        self.raw_slices(offset, n)
    }

    /// Copies out and drops up to `out.len()` queued bytes, returning the count.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.peek(0, out);
        self.drop_front(n);
        n
    }

    /// Drops `n` bytes (clipped to [`len`](Self::len)) from the front (`sbdrop`).
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = self.wrap(self.head + n);
        self.len -= n;
        self.unqueued_end = self.unqueued_end.saturating_sub(n);
        self.rebase_if_empty();
    }

    /// Drops everything, queued and unqueued.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.unqueued_end = 0;
    }

    /// Writes `data` beyond the queued bytes, at `offset` bytes after the head, without queueing
    /// it. `offset` must be at least [`len`](Self::len) (the queued bytes are never overwritten;
    /// an `offset` below it writes nothing). Only what fits below `min(hiwat, capacity)` is
    /// written; returns the count (0 if `offset` is at or past the limit).
    ///
    /// The bytes keep their position in the stream as the front is read or dropped: an offset
    /// `o` now is `o - k` after [`drop_front(k)`](Self::drop_front).
    pub fn write_unqueued(&mut self, offset: usize, data: &[u8]) -> usize {
        let limit = self.limit();
        if offset < self.len || offset >= limit {
            return 0;
        }
        let n = data.len().min(limit - offset);
        self.copy_in(offset, &data[..n]);
        if n > 0 {
            self.unqueued_end = self.unqueued_end.max(offset + n);
        }
        n
    }

    /// Queues the next `n` bytes after [`len`](Self::len), clipped to [`space`](Self::space):
    /// they must have been written with [`write_unqueued`](Self::write_unqueued) (any byte that
    /// was not holds stale data).
    pub fn enqueue_unqueued(&mut self, n: usize) {
        self.len += n.min(self.space());
        self.forget_covered_unqueued();
    }

    fn limit(&self) -> usize {
        usize::try_from(self.hiwat)
            .unwrap_or(usize::MAX)
            .min(self.capacity())
    }

    /// Maps `head + offset`, with `offset <= capacity`, to a physical index.
    fn wrap(&self, index: usize) -> usize {
        let cap = self.capacity();
        if index >= cap {
            index - cap
        } else {
            index
        }
    }

    /// The `n` bytes starting `offset` after the head, with `offset + n <= capacity`, as two
    /// slices.
    fn raw_slices(&self, offset: usize, n: usize) -> (&[u8], &[u8]) {
        let start = self.wrap(self.head + offset);
        let first = n.min(self.capacity() - start);
        (
            &self.storage[start..start + first],
            &self.storage[..n - first],
        )
    }

    /// Copies `data` to `offset` bytes after the head, with `offset + data.len() <= capacity`.
    fn copy_in(&mut self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = self.wrap(self.head + offset);
        let first = data.len().min(self.capacity() - start);
        self.storage[start..start + first].copy_from_slice(&data[..first]);
        self.storage[..data.len() - first].copy_from_slice(&data[first..]);
    }

    fn forget_covered_unqueued(&mut self) {
        if self.unqueued_end <= self.len {
            self.unqueued_end = 0;
        }
    }

    /// Moves the head back to 0 when nothing is queued or pending, so that the next fill is
    /// contiguous.
    fn rebase_if_empty(&mut self) {
        if self.len == 0 && self.unqueued_end == 0 {
            self.head = 0;
        }
    }
}

impl fmt::Debug for SockBuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockBuf")
            .field("len", &self.len)
            .field("hiwat", &self.hiwat)
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("unqueued_end", &self.unqueued_end)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SockBuf<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "SockBuf {{ len: {}, hiwat: {}, capacity: {}, head: {} }}",
            self.len,
            self.hiwat,
            self.capacity(),
            self.head
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    fn contents(sb: &SockBuf<'_>) -> Vec<u8> {
        let (a, b) = sb.slices(0, usize::MAX);
        [a, b].concat()
    }

    #[test]
    fn basics() {
        let mut mem = [0u8; 8];
        let mut sb = SockBuf::new(&mut mem[..]);
        assert_eq!(sb.capacity(), 8);
        assert_eq!(sb.hiwat(), 8);
        assert!(sb.is_empty());
        assert_eq!(sb.space(), 8);
        assert_eq!(sb.append(b"hello"), 5);
        assert_eq!(sb.len(), 5);
        assert_eq!(sb.space(), 3);
        assert_eq!(sb.append(b"world"), 3);
        assert_eq!(contents(&sb), b"hellowor");
        assert_eq!(sb.append(b"x"), 0);

        let mut out = [0u8; 3];
        assert_eq!(sb.peek(4, &mut out), 3);
        assert_eq!(&out, b"owo");
        assert_eq!(sb.peek(7, &mut out), 1);
        assert_eq!(out[0], b'r');
        assert_eq!(sb.peek(8, &mut out), 0);
        assert_eq!(sb.peek(100, &mut out), 0);

        assert_eq!(sb.read(&mut out), 3);
        assert_eq!(&out, b"hel");
        assert_eq!(sb.len(), 5);
        // Wraps: 3 bytes of room at the front of storage.
        assert_eq!(sb.append(b"123"), 3);
        let (a, b) = sb.slices(0, 100);
        assert_eq!(a, b"lowor");
        assert_eq!(b, b"123");
        let (a, b) = sb.slices(4, 2);
        assert_eq!((a, b), (&b"r"[..], &b"1"[..]));
        // A range that starts past the wrap is one slice.
        let (a, b) = sb.slices(6, 100);
        assert_eq!((a, b), (&b"23"[..], &b""[..]));
        let (a, b) = sb.slices(8, 1);
        assert!(a.is_empty() && b.is_empty());

        let mut all = [0u8; 16];
        assert_eq!(sb.peek(0, &mut all), 8);
        assert_eq!(&all[..8], b"lowor123");

        sb.drop_front(6);
        assert_eq!(contents(&sb), b"23");
        sb.drop_front(100);
        assert!(sb.is_empty());
        // Re-based on empty: the next fill is contiguous.
        assert_eq!(sb.append(b"abcdefgh"), 8);
        let (a, b) = sb.slices(0, 8);
        assert_eq!(a, b"abcdefgh");
        assert!(b.is_empty());

        sb.clear();
        assert!(sb.is_empty());
        assert_eq!(sb.space(), 8);
    }

    #[test]
    fn hiwat_is_the_logical_limit() {
        let mut mem = [0u8; 16];
        let mut sb = SockBuf::new(&mut mem[..]);
        sb.set_hiwat(100);
        assert_eq!(sb.hiwat(), 16);
        sb.set_hiwat(4);
        assert_eq!(sb.space(), 4);
        assert_eq!(sb.append(b"abcdef"), 4);
        assert_eq!(sb.write_unqueued(4, b"zz"), 0);
        sb.set_hiwat(2);
        assert_eq!(sb.len(), 4);
        assert_eq!(sb.space(), 0);
        assert_eq!(sb.append(b"x"), 0);
        sb.drop_front(3);
        assert_eq!(sb.space(), 1);
        assert_eq!(contents(&sb), b"d");
    }

    #[test]
    fn zero_capacity() {
        let mut sb = SockBuf::new(&mut [][..]);
        assert_eq!(sb.capacity(), 0);
        assert_eq!(sb.space(), 0);
        assert_eq!(sb.append(b"a"), 0);
        assert_eq!(sb.write_unqueued(0, b"a"), 0);
        sb.enqueue_unqueued(3);
        sb.drop_front(3);
        assert_eq!(sb.read(&mut [0u8; 4]), 0);
        assert_eq!(sb.slices(0, 4), (&[][..], &[][..]));
        assert!(sb.is_empty());
    }

    #[test]
    #[cfg(feature = "alloc")]
    fn owned_storage() {
        let mut sb = SockBuf::new(std::vec![0u8; 32]);
        assert_eq!(sb.append(&[7; 40]), 32);
        assert_eq!(sb.len(), 32);
    }

    #[test]
    fn out_of_order_then_fill_hole() {
        let mut mem = [0u8; 10];
        let mut sb = SockBuf::new(&mut mem[..]);
        assert_eq!(sb.append(b"abc"), 3);
        // Below len: refused.
        assert_eq!(sb.write_unqueued(2, b"X"), 0);
        // A segment two bytes past the queue, partly beyond the limit.
        assert_eq!(sb.write_unqueued(5, b"fghijkl"), 5);
        assert_eq!(sb.len(), 3);
        assert_eq!(sb.write_unqueued(10, b"z"), 0);
        // The reader consumes the queued bytes; the pending bytes must not move.
        let mut out = [0u8; 3];
        assert_eq!(sb.read(&mut out), 3);
        assert!(sb.is_empty());
        // Offsets are now relative to the new head: the hole is at 0..2.
        assert_eq!(sb.write_unqueued(0, b"de"), 2);
        sb.enqueue_unqueued(7);
        assert_eq!(contents(&sb), b"defghij");
        // The limit moved with the head: 3 more bytes fit, wrapping.
        assert_eq!(sb.space(), 3);
        assert_eq!(sb.append(b"klmn"), 3);
        assert_eq!(contents(&sb), b"defghijklm");
        let (a, b) = sb.slices(0, 10);
        assert_eq!(a.len(), 7);
        assert_eq!(b, b"klm");
        sb.enqueue_unqueued(5);
        assert_eq!(sb.len(), 10);
    }

    #[test]
    fn append_overwrites_pending_bytes() {
        let mut mem = [0u8; 8];
        let mut sb = SockBuf::new(&mut mem[..]);
        assert_eq!(sb.write_unqueued(2, b"CD"), 2);
        assert_eq!(sb.append(b"abc"), 3);
        sb.enqueue_unqueued(1);
        assert_eq!(contents(&sb), b"abcD");
        sb.drop_front(4);
        // Nothing pending any more: re-based.
        assert_eq!(sb.append(b"12345678"), 8);
        assert_eq!(sb.slices(0, 8).0, b"12345678");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<u8>),
        Read(usize),
        Peek(usize, usize),
        Slices(usize, usize),
        Drop(usize),
        WriteUnqueued(usize, Vec<u8>),
        Enqueue(usize),
        SetHiwat(u32),
        Clear,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..24);
        prop_oneof![
            4 => bytes().prop_map(Op::Append),
            3 => (0usize..24).prop_map(Op::Read),
            2 => (0usize..24, 0usize..24).prop_map(|(o, n)| Op::Peek(o, n)),
            2 => (0usize..24, 0usize..24).prop_map(|(o, n)| Op::Slices(o, n)),
            2 => (0usize..24).prop_map(Op::Drop),
            3 => (0usize..24, bytes()).prop_map(|(o, d)| Op::WriteUnqueued(o, d)),
            3 => (0usize..24).prop_map(Op::Enqueue),
            1 => (0u32..40).prop_map(Op::SetHiwat),
            1 => Just(Op::Clear),
        ]
    }

    /// The reference: queued bytes, then the bytes after them (`None` where never written).
    struct Model {
        queued: VecDeque<u8>,
        pending: VecDeque<Option<u8>>,
        capacity: usize,
        hiwat: usize,
    }

    impl Model {
        fn limit(&self) -> usize {
            self.hiwat.min(self.capacity)
        }
        fn space(&self) -> usize {
            self.limit().saturating_sub(self.queued.len())
        }
        /// Queue one byte, consuming the pending slot it lands on.
        fn push(&mut self, b: u8) {
            self.queued.push_back(b);
            self.pending.pop_front();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_vecdeque_model(capacity in 0usize..32,
                                  ops in proptest::collection::vec(arb_op(), 0..64)) {
            let mut mem = std::vec![0xeeu8; capacity];
            let mut sb = SockBuf::new(&mut mem[..]);
            let mut m = Model {
                queued: VecDeque::new(),
                pending: VecDeque::new(),
                capacity,
                hiwat: capacity,
            };
            for op in ops {
                match op {
                    Op::Append(data) => {
                        let n = data.len().min(m.space());
                        for &b in &data[..n] {
                            m.push(b);
                        }
                        prop_assert_eq!(sb.append(&data), n);
                    }
                    Op::Read(k) => {
                        let mut out = std::vec![0u8; k];
                        let n = k.min(m.queued.len());
                        let expect: Vec<u8> = m.queued.drain(..n).collect();
                        prop_assert_eq!(sb.read(&mut out), n);
                        prop_assert_eq!(&out[..n], &expect[..]);
                    }
                    Op::Peek(off, k) => {
                        let mut out = std::vec![0u8; k];
                        let expect: Vec<u8> = m.queued.iter().skip(off).take(k).copied().collect();
                        prop_assert_eq!(sb.peek(off, &mut out), expect.len());
                        prop_assert_eq!(&out[..expect.len()], &expect[..]);
                    }
                    Op::Slices(off, k) => {
                        let expect: Vec<u8> = m.queued.iter().skip(off).take(k).copied().collect();
                        let (a, b) = sb.slices(off, k);
                        prop_assert!(b.is_empty() || a.len() + b.len() == expect.len());
                        prop_assert_eq!([a, b].concat(), expect);
                    }
                    Op::Drop(k) => {
                        let n = k.min(m.queued.len());
                        m.queued.drain(..n);
                        sb.drop_front(k);
                    }
                    Op::WriteUnqueued(off, data) => {
                        let qlen = m.queued.len();
                        let n = if off < qlen || off >= m.limit() {
                            0
                        } else {
                            data.len().min(m.limit() - off)
                        };
                        if n > 0 {
                            let rel = off - qlen;
                            if m.pending.len() < rel + n {
                                m.pending.resize(rel + n, None);
                            }
                            for (i, &b) in data[..n].iter().enumerate() {
                                m.pending[rel + i] = Some(b);
                            }
                        }
                        prop_assert_eq!(sb.write_unqueued(off, &data), n);
                    }
                    Op::Enqueue(k) => {
                        // Only enqueue bytes that were written; anything else is stale by
                        // contract.
                        let written = m.pending.iter().take_while(|b| b.is_some()).count();
                        let n = k.min(written).min(m.space());
                        for _ in 0..n {
                            let b = m.pending[0].unwrap_or_default();
                            m.push(b);
                        }
                        sb.enqueue_unqueued(k.min(written));
                    }
                    Op::SetHiwat(h) => {
                        // The limit never drops under bytes already placed beyond the queue.
                        let floor = match m.pending.iter().rposition(|b| b.is_some()) {
                            Some(i) => m.queued.len() + i + 1,
                            None => 0,
                        };
                        m.hiwat = (h as usize).max(floor).min(capacity);
                        sb.set_hiwat(h);
                    }
                    Op::Clear => {
                        m.queued.clear();
                        m.pending.clear();
                        sb.clear();
                    }
                }
                prop_assert_eq!(sb.len(), m.queued.len());
                prop_assert_eq!(sb.space(), m.space());
                prop_assert_eq!(sb.hiwat() as usize, m.hiwat);
                prop_assert_eq!(contents(&sb), m.queued.iter().copied().collect::<Vec<u8>>());
                // Every pending byte is still where it was written.
                for (i, b) in m.pending.iter().enumerate() {
                    if let Some(b) = b {
                        let (x, y) = sb.raw_slices(sb.len() + i, 1);
                        prop_assert_eq!([x, y].concat(), [*b]);
                    }
                }
            }
        }
    }
}
