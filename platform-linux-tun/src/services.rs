//! The services a host server runs on the core's socket API, and the table that drives them.
//!
//! Every built-in service is deterministic: its output is a function of the bytes it was given
//! and of nothing else (no clock, no randomness, no `Date:` header), so replicas fed the same
//! client data in the same order produce byte-identical output — the condition for a backup to
//! take over a connection in mid-stream. The relay carries each connection to an unmodified
//! local server; it is as deterministic as that server is. The stream service paces its
//! frames by the replica's clock, but *what* it sends is a function of position alone: a
//! backup that is a few milliseconds behind holds the same bytes, only later (and a backup
//! holds its output anyway until the client acknowledges it).
//!
//! Fault-tolerant connections read client data through the group's deliveries
//! ([`Host::poll_delivery`] / [`Host::recv_delivered`]), so that every replica sees the same
//! chunks in the same order across connections; plain connections read the socket directly.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hydranet_core::ft::host::{listen_on, Host};
use hydranet_core::netinet::tcp_usrreq::Shutdown;
use hydranet_core::sim::service::bulk_byte;
use hydranet_core::stack::SocketHandle;
use hydranet_core::{Errno, Instant};

/// Output a connection keeps ready beyond what its send buffer holds: enough to refill the
/// buffer in one pass, small enough that a bulk source never materialises its whole stream.
const PENDING_TARGET: usize = 64 * 1024;
/// A request head larger than this is refused (HTTP 431), so a client cannot grow memory.
const HTTP_MAX_HEAD: usize = 16 * 1024;
/// A key-value line longer than this is answered `ERR` and discarded.
const KV_MAX_LINE: usize = 4096;

/// Which service answers a port, as written in configuration and on the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceSpec {
    /// Returns every byte.
    Echo,
    /// Reads and drops everything (an upload sink).
    Discard,
    /// Reads everything and, at the client's end of stream, answers with the SHA-256 of what
    /// it read, in hex, and a newline: an upload whose integrity both ends can check.
    Digest,
    /// Sends this many bytes of [`bulk_byte`] on connect, then closes (a download).
    Bulk(u64),
    /// HTTP/1.1 GET/HEAD of the files under a folder.
    Http(PathBuf),
    /// A line protocol: `SET k v` → `OK`, `GET k` → value or `NIL`, `DEL k` → `1`/`0`.
    Kv,
    /// Carries each connection to an unmodified server at this address (on the host's own
    /// loopback, typically).
    Relay(SocketAddr),
    /// A constant-bit-rate stream, like a video feed: on connect, `frames` frames of
    /// `frame_len` bytes (header included, see [`stream_frame`]), frame `n` released `n / fps`
    /// seconds after the connection was accepted, then closes.
    Stream {
        frame_len: u32,
        fps: u32,
        frames: u32,
    },
}

/// The first bytes of every stream frame.
pub const STREAM_MAGIC: [u8; 4] = *b"HNFR";
/// A stream frame's header: magic, frame number, frame length (header included) and the
/// number of frames in the stream, as big-endian u32s. The receiver can check each frame on
/// its own, and a frame that is cut, doubled or out of place shows in its header.
pub const STREAM_HEADER_LEN: usize = 16;
/// The largest stream frame the spec accepts: a frame is queued whole, so this bounds what a
/// connection holds beyond [`PENDING_TARGET`].
pub const STREAM_MAX_FRAME: u32 = 1 << 20;
/// The highest frame rate the spec accepts (the daemon's poll loop wakes in whole ms).
pub const STREAM_MAX_FPS: u32 = 1000;

/// The header of frame `n`.
pub fn stream_header(n: u32, frame_len: u32, frames: u32) -> [u8; STREAM_HEADER_LEN] {
    let mut h = [0u8; STREAM_HEADER_LEN];
    h[..4].copy_from_slice(&STREAM_MAGIC);
    h[4..8].copy_from_slice(&n.to_be_bytes());
    h[8..12].copy_from_slice(&frame_len.to_be_bytes());
    h[12..].copy_from_slice(&frames.to_be_bytes());
    h
}

/// The payload byte at offset `off` of a stream, counted from the stream's first byte
/// (headers included): a function of position only, so every replica sends the same bytes.
pub fn stream_payload_byte(off: u64) -> u8 {
    bulk_byte(off as usize)
}

