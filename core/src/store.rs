//! Bounded storage for the core's tables: inline without `alloc`, on the heap with it.
//!
//! Every table of the stack and of the FT layer has a fixed bound `N`. Without the `alloc`
//! feature the containers here are `heapless` ones, held inline, exactly as before: an embedded
//! user places the whole `Host` (about 1.7 MB with its groups' ack-channel buffers) in a static.
//! With `alloc` they keep only a pointer, a length and a capacity inline and grow on the heap up
//! to `N`, so a `Host`, a replica group or an ack channel stays a few KiB and can be built and
//! moved on a small stack (a FreeBSD kernel thread has 16 KiB).
//!
//! The behaviour is the same either way: a push beyond `N` fails and gives the item back. With
//! `alloc` the heap is asked fallibly (`try_reserve_exact`), so running out of memory looks like
//! a full table rather than an abort; growth doubles the capacity, never beyond `N`.

use core::fmt;
use core::ops::{Deref, DerefMut};

#[cfg(feature = "alloc")]
use alloc::{collections::VecDeque, vec::Vec};

/// The error of a bulk append that does not fit (the container is left unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full;

/// The capacity to grow to for `need` elements, doubling from `cap`, never beyond `n`.
#[cfg(feature = "alloc")]
fn grown(cap: usize, need: usize, n: usize) -> usize {
    need.max(cap.saturating_mul(2)).max(4).min(n)
}

/// A vector of at most `N` elements (`heapless::Vec` without `alloc`, a heap `Vec` with it).
pub struct BoundedVec<T, const N: usize> {
    #[cfg(feature = "alloc")]
    v: Vec<T>,
    #[cfg(not(feature = "alloc"))]
    v: heapless::Vec<T, N>,
}

impl<T, const N: usize> BoundedVec<T, N> {
    pub const fn new() -> Self {
        BoundedVec {
            #[cfg(feature = "alloc")]
            v: Vec::new(),
            #[cfg(not(feature = "alloc"))]
            v: heapless::Vec::new(),
        }
    }

    /// The bound `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    pub fn len(&self) -> usize {
        self.v.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.v.len() >= N
    }

    /// Room for `extra` more elements, within `N` and (with `alloc`) the heap's means.
    #[cfg(feature = "alloc")]
    fn reserve(&mut self, extra: usize) -> bool {
        let need = self.v.len().saturating_add(extra);
        if need > N {
            return false;
        }
        let cap = self.v.capacity();
        need <= cap
            || self
                .v
                .try_reserve_exact(grown(cap, need, N).saturating_sub(self.v.len()))
                .is_ok()
    }

    /// Appends `item`, or gives it back when `N` elements are there already.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        #[cfg(feature = "alloc")]
        {
            if !self.reserve(1) {
                return Err(item);
            }
            self.v.push(item);
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        self.v.push(item)
    }

    pub fn pop(&mut self) -> Option<T> {
        self.v.pop()
    }

    pub fn clear(&mut self) {
        self.v.clear();
    }

    pub fn truncate(&mut self, len: usize) {
        self.v.truncate(len);
    }

    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.v.retain(f);
    }

    pub fn retain_mut(&mut self, f: impl FnMut(&mut T) -> bool) {
        self.v.retain_mut(f);
    }

    /// Removes and returns element `i`, shifting the rest down. Panics if `i` is out of bounds.
    pub fn remove(&mut self, i: usize) -> T {
        self.v.remove(i)
    }

    /// Removes and returns element `i`, replacing it by the last one. Panics if `i` is out of
    /// bounds.
    pub fn swap_remove(&mut self, i: usize) -> T {
        self.v.swap_remove(i)
    }

    /// Inserts `item` at `i`, or gives it back when full. Panics if `i > len`.
    pub fn insert(&mut self, i: usize, item: T) -> Result<(), T> {
        #[cfg(feature = "alloc")]
        {
            assert!(i <= self.v.len(), "insertion index out of bounds");
            if !self.reserve(1) {
                return Err(item);
            }
            self.v.insert(i, item);
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        self.v.insert(i, item)
    }

    /// Appends a copy of every element of `s`, or nothing when they do not all fit.
    pub fn extend_from_slice(&mut self, s: &[T]) -> Result<(), Full>
    where
        T: Clone,
    {
        #[cfg(feature = "alloc")]
        {
            if !self.reserve(s.len()) {
                return Err(Full);
            }
            self.v.extend_from_slice(s);
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        self.v.extend_from_slice(s).map_err(|_| Full)
    }
}

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v
    }
}

