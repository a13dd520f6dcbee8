//! Congestion control (filled in by the cc work).