/// Appends frame `n` (header and payload) to `out`.
pub fn stream_frame(n: u32, frame_len: u32, frames: u32, out: &mut VecDeque<u8>) {
    out.extend(stream_header(n, frame_len, frames));
    let base = u64::from(n) * u64::from(frame_len);
    out.extend(
        (base + STREAM_HEADER_LEN as u64..base + u64::from(frame_len)).map(stream_payload_byte),
    );
}

fn parse_stream(arg: &str) -> Result<ServiceSpec, String> {
    let bad = || format!("stream:{arg}: want stream:BYTES_PER_FRAME:FPS:FRAMES");
    let mut it = arg.split(':').map(|x| x.parse::<u32>().map_err(|_| bad()));
    let (Some(frame_len), Some(fps), Some(frames), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(bad());
    };
    let (frame_len, fps, frames) = (frame_len?, fps?, frames?);
    if !(STREAM_HEADER_LEN as u32..=STREAM_MAX_FRAME).contains(&frame_len) {
        return Err(format!(
            "stream:{arg}: a frame is {STREAM_HEADER_LEN}..={STREAM_MAX_FRAME} bytes"
        ));
    }
    if !(1..=STREAM_MAX_FPS).contains(&fps) || frames == 0 {
        return Err(format!(
            "stream:{arg}: 1..={STREAM_MAX_FPS} frames per second and at least one frame"
        ));
    }
    Ok(ServiceSpec::Stream {
        frame_len,
        fps,
        frames,
    })
}

impl FromStr for ServiceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name, arg) {
            ("echo", None) => Ok(ServiceSpec::Echo),
            ("discard", None) => Ok(ServiceSpec::Discard),
            ("digest", None) => Ok(ServiceSpec::Digest),
            ("kv", None) => Ok(ServiceSpec::Kv),
            ("bulk", Some(n)) => n
                .parse()
                .map(ServiceSpec::Bulk)
                .map_err(|_| format!("bulk:{n}: not a byte count")),
            ("http", Some(dir)) if !dir.is_empty() => Ok(ServiceSpec::Http(PathBuf::from(dir))),
            ("relay", Some(addr)) => addr
                .parse()
                .map(ServiceSpec::Relay)
                .map_err(|_| format!("relay:{addr}: not an address:port")),
            ("stream", Some(arg)) => parse_stream(arg),
            _ => Err(format!(
                "unknown service {s:?} (echo, discard, digest, kv, bulk:BYTES, http:DIR, \
                 relay:IP:PORT, stream:BYTES_PER_FRAME:FPS:FRAMES)"
            )),
        }
    }
}

impl fmt::Display for ServiceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceSpec::Echo => f.write_str("echo"),
            ServiceSpec::Discard => f.write_str("discard"),
            ServiceSpec::Digest => f.write_str("digest"),
            ServiceSpec::Kv => f.write_str("kv"),
            ServiceSpec::Bulk(n) => write!(f, "bulk:{n}"),
            ServiceSpec::Http(d) => write!(f, "http:{}", d.display()),
            ServiceSpec::Relay(a) => write!(f, "relay:{a}"),
            ServiceSpec::Stream {
                frame_len,
                fps,
                frames,
            } => write!(f, "stream:{frame_len}:{fps}:{frames}"),
        }
    }
}

/// One connection's application logic.
trait Session {
    /// Client bytes, in order.
    fn input(&mut self, data: &[u8]);
    /// The client will send nothing more.
    fn input_eof(&mut self);
    /// Appends output that is ready; returns true once the session will produce nothing more
    /// (the connection closes when what it produced has been sent).
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool;
    /// A descriptor whose readability means [`Session::output`] has something new.
    fn fd(&self) -> Option<RawFd> {
        None
    }
    /// When [`Session::output`] will have something new by the clock alone (a paced source);
    /// nothing else wakes the daemon for it.
    fn wake_at(&self) -> Option<std::time::Instant> {
        None
    }
}

struct Echo {
    buf: Vec<u8>,
    eof: bool,
}

impl Session for Echo {
    fn input(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    fn input_eof(&mut self) {
        self.eof = true;
    }
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        out.extend(self.buf.drain(..));
        self.eof
    }
}

struct Discard {
    eof: bool,
}