impl<T, const N: usize> DerefMut for BoundedVec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v
    }
}

impl<T: Clone, const N: usize> Clone for BoundedVec<T, N> {
    fn clone(&self) -> Self {
        BoundedVec { v: self.v.clone() }
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for BoundedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<T: Eq, const N: usize> Eq for BoundedVec<T, N> {}

impl<T, const N: usize> IntoIterator for BoundedVec<T, N> {
    type Item = T;
    #[cfg(feature = "alloc")]
    type IntoIter = alloc::vec::IntoIter<T>;
    #[cfg(not(feature = "alloc"))]
    type IntoIter = heapless::vec::IntoIter<T, N, usize>;
    fn into_iter(self) -> Self::IntoIter {
        self.v.into_iter()
    }
}

impl<'s, T, const N: usize> IntoIterator for &'s BoundedVec<T, N> {
    type Item = &'s T;
    type IntoIter = core::slice::Iter<'s, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'s, T, const N: usize> IntoIterator for &'s mut BoundedVec<T, N> {
    type Item = &'s mut T;
    type IntoIter = core::slice::IterMut<'s, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// A double-ended queue of at most `N` elements (`heapless::Deque` without `alloc`, a heap
/// `VecDeque` with it).
pub struct BoundedDeque<T, const N: usize> {
    #[cfg(feature = "alloc")]
    d: VecDeque<T>,
    #[cfg(not(feature = "alloc"))]
    d: heapless::Deque<T, N>,
}

/// The iterators of [`BoundedDeque`].
#[cfg(feature = "alloc")]
pub type DequeIter<'s, T> = alloc::collections::vec_deque::Iter<'s, T>;
#[cfg(feature = "alloc")]
pub type DequeIterMut<'s, T> = alloc::collections::vec_deque::IterMut<'s, T>;
#[cfg(not(feature = "alloc"))]
pub type DequeIter<'s, T> = heapless::deque::Iter<'s, T>;
#[cfg(not(feature = "alloc"))]
pub type DequeIterMut<'s, T> = heapless::deque::IterMut<'s, T>;

impl<T, const N: usize> BoundedDeque<T, N> {
    pub const fn new() -> Self {
        BoundedDeque {
            #[cfg(feature = "alloc")]
            d: VecDeque::new(),
            #[cfg(not(feature = "alloc"))]
            d: heapless::Deque::new(),
        }
    }

    /// The bound `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    pub fn len(&self) -> usize {
        self.d.len()
    }

    pub fn is_empty(&self) -> bool {
        self.d.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.d.len() >= N
    }

    #[cfg(feature = "alloc")]
    fn reserve_one(&mut self) -> bool {
        let need = self.d.len().saturating_add(1);
        if need > N {
            return false;
        }
        let cap = self.d.capacity();
        need <= cap
            || self
                .d
                .try_reserve_exact(grown(cap, need, N).saturating_sub(self.d.len()))
                .is_ok()
    }

    /// Appends `item` at the back, or gives it back when full.
    pub fn push_back(&mut self, item: T) -> Result<(), T> {
        #[cfg(feature = "alloc")]
        {
            if !self.reserve_one() {
                return Err(item);
            }
            self.d.push_back(item);
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        self.d.push_back(item)
    }

    /// Prepends `item` at the front, or gives it back when full.
    pub fn push_front(&mut self, item: T) -> Result<(), T> {
        #[cfg(feature = "alloc")]
        {
            if !self.reserve_one() {
                return Err(item);
            }
            self.d.push_front(item);
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        self.d.push_front(item)
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.d.pop_front()
    }

    pub fn pop_back(&mut self) -> Option<T> {
        self.d.pop_back()
    }

    pub fn front(&self) -> Option<&T> {
        self.d.front()
    }

    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.d.front_mut()
    }

    pub fn back(&self) -> Option<&T> {
        self.d.back()
    }

    pub fn back_mut(&mut self) -> Option<&mut T> {
        self.d.back_mut()
    }

    /// Element `i`, counting from the front.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.d.get(i)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.d.get_mut(i)
    }

    pub fn clear(&mut self) {
        self.d.clear();
    }

    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.d.retain(f);
    }

    /// Front to back.
    pub fn iter(&self) -> DequeIter<'_, T> {
        self.d.iter()
    }

