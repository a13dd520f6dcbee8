//! Wire formats: IPv4 and TCP headers, options and checksums.