impl Session for Discard {
    fn input(&mut self, _: &[u8]) {}
    fn input_eof(&mut self) {
        self.eof = true;
    }
    fn output(&mut self, _: &mut VecDeque<u8>) -> bool {
        self.eof
    }
}

struct Digest {
    hash: sha2::Sha256,
    answer: Option<Vec<u8>>,
}

impl Session for Digest {
    fn input(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        self.hash.update(data);
    }
    fn input_eof(&mut self) {
        use sha2::Digest as _;
        let sum = std::mem::take(&mut self.hash).finalize();
        let mut hex: Vec<u8> = sum
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect();
        hex.push(b'\n');
        self.answer = Some(hex);
    }
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        match self.answer.take() {
            Some(a) => {
                out.extend(a);
                true
            }
            None => false,
        }
    }
}

struct Bulk {
    next: u64,
    total: u64,
}

impl Session for Bulk {
    fn input(&mut self, _: &[u8]) {}
    fn input_eof(&mut self) {}
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        let room = PENDING_TARGET.saturating_sub(out.len()) as u64;
        let end = self.total.min(self.next + room);
        out.extend((self.next..end).map(|i| bulk_byte(i as usize)));
        self.next = end;
        self.next == self.total
    }
}

/// The paced stream: frames released by the replica's clock, their bytes by position.
struct Stream {
    frame_len: u32,
    fps: u32,
    frames: u32,
    /// When the connection was accepted: frame `n` is due `n / fps` after it.
    start: std::time::Instant,
    next: u32,
}

impl Stream {
    fn due(&self, n: u32) -> std::time::Instant {
        // Computed from the start each time rather than added up, so rounding never drifts.
        self.start + Duration::from_nanos(u64::from(n) * 1_000_000_000 / u64::from(self.fps))
    }

    /// Appends every frame due at `now`, unless the connection already holds
    /// [`PENDING_TARGET`] bytes (a stalled connection catches up later, in order).
    fn emit(&mut self, now: std::time::Instant, out: &mut VecDeque<u8>) -> bool {
        while self.next < self.frames && self.due(self.next) <= now && out.len() < PENDING_TARGET {
            stream_frame(self.next, self.frame_len, self.frames, out);
            self.next += 1;
        }
        self.next == self.frames
    }
}

impl Session for Stream {
    fn input(&mut self, _: &[u8]) {}
    fn input_eof(&mut self) {}
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        self.emit(std::time::Instant::now(), out)
    }
    fn wake_at(&self) -> Option<std::time::Instant> {
        (self.next < self.frames).then(|| self.due(self.next))
    }
}

/// The line-protocol key-value store. Its map is per connection's *service*, shared by all
/// connections of one port (see [`KvStore`]).
struct Kv {
    store: std::rc::Rc<std::cell::RefCell<KvStore>>,
    line: Vec<u8>,
    overlong: bool,
    replies: Vec<u8>,
    eof: bool,
}

/// The state of one key-value service: shared by its connections, so its contents depend on
/// the order deliveries arrive in across connections — which the group makes identical.
#[derive(Default)]
pub struct KvStore {
    map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvStore {
    fn answer(&mut self, line: &[u8]) -> Vec<u8> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut parts = line.splitn(3, |&b| b == b' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(b"SET"), Some(k), Some(v)) => {
                self.map.insert(k.to_vec(), v.to_vec());
                b"OK\n".to_vec()
            }
            (Some(b"GET"), Some(k), None) => match self.map.get(k) {
                Some(v) => [v.as_slice(), b"\n"].concat(),
                None => b"NIL\n".to_vec(),
            },
            (Some(b"DEL"), Some(k), None) => match self.map.remove(k) {
                Some(_) => b"1\n".to_vec(),
                None => b"0\n".to_vec(),
            },
            _ => b"ERR\n".to_vec(),
        }
    }
}

impl Session for Kv {
    fn input(&mut self, data: &[u8]) {
        for &b in data {
            if b != b'\n' {
                if self.line.len() < KV_MAX_LINE {
                    self.line.push(b);
                } else {
                    self.overlong = true;
                }
                continue;
            }
            let reply = if std::mem::take(&mut self.overlong) {
                b"ERR\n".to_vec()
            } else {
                self.store.borrow_mut().answer(&self.line)
            };
            self.line.clear();
            self.replies.extend_from_slice(&reply);
        }
    }
    fn input_eof(&mut self) {
        self.eof = true;
    }
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        out.extend(self.replies.drain(..));
        self.eof
    }
}

