//! The bulk source and sink that `hydranet tun-server` runs on either stack, written once
//! against a minimal socket interface ([`SockIo`]) so that both stacks carry exactly the same
//! application: the same bytes, offered in the same chunks, read into the same buffer.
//!
//! * download: the server sends `total` bytes of [`bulk_byte`] and closes;
//! * upload: the server reads and discards until the client's end of stream, then closes.

use hydranet_core::sim::service::bulk_byte;

/// What a client connecting to a port gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Download,
    Upload,
}

/// The outcome of one socket call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// Bytes moved (0 never: a stack answering 0 is reported as `WouldBlock`).
    Done(usize),
    /// Nothing now; try again after the stack has run.
    WouldBlock,
    /// The peer finished sending (reads only).
    Eof,
    /// The connection is gone (reset, timed out, wrong state).
    Failed,
}

/// One connection of either stack.
pub trait SockIo {
    fn send(&mut self, data: &[u8]) -> Io;
    fn recv(&mut self, buf: &mut [u8]) -> Io;
    /// Closes our side; the stack still delivers what was queued, then sends its FIN.
    fn close(&mut self);
}

/// [`bulk_byte`] lays bits 11..18 of `i * 2654435761` into a byte, and those depend only on
/// the low 19 bits of `i`: the stream repeats every 2^19 bytes.
const PERIOD: usize = 1 << 19;
/// The most one send offers (and one read takes).
pub const CHUNK: usize = 64 * 1024;

/// The download's bytes, precomputed: any `CHUNK` starting at any offset is one slice, so a
/// send costs the stack's copy and nothing else.
pub struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    pub fn new() -> Self {
        Pattern {
            bytes: (0..PERIOD + CHUNK).map(|i| bulk_byte(i % PERIOD)).collect(),
        }
    }

    /// The bytes at stream offset `off`, at most `len` (and at most [`CHUNK`]).
    pub fn chunk(&self, off: u64, len: u64) -> &[u8] {
        let start = (off % PERIOD as u64) as usize;
        let n = len.min(CHUNK as u64) as usize;
        &self.bytes[start..start + n]
    }
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

/// One connection's application state.
#[derive(Clone, Debug)]
pub struct Session {
    pub mode: Mode,
    /// Bytes sent (download) or received (upload).
    pub moved: u64,
    /// Bytes a download sends.
    pub total: u64,
    /// `Some(true)`: closed after a complete transfer; `Some(false)`: the connection failed.
    pub done: Option<bool>,
}

impl Session {
    pub fn new(mode: Mode, total: u64) -> Self {
        Session {
            mode,
            moved: 0,
            total,
            done: None,
        }
    }

    fn finish(&mut self, io: &mut impl SockIo, ok: bool) {
        io.close();
        self.done = Some(ok);
    }

    /// Moves what the socket takes or has now; true when anything happened.
    pub fn step(&mut self, io: &mut impl SockIo, pattern: &Pattern, buf: &mut [u8]) -> bool {
        let mut progress = false;
        while self.done.is_none() {
            let r = match self.mode {
                Mode::Download if self.moved == self.total => {
                    self.finish(io, true);
                    return true;
                }
                Mode::Download => io.send(pattern.chunk(self.moved, self.total - self.moved)),
                Mode::Upload => io.recv(buf),
            };
            match r {
                Io::Done(n) => {
                    self.moved += n as u64;
                    progress = true;
                }
                Io::WouldBlock => break,
                Io::Eof => {
                    // A download's client closing early is a failure; an upload's is its end.
                    let ok = self.mode == Mode::Upload;
                    self.finish(io, ok);
                    progress = true;
                }
                Io::Failed => {
                    self.finish(io, false);
                    progress = true;
                }
            }
        }
        progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes or yields `room` bytes per call until `left` run out.
    struct Fake {
        room: usize,
        left: usize,
        eof: bool,
        fail: bool,
        sent: Vec<u8>,
        closed: bool,
    }

    impl Fake {
        fn new(room: usize, left: usize) -> Self {
            Fake {
                room,
                left,
                eof: false,
                fail: false,
                sent: Vec::new(),
                closed: false,
            }
        }
    }

    impl SockIo for Fake {
        fn send(&mut self, data: &[u8]) -> Io {
            if self.fail {
                return Io::Failed;
            }
            let n = data.len().min(self.room).min(self.left);
            if n == 0 {
                return Io::WouldBlock;
            }
            self.left -= n;
            self.sent.extend_from_slice(&data[..n]);
            Io::Done(n)
        }
        fn recv(&mut self, buf: &mut [u8]) -> Io {
            let n = buf.len().min(self.room).min(self.left);
            match n {
                0 if self.eof => Io::Eof,
                0 => Io::WouldBlock,
                n => {
                    self.left -= n;
                    Io::Done(n)
                }
            }
        }
        fn close(&mut self) {
            self.closed = true;
        }
    }

    #[test]
    fn the_pattern_is_bulk_byte_at_every_offset() {
        let p = Pattern::new();
        for off in [
            0u64,
            1,
            1459,
            PERIOD as u64 - 3,
            5 * PERIOD as u64 + 77,
            600 << 20,
        ] {
            let c = p.chunk(off, 10);
            let want: Vec<u8> = (off..off + 10).map(|i| bulk_byte(i as usize)).collect();
            assert_eq!(c, &want[..], "offset {off}");
        }
        assert_eq!(p.chunk(0, u64::MAX).len(), CHUNK);
        assert_eq!(p.chunk(3, 2).len(), 2);
    }

    #[test]
    fn download_sends_everything_then_closes() {
        let p = Pattern::new();
        let mut s = Session::new(Mode::Download, 100_000);
        let mut io = Fake::new(30_000, 70_000);
        let mut buf = [0u8; 16];
        assert!(s.step(&mut io, &p, &mut buf));
        assert_eq!((s.moved, s.done, io.closed), (70_000, None, false));
        assert!(
            !s.step(&mut io, &p, &mut buf),
            "a full socket is no progress"
        );
        io.left = 1 << 20;
        assert!(s.step(&mut io, &p, &mut buf));
        assert_eq!((s.moved, s.done, io.closed), (100_000, Some(true), true));
        let want: Vec<u8> = (0..100_000).map(bulk_byte).collect();
        assert_eq!(io.sent, want);
        assert!(!s.step(&mut io, &p, &mut buf), "nothing after the end");
    }

    #[test]
    fn upload_reads_to_the_end_then_closes() {
        let p = Pattern::new();
        let mut s = Session::new(Mode::Upload, 0);
        let mut io = Fake::new(1000, 2500);
        let mut buf = [0u8; 700];
        assert!(s.step(&mut io, &p, &mut buf));
        assert_eq!((s.moved, s.done), (2500, None));
        io.eof = true;
        assert!(s.step(&mut io, &p, &mut buf));
        assert_eq!((s.moved, s.done, io.closed), (2500, Some(true), true));
    }

    #[test]
    fn failures_close_and_count_as_failed() {
        let p = Pattern::new();
        let mut s = Session::new(Mode::Download, 10);
        let mut io = Fake::new(10, 10);
        io.fail = true;
        assert!(s.step(&mut io, &p, &mut [0u8; 4]));
        assert_eq!((s.done, io.closed), (Some(false), true));
        assert_eq!(s.moved, 0);
    }
}
