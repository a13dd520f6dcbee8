//! The client side of the control protocol: one connection, requests answered in turn.

use super::{Request, Response, MAX_LINE};
use crate::{sys, Errno};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long [`CtlClient::connect`] lets a request or its answer take.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a daemon's control socket.
///
/// After a transport failure (timeout, garbled or missing answer) the connection is out of step
/// with the daemon, since a late answer would be taken for the next request's, so every later
/// call fails with `EIO`; connect again.
#[derive(Debug)]
pub struct CtlClient {
    stream: BufReader<UnixStream>,
    broken: bool,
}

impl CtlClient {
    /// Connects to the control socket at `path`, with [`CTL_TIMEOUT`] on every request.
    ///
    /// Errors: `ENOENT` (no socket there), `ECONNREFUSED` (nothing listens on it), `EACCES`,
    /// `EINVAL` (a path too long for a Unix socket), `EIO`.
    pub fn connect(path: &Path) -> Result<CtlClient, Errno> {
        CtlClient::connect_timeout(path, CTL_TIMEOUT)
    }

    /// [`CtlClient::connect`] with another timeout (not zero: `EINVAL`).
    pub fn connect_timeout(path: &Path, timeout: Duration) -> Result<CtlClient, Errno> {
        if timeout.is_zero() {
            return Err(Errno::EINVAL);
        }
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(CtlClient {
            stream: BufReader::with_capacity(MAX_LINE, stream),
            broken: false,
        })
    }

    /// Sends `req` and returns the payload of the daemon's `ok`, or the error number of its
    /// `err`.
    ///
    /// Errors besides the daemon's: `EINVAL` (a request whose line would not parse back to it,
    /// such as a service with a space; not sent), `ETIMEDOUT`, `EIO` (see
    /// [`CtlClient::call_raw`]).
    pub fn call(&mut self, req: &Request) -> Result<String, Errno> {
        let line = req.to_string();
        if Request::parse(&line).as_ref() != Ok(req) {
            return Err(Errno::EINVAL);
        }
        self.call_raw(&line)?.into_result()
    }

    /// Sends one line as it is (without its `\n`) and returns the daemon's answer, `ok` or
    /// `err`: for tools that pass on what a person typed.
    ///
    /// Errors: `EINVAL` (a line break in `line`, or a line too long; not sent), `ETIMEDOUT`
    /// (no answer in time), `EIO` (the daemon closed the connection, answered something that is
    /// not a response line, or this connection failed before).
    pub fn call_raw(&mut self, line: &str) -> Result<Response, Errno> {
        if line.contains(['\n', '\r']) || line.len() >= MAX_LINE {
            return Err(Errno::EINVAL);
        }
        if self.broken {
            return Err(Errno::EIO);
        }
        let answer = self.exchange(line);
        if answer.is_err() {
            self.broken = true;
        }
        answer
    }

    fn exchange(&mut self, line: &str) -> Result<Response, Errno> {
        // An answer nobody asked for is already waiting: the daemon is out of step.
        if !self.stream.buffer().is_empty() {
            return Err(Errno::EIO);
        }
        let mut msg = Vec::with_capacity(line.len() + 1);
        msg.extend_from_slice(line.as_bytes());
        msg.push(b'\n');
        sys::send_all(self.stream.get_ref(), &msg).map_err(transport)?;

        let mut answer = Vec::new();
        (&mut self.stream)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut answer)
            .map_err(transport)?;
        // Without its '\n' the answer was cut short by the daemon closing, or is too long.
        if answer.last() != Some(&b'\n') {
            return Err(Errno::EIO);
        }
        let answer = std::str::from_utf8(&answer).map_err(|_| Errno::EIO)?;
        Response::parse(answer).map_err(|_| Errno::EIO)
    }
}

/// A failed exchange: only a timeout keeps its name, anything else is the daemon going away.
fn transport(e: io::Error) -> Errno {
    match Errno::from(e) {
        Errno::ETIMEDOUT => Errno::ETIMEDOUT,
        _ => Errno::EIO,
    }
}