/// HTTP/1.1 static files: GET and HEAD, keep-alive, pipelining; no time-dependent headers.
struct Http {
    root: PathBuf,
    head: Vec<u8>,
    /// The body being sent and how much of it is left.
    body: Option<(File, u64)>,
    /// Requests already parsed, waiting for the previous response to finish.
    queued: VecDeque<HttpRequest>,
    close_after: bool,
    /// A request that ends the connection was parsed: later bytes are not requests.
    last_request_seen: bool,
    eof: bool,
    finished: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct HttpRequest {
    method: String,
    target: String,
    close: bool,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses one request head; `Err` carries the status to answer with.
fn parse_http_head(head: &[u8]) -> Result<HttpRequest, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(400u16)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(505),
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(400);
        };
        let value = value.trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case("connection") {
            close = value.split(',').any(|t| t.trim() == "close")
                || (close && !value.split(',').any(|t| t.trim() == "keep-alive"));
        }
        if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // A request body would have to be skipped byte-exactly; static files need none.
            return Err(400);
        }
    }
    Ok(HttpRequest {
        method: method.to_string(),
        target: target.to_string(),
        close,
    })
}

/// The file a request target names under `root`, refusing anything that could leave it.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let rel = Path::new(path.strip_prefix('/')?);
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let full = root.join(rel);
    if full.is_dir() {
        Some(full.join("index.html"))
    } else {
        Some(full)
    }
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

impl Http {
    fn respond(&mut self, req: HttpRequest, out: &mut VecDeque<u8>) {
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            self.error(405, req.close, out);
            return;
        }
        let file = resolve(&self.root, &req.target).and_then(|p| {
            let f = File::open(p).ok()?;
            let len = f.metadata().ok().filter(|m| m.is_file())?.len();
            Some((f, len))
        });
        let Some((file, len)) = file else {
            self.error(404, req.close, out);
            return;
        };
        let conn = if req.close { "close" } else { "keep-alive" };
        out.extend(
            format!(
                "HTTP/1.1 200 OK\r\nServer: hydranet\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {len}\r\nConnection: {conn}\r\n\r\n"
            )
            .bytes(),
        );
        self.close_after = req.close;
        if !head_only && len > 0 {
            self.body = Some((file, len));
        }
    }

    fn error(&mut self, code: u16, close: bool, out: &mut VecDeque<u8>) {
        let body = format!("{code} {}\n", status_text(code));
        let conn = if close { "close" } else { "keep-alive" };
        out.extend(
            format!(
                "HTTP/1.1 {code} {}\r\nServer: hydranet\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: {conn}\r\n\r\n{body}",
                status_text(code),
                body.len()
            )
            .bytes(),
        );
        self.close_after = close;
    }
}

impl Session for Http {
    fn input(&mut self, data: &[u8]) {
        if self.last_request_seen {
            return;
        }
        self.head.extend_from_slice(data);
        while let Some(end) = find_head_end(&self.head) {
            let head: Vec<u8> = self.head.drain(..end).collect();
            match parse_http_head(&head[..end - 4]) {
                Ok(req) => {
                    let close = req.close;
                    self.queued.push_back(req);
                    if close {
                        self.head.clear();
                        self.last_request_seen = true;
                        return;
                    }
                }
                Err(code) => {
                    self.queued.push_back(HttpRequest {
                        method: format!("!{code}"),
                        target: String::new(),
                        close: true,
                    });
                    self.head.clear();
                    self.last_request_seen = true;
                    return;
                }
            }
        }
        if self.head.len() > HTTP_MAX_HEAD {
            self.head.clear();
            self.last_request_seen = true;
            self.queued.push_back(HttpRequest {
                method: "!431".into(),
                target: String::new(),
                close: true,
            });
        }
    }
    fn input_eof(&mut self) {
        self.eof = true;
    }
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        loop {
            if let Some((file, left)) = &mut self.body {
                let room = PENDING_TARGET.saturating_sub(out.len());
                if room == 0 {
                    return false;
                }
                let mut chunk = vec![0u8; room.min(*left as usize)];
                match file.read(&mut chunk) {
                    Ok(n) if n > 0 => {
                        out.extend(&chunk[..n]);
                        *left -= n as u64;
                        if *left > 0 {
                            return false;
                        }
                    }
                    // The file shrank under us: the promised length cannot be kept, so the
                    // only honest end is to close the connection.
                    _ => {
                        self.finished = true;
                        return true;
                    }
                }
                self.body = None;
            }
            if self.close_after {
                self.finished = true;
                return true;
            }
            match self.queued.pop_front() {
                Some(req) if req.method.starts_with('!') => {
                    let code = req.method[1..].parse().unwrap_or(400);
                    self.error(code, true, out);
                }
                Some(req) => self.respond(req, out),
                None => return self.eof,
            }
        }
    }
}