    pub fn iter_mut(&mut self) -> DequeIterMut<'_, T> {
        self.d.iter_mut()
    }
}

impl<T, const N: usize> Default for BoundedDeque<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone, const N: usize> Clone for BoundedDeque<T, N> {
    fn clone(&self) -> Self {
        BoundedDeque { d: self.d.clone() }
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedDeque<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'s, T, const N: usize> IntoIterator for &'s BoundedDeque<T, N> {
    type Item = &'s T;
    type IntoIter = DequeIter<'s, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'s, T, const N: usize> IntoIterator for &'s mut BoundedDeque<T, N> {
    type Item = &'s mut T;
    type IntoIter = DequeIterMut<'s, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

/// Exactly `N` elements, all there from the start (a ring buffer's storage): an inline array
/// without `alloc`; with it, a heap block of `N` default values made at the first write, so an
/// unused buffer costs nothing.
pub struct FixedBuf<T: Copy + Default, const N: usize> {
    #[cfg(feature = "alloc")]
    b: Vec<T>,
    #[cfg(not(feature = "alloc"))]
    b: [T; N],
}

impl<T: Copy + Default, const N: usize> FixedBuf<T, N> {
    pub fn new() -> Self {
        FixedBuf {
            #[cfg(feature = "alloc")]
            b: Vec::new(),
            #[cfg(not(feature = "alloc"))]
            b: [T::default(); N],
        }
    }

    /// The elements: all `N`, or (with `alloc`) none before the first [`Self::get_mut`].
    pub fn as_slice(&self) -> &[T] {
        &self.b
    }

    /// All `N` elements, writable. With `alloc` the first call allocates them (default
    /// values); `None` when the heap cannot, and then nothing changed.
    pub fn get_mut(&mut self) -> Option<&mut [T]> {
        #[cfg(feature = "alloc")]
        if self.b.len() != N {
            self.b.try_reserve_exact(N).ok()?;
            self.b.resize(N, T::default());
        }
        Some(&mut self.b)
    }
}

impl<T: Copy + Default, const N: usize> Default for FixedBuf<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// With `alloc`: the most any one value the core builds by value (and moves through a return
/// or an argument) may take on the way to a running host: `Stack::new`, `Host::new`, a group and
/// its ack channel in `Host::ft_group`, a socket. Half of a FreeBSD kernel thread's 16 KiB
/// stack; the tests below check every such type against it, and the path sums too.
#[cfg(feature = "alloc")]
pub const MAX_BY_VALUE: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_is_bounded() {
        let mut v: BoundedVec<u32, 5> = BoundedVec::new();
        for i in 0..5 {
            assert_eq!(v.push(i), Ok(()));
        }
        assert!(v.is_full());
        assert_eq!(v.push(9), Err(9));
        assert_eq!(v.extend_from_slice(&[1]), Err(Full));
        assert_eq!(&v[..], &[0, 1, 2, 3, 4]);
        assert_eq!(v.swap_remove(0), 0);
        assert_eq!(v.remove(0), 4);
        assert_eq!(v.insert(1, 7), Ok(()));
        assert_eq!(&v[..], &[1, 7, 2, 3]);
        assert_eq!(v.extend_from_slice(&[5, 6]), Err(Full));
        assert_eq!(v.extend_from_slice(&[5]), Ok(()));
        assert_eq!(v.insert(0, 8), Err(8));
        v.retain(|&x| x != 7);
        assert_eq!(&v[..], &[1, 2, 3, 5]);
        assert_eq!(v.pop(), Some(5));
        v.clear();
        assert!(v.is_empty());
        #[cfg(feature = "alloc")]
        assert!(v.v.capacity() <= 5);
    }

    #[test]
    fn growth_never_passes_the_bound() {
        let mut v: BoundedVec<u8, 1000> = BoundedVec::new();
        for i in 0..1000 {
            assert!(v.push(i as u8).is_ok());
        }
        assert!(v.push(0).is_err());
        #[cfg(feature = "alloc")]
        assert_eq!(v.v.capacity(), 1000);
    }

    #[test]
    fn deque_is_bounded() {
        let mut d: BoundedDeque<u32, 3> = BoundedDeque::new();
        assert_eq!(d.push_back(1), Ok(()));
        assert_eq!(d.push_back(2), Ok(()));
        assert_eq!(d.push_front(0), Ok(()));
        assert_eq!(d.push_back(3), Err(3));
        assert_eq!(d.push_front(3), Err(3));
        assert!(d.is_full());
        assert_eq!(d.iter().copied().sum::<u32>(), 3);
        assert_eq!(d.front(), Some(&0));
        assert_eq!(d.back(), Some(&2));
        assert_eq!(d.get(1), Some(&1));
        assert_eq!(d.pop_front(), Some(0));
        assert_eq!(d.push_back(4), Ok(()));
        d.retain(|&x| x != 2);
        assert!(d.iter().copied().eq([1, 4]));
        assert_eq!(d.pop_back(), Some(4));
        d.clear();
        assert!(d.is_empty());
    }

    #[test]
    fn fixed_buf_has_all_elements_once_written() {
        let mut b: FixedBuf<u8, 100> = FixedBuf::new();
        #[cfg(feature = "alloc")]
        assert!(b.as_slice().is_empty());
        b.get_mut().unwrap()[99] = 1;
        assert_eq!(b.as_slice().len(), 100);
        assert_eq!(b.as_slice()[99], 1);
        assert_eq!(b.as_slice()[0], 0);
    }
}

#[cfg(all(test, feature = "alloc"))]
mod by_value {
    use core::mem::size_of;

    use super::MAX_BY_VALUE;
    use crate::ft::ackchan::AckChannel;
    use crate::ft::host::{Group, Host};
    use crate::socket::socketvar::Socket;
    use crate::stack::Stack;

    #[test]
    fn values_built_on_the_way_to_a_host_fit_a_kernel_stack() {
        let sizes = [
            ("Stack", size_of::<Stack<'static>>()),
            ("Host", size_of::<Host<'static>>()),
            ("Group", size_of::<Group>()),
            ("AckChannel", size_of::<AckChannel>()),
            ("Socket", size_of::<Socket<'static>>()),
        ];
        for (name, size) in sizes {
            assert!(size <= MAX_BY_VALUE, "{name} is {size} bytes by value");
        }
        // Host::new takes the Stack and returns the Host; ft_group builds the channel, then
        // the group that it moves into.
        let new = size_of::<Stack<'static>>() + size_of::<Host<'static>>();
        let group = size_of::<AckChannel>() + size_of::<Group>();
        assert!(new <= MAX_BY_VALUE, "Host::new moves {new} bytes");
        assert!(group <= MAX_BY_VALUE, "ft_group moves {group} bytes");
    }
}
