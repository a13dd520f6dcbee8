//! Logging macros that forward to `defmt` when the `defmt` feature is on and compile to nothing
//! otherwise, so the core carries no formatting machinery on small targets.
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! net_trace { ($($arg:tt)*) => { defmt::trace!($($arg)*) }; }
#[cfg(feature = "defmt")]
macro_rules! net_debug { ($($arg:tt)*) => { defmt::debug!($($arg)*) }; }

#[cfg(not(feature = "defmt"))]
macro_rules! net_trace {
    ($($arg:tt)*) => {{}};
}
#[cfg(not(feature = "defmt"))]
macro_rules! net_debug {
    ($($arg:tt)*) => {{}};
}
