//! Sequence-number arithmetic modulo 2^32 (FreeBSD `tcp_seq.h`).

use core::ops::{Add, AddAssign, Sub, SubAssign};

/// A TCP sequence number. Comparisons are modular: use [`seq_lt`] and friends, never `<` on the
/// raw value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Seq(pub u32);

#[inline]
pub fn seq_lt(a: Seq, b: Seq) -> bool {
    (a.0.wrapping_sub(b.0) as i32) < 0
}
#[inline]
pub fn seq_leq(a: Seq, b: Seq) -> bool {
    (a.0.wrapping_sub(b.0) as i32) <= 0
}
#[inline]
pub fn seq_gt(a: Seq, b: Seq) -> bool {
    (a.0.wrapping_sub(b.0) as i32) > 0
}
#[inline]
pub fn seq_geq(a: Seq, b: Seq) -> bool {
    (a.0.wrapping_sub(b.0) as i32) >= 0
}
#[inline]
pub fn seq_min(a: Seq, b: Seq) -> Seq {
    if seq_lt(a, b) {
        a
    } else {
        b
    }
}
#[inline]
pub fn seq_max(a: Seq, b: Seq) -> Seq {
    if seq_gt(a, b) {
        a
    } else {
        b
    }
}

/// Timestamp comparisons (FreeBSD `TSTMP_LT` / `TSTMP_GT` / `TSTMP_GEQ`), also modular.
#[inline]
pub fn tstmp_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
#[inline]
pub fn tstmp_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
#[inline]
pub fn tstmp_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl Seq {
    /// Signed distance `self - other`, valid while the two are within 2^31 of each other.
    #[inline]
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn add(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_add(rhs))
    }
}
impl AddAssign<u32> for Seq {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}
impl Sub<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn sub(self, rhs: u32) -> Seq {
        Seq(self.0.wrapping_sub(rhs))
    }
}
impl SubAssign<u32> for Seq {
    #[inline]
    fn sub_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_sub(rhs);
    }
}
/// Unsigned distance `self - rhs` for `rhs` not after `self`.
impl Sub<Seq> for Seq {
    type Output = u32;
    #[inline]
    fn sub(self, rhs: Seq) -> u32 {
        self.0.wrapping_sub(rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_wrap() {
        assert!(seq_lt(Seq(0xffff_fff0), Seq(5)));
        assert!(seq_gt(Seq(5), Seq(0xffff_fff0)));
        assert!(seq_leq(Seq(7), Seq(7)));
        assert!(seq_geq(Seq(7), Seq(7)));
        assert_eq!(Seq(3) - Seq(0xffff_fffe), 5);
        assert_eq!(seq_max(Seq(0xffff_fff0), Seq(5)), Seq(5));
    }
}
