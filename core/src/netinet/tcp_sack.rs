//! SACK (filled in).
