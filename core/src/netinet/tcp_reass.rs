//! TCP reassembly queue (filled in).
