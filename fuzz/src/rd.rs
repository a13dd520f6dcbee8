//! A plain byte reader for the hand-written input formats of the newer targets: one tag byte
//! per operation, little-endian integers, length-prefixed blobs. Plain enough that seeds can
//! be written by hand or by `make-seeds.py`; every read past the end ends the input.

pub struct Rd<'a>(pub &'a [u8]);

impl<'a> Rd<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?))
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A `u16` length (reduced modulo `max + 1`), then that many bytes; a short input gives
    /// what is left rather than ending, so that a truncated seed still does something.
    pub fn blob(&mut self, max: usize) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?) % (max + 1);
        let n = n.min(self.0.len());
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}
