//! A read-only view of an mbuf chain: the `(m_data, m_len)` of each mbuf, in order.
//!
//! The shim walks `m->m_next` and hands over the segments; nothing here follows kernel
//! pointers. Headers may be split anywhere (a short first mbuf, an IP header across two), so
//! the module peeks at header bytes across segments and gathers the whole packet into its own
//! buffer only when the packet is its own. Tests build chains from `Vec<Vec<u8>>`.

/// An mbuf chain as a list of segments.
#[derive(Clone, Copy, Debug)]
pub struct Chain<'a> {
    segs: &'a [&'a [u8]],
}

impl<'a> Chain<'a> {
    pub const fn new(segs: &'a [&'a [u8]]) -> Self {
        Chain { segs }
    }

    /// `m_pkthdr.len`: the bytes of every segment.
    pub fn len(&self) -> usize {
        self.segs.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `m_copydata(m, off, len, dst)` with `len = dst.len()`: `false` (and `dst` partly
    /// written) when the chain ends first.
    pub fn copy_out(&self, mut off: usize, dst: &mut [u8]) -> bool {
        let mut done = 0;
        for s in self.segs {
            if done == dst.len() {
                break;
            }
            if off >= s.len() {
                off -= s.len();
                continue;
            }
            let n = (s.len() - off).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&s[off..off + n]);
            done += n;
            off = 0;
        }
        done == dst.len()
    }

    /// The whole chain as one slice: the first segment itself when it holds everything (the
    /// common case of a packet in one cluster), else gathered into `buf`. `None` when `buf`
    /// is too small.
    pub fn contiguous<'b>(&self, buf: &'b mut [u8]) -> Option<&'b [u8]>
    where
        'a: 'b,
    {
        let total = self.len();
        if let Some(first) = self.segs.iter().find(|s| !s.is_empty()) {
            if first.len() == total {
                return Some(first);
            }
        }
        let out = buf.get_mut(..total)?;
        self.copy_out(0, out).then_some(&*out)
    }
}
