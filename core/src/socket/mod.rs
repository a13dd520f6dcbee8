//! The socket layer: buffers and (later) the BSD socket calls over the protocol control blocks.

pub mod sockbuf;
pub mod socketvar;
