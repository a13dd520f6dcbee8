//! The one piece of socket I/O that std cannot do safely: writing without `SIGPIPE`.
//!
//! std writes to a `UnixStream` with `write(2)`. When the peer has gone, that raises `SIGPIPE`,
//! which a Rust binary ignores but a C program linked with our library does not: it would be
//! killed inside `v_host()` instead of getting `-1`. `send(2)` with `MSG_NOSIGNAL` reports
//! `EPIPE` instead.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::net::UnixStream;

/// Writes what it can of `buf`, as `Write::write` would, but never raises `SIGPIPE`.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub(crate) fn send(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the life of `stream`, and `buf` is valid for reads of
    // `buf.len()` bytes for the duration of the call; send(2) keeps no reference to either.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Elsewhere there is no `MSG_NOSIGNAL`; plain `write(2)` it is.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub(crate) fn send(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    use std::io::Write;
    (&*stream).write(buf)
}

/// [`send`] until all of `buf` is written: for blocking sockets (with a write timeout).
pub(crate) fn send_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match send(stream, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C program has SIGPIPE's default action, death; we must get EPIPE instead.
    #[test]
    fn a_vanished_peer_is_epipe_not_sigpipe() {
        // SAFETY: setting a signal's disposition to a libc-provided constant has no memory
        // effects; no test in this binary relies on SIGPIPE being ignored.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = send_all(&a, b"status\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