/// Carries a connection to a local unmodified server.
struct Relay {
    stream: Option<TcpStream>,
    to_server: Vec<u8>,
    client_eof: bool,
    server_eof: bool,
}

impl Relay {
    fn connect(addr: SocketAddr) -> Relay {
        let stream =
            TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).and_then(|s| {
                s.set_nonblocking(true)?;
                s.set_nodelay(true)?;
                Ok(s)
            });
        match stream {
            Ok(s) => Relay {
                stream: Some(s),
                to_server: Vec::new(),
                client_eof: false,
                server_eof: false,
            },
            Err(e) => {
                eprintln!("hydranet host: relay to {addr} failed: {e}; closing the connection");
                Relay {
                    stream: None,
                    to_server: Vec::new(),
                    client_eof: false,
                    server_eof: true,
                }
            }
        }
    }

    fn flush(&mut self) {
        let Some(s) = &mut self.stream else {
            self.to_server.clear();
            return;
        };
        while !self.to_server.is_empty() {
            match s.write(&self.to_server) {
                Ok(0) => break,
                Ok(n) => {
                    self.to_server.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.to_server.clear();
                    self.server_eof = true;
                    break;
                }
            }
        }
        if self.client_eof && self.to_server.is_empty() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }
}

impl Session for Relay {
    fn input(&mut self, data: &[u8]) {
        self.to_server.extend_from_slice(data);
        self.flush();
    }
    fn input_eof(&mut self) {
        self.client_eof = true;
        self.flush();
    }
    fn output(&mut self, out: &mut VecDeque<u8>) -> bool {
        self.flush();
        let Some(s) = &mut self.stream else {
            return true;
        };
        let mut chunk = [0u8; 16384];
        while !self.server_eof && out.len() < PENDING_TARGET {
            match s.read(&mut chunk) {
                Ok(0) => self.server_eof = true,
                Ok(n) => out.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.server_eof = true,
            }
        }
        self.server_eof
    }
    fn fd(&self) -> Option<RawFd> {
        // Only worth waking for while the server may still say something.
        self.stream
            .as_ref()
            .filter(|_| !self.server_eof)
            .map(|s| s.as_raw_fd())
    }
}

struct Listener {
    vip: Ipv4Addr,
    port: u16,
    handle: SocketHandle,
    spec: ServiceSpec,
    kv: std::rc::Rc<std::cell::RefCell<KvStore>>,
}

struct Conn {
    handle: SocketHandle,
    /// Reads go through the group's deliveries.
    ft: bool,
    session: Box<dyn Session>,
    pending: VecDeque<u8>,
    input_done: bool,
    output_done: bool,
}

/// Counters of the service table.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceStats {
    pub accepted: u64,
    pub closed: u64,
    pub aborted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The services of one host server and their connections.
#[derive(Default)]
pub struct ServiceTable {
    listeners: Vec<Listener>,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    pub stats: ServiceStats,
}

impl ServiceTable {
    pub fn new() -> Self {
        ServiceTable {
            buf: vec![0; 64 * 1024],
            ..Default::default()
        }
    }

    /// Starts `spec` listening on `vip:port`. `EADDRINUSE` if something already serves it;
    /// `EINVAL` for an HTTP root that is not a folder.
    pub fn serve(
        &mut self,
        host: &mut Host<'_>,
        vip: Ipv4Addr,
        port: u16,
        spec: ServiceSpec,
    ) -> Result<(), Errno> {
        if self
            .listeners
            .iter()
            .any(|l| l.vip == vip && l.port == port)
        {
            return Err(Errno::EADDRINUSE);
        }
        if let ServiceSpec::Http(root) = &spec {
            if !root.is_dir() {
                return Err(Errno::EINVAL);
            }
        }
        let handle = listen_on(&mut host.stack, vip, port, 128)?;
        self.listeners.push(Listener {
            vip,
            port,
            handle,
            spec,
            kv: Default::default(),
        });
        Ok(())
    }

