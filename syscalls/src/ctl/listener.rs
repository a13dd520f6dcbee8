//! The daemon side of the control protocol: a non-blocking listener that a daemon's event loop
//! polls along with its other descriptors.

use super::{Request, Response, MAX_LINE};
use crate::{sys, Errno};
use std::fs;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Connections beyond this many are answered `err ENOBUFS` and closed.
const MAX_CONNECTIONS: usize = 64;
/// Answers a client has not read, beyond which it is dropped rather than buffered forever.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// Reads from one connection per [`CtlListener::poll`], so one busy client cannot starve the
/// others (or the daemon).
const READS_PER_POLL: usize = 16;
/// Connections accepted per [`CtlListener::poll`], for the same reason.
const ACCEPTS_PER_POLL: usize = 64;

/// A daemon's control socket: a Unix stream listener at a path, and its clients.
///
/// Everything is non-blocking: the daemon adds [`CtlListener::fds`] to its `poll(2)` set (for
/// reading) and calls [`CtlListener::poll`] when one of them is ready, or on every turn of its
/// loop. The socket file is removed when the listener is dropped (if it is still the one this
/// listener created).
#[derive(Debug)]
pub struct CtlListener {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file, so that Drop removes only our own.
    ident: (u64, u64),
    conns: Vec<Conn>,
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    /// Bytes received that do not make a complete line yet.
    input: Vec<u8>,
    /// Answers not yet accepted by the kernel.
    output: Vec<u8>,
    /// No more requests: the client closed its side or sent a line too long; the connection
    /// goes once `output` is written.
    closing: bool,
    /// Gone: a socket error, or a client that does not read its answers.
    dead: bool,
}

impl CtlListener {
    /// Listens at `path` (mode 0600), creating its parent directory if needed.
    ///
    /// A socket file left by a daemon that died is removed first; one that a live daemon still
    /// listens on is `AddrInUse`, and anything at `path` that is not a socket is
    /// `AlreadyExists`.
    pub fn bind(path: &Path) -> io::Result<CtlListener> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        let meta = fs::symlink_metadata(path)?;
        let this = CtlListener {
            listener,
            path: path.to_owned(),
            ident: (meta.dev(), meta.ino()),
            conns: Vec::new(),
        };
        // On error `this` is dropped, and the socket file with it.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        this.listener.set_nonblocking(true)?;
        Ok(this)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket's descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// The listening socket and every client connection: the descriptors to poll for reading.
    /// The set changes with every [`CtlListener::poll`].
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.conns.iter().map(|c| c.stream.as_raw_fd()))
            .collect()
    }

    /// How many clients are connected.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Accepts the clients waiting to connect, reads what the clients sent, answers every
    /// complete request line with `handler`'s response (a malformed one with `err EINVAL
    /// <why>`, without calling `handler`), and drops the clients that left. Never blocks: an
    /// answer the kernel does not take at once is kept and written by a later call.
    pub fn poll(&mut self, handler: &mut dyn FnMut(Request) -> Response) {
        self.accept();
        for conn in &mut self.conns {
            conn.serve(handler);
        }
        self.conns.retain(|c| !c.done());
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_POLL {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let mut conn = Conn::new(stream);
                    if self.conns.len() >= MAX_CONNECTIONS {
                        conn.answer(Response::err(
                            Errno::ENOBUFS,
                            "too many control connections",
                        ));
                        conn.flush();
                        continue;
                    }
                    self.conns.push(conn);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                // WouldBlock, or out of descriptors: the rest wait for the next call.
                Err(_) => break,
            }
        }
    }
}

impl AsRawFd for CtlListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl AsFd for CtlListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Drop for CtlListener {
    fn drop(&mut self) {
        // A daemon started after us may have replaced the file; that one is not ours to remove.
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.ident {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            ErrorKind::AddrInUse,
            format!("a daemon already listens on {}", path.display()),
        ));
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            closing: false,
            dead: false,
        }
    }

    fn done(&self) -> bool {
        self.dead || (self.closing && self.output.is_empty())
    }

    fn serve(&mut self, handler: &mut dyn FnMut(Request) -> Response) {
        let mut chunk = [0u8; MAX_LINE];
        for _ in 0..READS_PER_POLL {
            if self.closing || self.dead {
                break;
            }
            match (&self.stream).read(&mut chunk) {
                Ok(0) => {
                    // The client may have shut down only its sending side and still wait for
                    // the answers; a partial line it left is no request.
                    self.closing = true;
                    self.input.clear();
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    self.handle_lines(handler);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        self.flush();
    }

    fn handle_lines(&mut self, handler: &mut dyn FnMut(Request) -> Response) {
        while !self.closing && !self.dead {
            let newline = self.input.iter().position(|&b| b == b'\n');
            match newline {
                Some(end) if end < MAX_LINE => {
                    let line: Vec<u8> = self.input.drain(..=end).collect();
                    let response = match std::str::from_utf8(&line) {
                        Err(_) => Response::err(Errno::EINVAL, "request is not UTF-8"),
                        Ok(text) => match Request::parse_explained(text) {
                            Ok(req) => handler(req),
                            Err(why) => Response::Err(Errno::EINVAL, why),
                        },
                    };
                    self.answer(response);
                }
                None if self.input.len() < MAX_LINE => break,
                // The next line starts who knows where: answer, and hang up.
                _ => {
                    self.answer(Response::err(
                        Errno::EINVAL,
                        format!("line too long (max {MAX_LINE} bytes including the newline)"),
                    ));
                    self.input = Vec::new();
                    self.closing = true;
                }
            }
        }
    }

    fn answer(&mut self, response: Response) {
        let mut line = response.to_string();
        if line.len() >= MAX_LINE {
            line = Response::err(
                Errno::ENOBUFS,
                format!("response too long ({} bytes)", line.len()),
            )
            .to_string();
        }
        self.output.extend_from_slice(line.as_bytes());
        self.output.push(b'\n');
        if self.output.len() > MAX_PENDING_OUTPUT {
            self.dead = true;
        }
    }

    fn flush(&mut self) {
        while !self.output.is_empty() && !self.dead {
            match sys::send(&self.stream, &self.output) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
    }
}