    /// What is served, as `vip:port=spec` items.
    pub fn describe(&self) -> Vec<String> {
        self.listeners
            .iter()
            .map(|l| format!("{}:{}={}", l.vip, l.port, l.spec))
            .collect()
    }

    /// The `(vip, port)` of every service.
    pub fn ports(&self) -> Vec<(Ipv4Addr, u16)> {
        self.listeners.iter().map(|l| (l.vip, l.port)).collect()
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Descriptors whose readability means a session has output (relays).
    pub fn fds(&self) -> Vec<RawFd> {
        self.conns.iter().filter_map(|c| c.session.fd()).collect()
    }

    /// The earliest time a paced session has new output. Connections that could not take
    /// output now (their queue is full: the client's ACKs, which wake the daemon anyway, must
    /// drain it first) are left out, or an overdue frame would keep the loop spinning.
    pub fn next_wake(&self) -> Option<std::time::Instant> {
        self.conns
            .iter()
            .filter(|c| !c.output_done && c.pending.len() < PENDING_TARGET)
            .filter_map(|c| c.session.wake_at())
            .min()
    }

    /// One scheduling round: accept, feed input in the group's order, push output.
    pub fn run(&mut self, now: Instant, host: &mut Host<'_>) {
        self.accept(host);
        self.read_deliveries(now, host);
        self.read_plain(now, host);
        self.write(now, host);
    }

    fn accept(&mut self, host: &mut Host<'_>) {
        for l in &self.listeners {
            while let Ok((handle, _peer)) = host.stack.accept(l.handle) {
                let session: Box<dyn Session> = match &l.spec {
                    ServiceSpec::Echo => Box::new(Echo {
                        buf: Vec::new(),
                        eof: false,
                    }),
                    ServiceSpec::Discard => Box::new(Discard { eof: false }),
                    ServiceSpec::Digest => Box::new(Digest {
                        hash: Default::default(),
                        answer: None,
                    }),
                    ServiceSpec::Bulk(n) => Box::new(Bulk { next: 0, total: *n }),
                    ServiceSpec::Kv => Box::new(Kv {
                        store: l.kv.clone(),
                        line: Vec::new(),
                        overlong: false,
                        replies: Vec::new(),
                        eof: false,
                    }),
                    ServiceSpec::Http(root) => Box::new(Http {
                        root: root.clone(),
                        head: Vec::new(),
                        body: None,
                        queued: VecDeque::new(),
                        close_after: false,
                        last_request_seen: false,
                        eof: false,
                        finished: false,
                    }),
                    ServiceSpec::Relay(addr) => Box::new(Relay::connect(*addr)),
                    ServiceSpec::Stream {
                        frame_len,
                        fps,
                        frames,
                    } => Box::new(Stream {
                        frame_len: *frame_len,
                        fps: *fps,
                        frames: *frames,
                        start: std::time::Instant::now(),
                        next: 0,
                    }),
                };
                self.stats.accepted += 1;
                self.conns.push(Conn {
                    handle,
                    ft: host.role(l.vip, l.port).is_some(),
                    session,
                    pending: VecDeque::new(),
                    input_done: false,
                    output_done: false,
                });
            }
        }
    }

    fn read_deliveries(&mut self, now: Instant, host: &mut Host<'_>) {
        while let Some(d) = host.poll_delivery() {
            let Some(c) = self.conns.iter_mut().find(|c| c.handle == d.handle) else {
                continue;
            };
            loop {
                match host.recv_delivered(now, d.handle, d.upto, &mut self.buf) {
                    Ok(0) => {
                        if !c.input_done {
                            c.input_done = true;
                            c.session.input_eof();
                        }
                        break;
                    }
                    Ok(n) => {
                        self.stats.bytes_in += n as u64;
                        c.session.input(&self.buf[..n]);
                    }
                    Err(_) => break,
                }
            }
        }
    }

    fn read_plain(&mut self, now: Instant, host: &mut Host<'_>) {
        for c in self.conns.iter_mut().filter(|c| !c.ft && !c.input_done) {
            loop {
                match host.stack.recv(now, c.handle, &mut self.buf, 0) {
                    Ok(0) => {
                        c.input_done = true;
                        c.session.input_eof();
                        break;
                    }
                    Ok(n) => {
                        self.stats.bytes_in += n as u64;
                        c.session.input(&self.buf[..n]);
                    }
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(_) => {
                        c.input_done = true;
                        c.session.input_eof();
                        break;
                    }
                }
            }
        }
    }

    fn write(&mut self, now: Instant, host: &mut Host<'_>) {
        let mut finished = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            let mut aborted = false;
            loop {
                if !c.output_done && c.pending.len() < PENDING_TARGET {
                    c.output_done = c.session.output(&mut c.pending);
                }
                if c.pending.is_empty() {
                    break;
                }
                let (a, _) = c.pending.as_slices();
                match host.stack.send(now, c.handle, a, 0) {
                    Ok(n) => {
                        self.stats.bytes_out += n as u64;
                        c.pending.drain(..n);
                    }
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(_) => {
                        aborted = true;
                        break;
                    }
                }
            }
            if aborted {
                self.stats.aborted += 1;
                let _ = host.stack.close(now, c.handle);
                finished.push(i);
            } else if c.output_done && c.pending.is_empty() {
                let _ = host.stack.shutdown(now, c.handle, Shutdown::Write);
                let _ = host.stack.close(now, c.handle);
                self.stats.closed += 1;
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            self.conns.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut dyn Session) -> (Vec<u8>, bool) {
        let mut out = VecDeque::new();
        let mut done = false;
        for _ in 0..10_000 {
            done = s.output(&mut out);
            if done {
                break;
            }
            if out.len() >= PENDING_TARGET {
                break;
            }
        }
        (out.into_iter().collect(), done)
    }

    #[test]
    fn specs_round_trip() {
        for s in [
            "echo",
            "discard",
            "digest",
            "kv",
            "bulk:8388608",
            "http:/srv/www",
            "relay:127.0.0.1:6379",
            "stream:20833:30:180",
        ] {
            let spec: ServiceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        for bad in [
            "",
            "bulk",
            "bulk:x",
            "http:",
            "relay:nowhere",
            "ftp",
            "echo:1",
            "stream",
            "stream:20833:30",
            "stream:20833:30:180:1",
            "stream:15:30:180",
            "stream:2000000:30:180",
            "stream:20833:0:180",
            "stream:20833:30:0",
            "stream:-1:30:180",
        ] {
            assert!(bad.parse::<ServiceSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_answers_the_sha256_of_its_input_at_eof() {
        let mut d = Digest {
            hash: Default::default(),
            answer: None,
        };
        d.input(b"ab");
        assert_eq!(drain(&mut d), (Vec::new(), false));
        d.input(b"c");
        d.input_eof();
        let (out, done) = drain(&mut d);
        assert!(done);
        assert_eq!(
            out,
            b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
        );
    }

    #[test]
    fn bulk_streams_exactly_its_length() {
        let mut b = Bulk {
            next: 0,
            total: 200_000,
        };
        let mut all = Vec::new();
        loop {
            let mut out = VecDeque::new();
            let done = b.output(&mut out);
            all.extend(out);
            if done {
                break;
            }
        }
        assert_eq!(all.len(), 200_000);
        assert!(all.iter().enumerate().all(|(i, &x)| x == bulk_byte(i)));
    }

    #[test]
    fn stream_frames_are_paced_and_a_function_of_position() {
        let t0 = std::time::Instant::now();
        let mut s = Stream {
            frame_len: 100,
            fps: 10,
            frames: 3,
            start: t0,
            next: 0,
        };
        let ms = |m| t0 + Duration::from_millis(m);
        let mut out = VecDeque::new();
        assert!(!s.emit(ms(0), &mut out));
        assert_eq!(out.len(), 100, "frame 0 is due at once");
        assert_eq!(s.wake_at(), Some(ms(100)));
        assert!(!s.emit(ms(99), &mut out));
        assert_eq!(out.len(), 100);
        // Late by two frames: both go out, in order.
        assert!(s.emit(ms(250), &mut out));
        assert_eq!(s.wake_at(), None);
        let all: Vec<u8> = out.into_iter().collect();
        assert_eq!(all.len(), 300);
        for n in 0..3u32 {
            let f = &all[n as usize * 100..][..100];
            assert_eq!(f[..STREAM_HEADER_LEN], stream_header(n, 100, 3));
            for (j, &b) in f.iter().enumerate().skip(STREAM_HEADER_LEN) {
                assert_eq!(b, stream_payload_byte(u64::from(n) * 100 + j as u64));
            }
        }
        // The same stream emitted at other times is the same bytes.
        let mut again = VecDeque::new();
        for n in 0..3 {
            stream_frame(n, 100, 3, &mut again);
        }
        assert_eq!(again.into_iter().collect::<Vec<u8>>(), all);
    }

    #[test]
    fn stream_holds_back_while_its_queue_is_full() {
        let t0 = std::time::Instant::now();
        let mut s = Stream {
            frame_len: 40_000,
            fps: 1000,
            frames: 10,
            start: t0,
            next: 0,
        };
        let mut out = VecDeque::new();
        assert!(!s.emit(t0 + Duration::from_secs(1), &mut out));
        assert_eq!(s.next, 2, "stops once the queue passes PENDING_TARGET");
        out.clear();
        assert!(!s.emit(t0 + Duration::from_secs(1), &mut out));
        assert_eq!(s.next, 4);
    }

    #[test]
    fn kv_store_is_shared_and_bounded() {
        let store = std::rc::Rc::new(std::cell::RefCell::new(KvStore::default()));
        let mk = || Kv {
            store: store.clone(),
            line: Vec::new(),
            overlong: false,
            replies: Vec::new(),
            eof: false,
        };
        let (mut a, mut b) = (mk(), mk());
        a.input(b"SET k hello world\nGET k\n");
        b.input(b"GET k\nDEL k\nDEL k\nGET k\nBOGUS\n");
        assert_eq!(drain(&mut a).0, b"OK\nhello world\n");
        assert_eq!(drain(&mut b).0, b"hello world\n1\n0\nNIL\nERR\n");
        a.input(&vec![b'x'; KV_MAX_LINE * 2]);
        a.input(b"\nGET k\r\n");
        assert_eq!(drain(&mut a).0, b"ERR\nNIL\n");
    }

    fn http_in(root: &Path) -> Http {
        Http {
            root: root.to_path_buf(),
            head: Vec::new(),
            body: None,
            queued: VecDeque::new(),
            close_after: false,
            last_request_seen: false,
            eof: false,
            finished: false,
        }
    }

    #[test]
    fn http_serves_files_pipelined_and_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("hn-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), b"0123456789").unwrap();
        let mut h = http_in(&dir);
        h.input(b"GET /a.bin HTTP/1.1\r\nHost: x\r\n\r\nHEAD /a.bin HTTP/1.1\r\n\r\n");
        h.input(b"GET /../etc/passwd HTTP/1.1\r\n\r\nGET /missing HTTP/1.1\r\nConnection: close\r\n\r\nGET /a.bin HTTP/1.1\r\n\r\n");
        let (out, done) = drain(&mut h);
        let text = String::from_utf8(out).unwrap();
        assert!(done, "Connection: close ends the session");
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert_eq!(text.matches("HTTP/1.1 404 Not Found").count(), 2, "{text}");
        assert_eq!(
            text.matches("0123456789").count(),
            1,
            "HEAD has no body: {text}"
        );
        assert!(!text.contains("Date:"), "no time-dependent header");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn http_rejects_bad_heads() {
        let root = std::env::temp_dir();
        for (req, code) in [
            (&b"BREW /pot HTTP/1.1\r\n\r\n"[..], "405"),
            (b"GET / HTTP/2\r\n\r\n", "505"),
            (b"GET /\r\n\r\n", "400"),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "400"),
        ] {
            let mut h = http_in(&root);
            h.input(req);
            let (out, _) = drain(&mut h);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {code}")), "{text}");
        }
        let mut h = http_in(&root);
        h.input(&vec![b'a'; HTTP_MAX_HEAD + 10]);
        let (out, done) = drain(&mut h);
        assert!(String::from_utf8(out).unwrap().starts_with("HTTP/1.1 431"));
        assert!(done);
    }
}
