//! `hydranet tun-server`: a bulk server on a TUN device, on the core's plain [`Stack`] (no
//! FT layer, no host daemon) or on smoltcp, for `bench path`.
//!
//! Both stacks get the same everything but the TCP code: the same [`TunDriver`] (smoltcp
//! through [`DriverDevice`]), the same poll loop (poll(2) on the TUN fd until the stack's next
//! timer, then up to [`MAX_ROUNDS`] rounds of "pump the device, run the application" until
//! nothing moves — the shape of the host daemon's loop), the same application
//! ([`crate::bulkapp`]), the same socket buffer sizes and the same clock.
//!
//! One port serves downloads (the server sends `bytes` and closes), another uploads (the
//! server reads to the client's end of stream and closes). The server prints `ready` on
//! standard output once it listens, then logs on standard error, and ends on SIGTERM/SIGINT
//! or after `max_secs` whatever happens to whoever started it.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::task::{Context, Waker};
use std::time::Duration;

use embassy_net_driver::Driver;
use hydranet_core::driver::poll_device;
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::{Errno, Instant};
use smoltcp::iface::{
    Config as SmolConfig, Interface, PollResult, SocketHandle as SmolHandle, SocketSet,
};
use smoltcp::socket::tcp as smol_tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::bulkapp::{Io, Mode, Pattern, Session, SockIo, CHUNK};
use crate::daemon::{install_stop_handler, stop_requested, Clock};
use crate::smoldev::DriverDevice;
use crate::tun::{wait_readable, Tun, TunDriver};

/// Rounds of one wake-up at most, as in the host daemon: bounded so a flood of packets cannot
/// keep the loop from checking its stop flag and lifetime.
pub const MAX_ROUNDS: usize = 64;
/// Longest sleep while idle.
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// The core's ISN secret etc.: fixed, as nothing here needs unpredictable sequence numbers and
/// a fixed seed keeps runs alike.
const SEED: [u8; 16] = [0x5e; 16];

/// Which TCP runs the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKind {
    Hydranet,
    Smoltcp,
}

impl StackKind {
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Hydranet => "hydranet",
            StackKind::Smoltcp => "smoltcp",
        }
    }
}

impl std::str::FromStr for StackKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hydranet" => Ok(StackKind::Hydranet),
            "smoltcp" => Ok(StackKind::Smoltcp),
            _ => Err(format!("unknown stack {s:?} (hydranet or smoltcp)")),
        }
    }
}

/// What to serve, and where.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub stack: StackKind,
    /// The TUN device, in the calling process's namespace.
    pub dev: String,
    /// The server's address (Linux routes it into the device).
    pub addr: Ipv4Addr,
    pub download_port: u16,
    pub upload_port: u16,
    /// Bytes per download.
    pub bytes: u64,
    /// Send and receive buffer of every connection, both stacks.
    pub buf: usize,
    /// The server ends after this long in any case.
    pub max_secs: f64,
}

/// Connections and bytes, for the closing log line and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub accepted: u64,
    pub completed: u64,
    pub failed: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
}

impl ServerStats {
    fn record(&mut self, s: &Session) {
        match s.done {
            Some(true) => self.completed += 1,
            _ => self.failed += 1,
        }
        match s.mode {
            Mode::Download => self.bytes_out += s.moved,
            Mode::Upload => self.bytes_in += s.moved,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The core's plain Stack.

struct HydraIo<'a> {
    stack: &'a mut Stack<'static>,
    h: SocketHandle,
    now: Instant,
}

impl SockIo for HydraIo<'_> {
    fn send(&mut self, data: &[u8]) -> Io {
        match self.stack.send(self.now, self.h, data, 0) {
            Ok(0) | Err(Errno::EWOULDBLOCK) => Io::WouldBlock,
            Ok(n) => Io::Done(n),
            Err(_) => Io::Failed,
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Io {
        match self.stack.recv(self.now, self.h, buf, 0) {
            Ok(0) => Io::Eof,
            Ok(n) => Io::Done(n),
            Err(Errno::EWOULDBLOCK) => Io::WouldBlock,
            Err(_) => Io::Failed,
        }
    }
    fn close(&mut self) {
        // The handle is released either way; an error only says the connection was gone.
        let _ = self.stack.close(self.now, self.h);
    }
}

pub struct HydranetServer {
    stack: Stack<'static>,
    listeners: Vec<(SocketHandle, Mode)>,
    conns: Vec<(SocketHandle, Session)>,
    scratch: Vec<u8>,
}

impl HydranetServer {
    pub fn new(o: &ServerOptions) -> Result<Self, String> {
        let mut stack = Stack::new_alloc(SEED);
        // Before any socket exists: sockets take their buffer sizes from these when created.
        stack.sysctl.recvspace = o.buf as u32;
        stack.sysctl.sendspace = o.buf as u32;
        stack
            .add_address(o.addr)
            .map_err(|e| format!("address {}: {e:?}", o.addr))?;
        let mut listeners = Vec::new();
        for (port, mode) in [
            (o.download_port, Mode::Download),
            (o.upload_port, Mode::Upload),
        ] {
            let err = |e: Errno| format!("listen on {}:{port}: {e:?}", o.addr);
            let h = stack.socket().map_err(err)?;
            stack
                .bind(h, SocketAddrV4::new(o.addr, port))
                .map_err(err)?;
            stack.listen(h, 8).map_err(err)?;
            listeners.push((h, mode));
        }
        Ok(HydranetServer {
            stack,
            listeners,
            conns: Vec::new(),
            scratch: vec![0u8; 65536],
        })
    }

    fn pump<D: Driver>(
        &mut self,
        dev: &mut D,
        now_us: u64,
        app: &mut AppCtx,
    ) -> Result<bool, String> {
        let now = Instant::from_micros(now_us);
        let mut cx = Context::from_waker(Waker::noop());
        let r = poll_device(&mut self.stack, dev, &mut cx, now, &mut self.scratch)
            .map_err(|e| format!("device: {e}"))?;
        let mut progress = r.progress();
        for &(ls, mode) in &self.listeners {
            while let Ok((h, _)) = self.stack.accept(ls) {
                self.conns.push((h, Session::new(mode, app.bytes)));
                app.stats.accepted += 1;
                progress = true;
            }
        }
        for (h, s) in &mut self.conns {
            let mut io = HydraIo {
                stack: &mut self.stack,
                h: *h,
                now,
            };
            progress |= s.step(&mut io, &app.pattern, &mut app.buf);
            if s.done.is_some() {
                app.stats.record(s);
            }
        }
        self.conns.retain(|(_, s)| s.done.is_none());
        Ok(progress)
    }

    fn deadline_us(&self) -> Option<u64> {
        self.stack.poll_timeout().map(|t| t.total_micros())
    }
}

// ---------------------------------------------------------------------------------------
// smoltcp.

struct SmolIo<'a, 'b>(&'a mut smol_tcp::Socket<'b>);

impl SockIo for SmolIo<'_, '_> {
    fn send(&mut self, data: &[u8]) -> Io {
        match self.0.send_slice(data) {
            Ok(0) => Io::WouldBlock,
            Ok(n) => Io::Done(n),
            Err(_) => Io::Failed,
        }
    }
    fn recv(&mut self, buf: &mut [u8]) -> Io {
        match self.0.recv_slice(buf) {
            Ok(0) => Io::WouldBlock,
            Ok(n) => Io::Done(n),
            Err(smol_tcp::RecvError::Finished) => Io::Eof,
            Err(smol_tcp::RecvError::InvalidState) => Io::Failed,
        }
    }
    fn close(&mut self) {
        self.0.close();
    }
}

/// A smoltcp socket listens for one connection at a time; after it, a fresh one takes its
/// place.
struct SmolPort {
    port: u16,
    mode: Mode,
    handle: SmolHandle,
    session: Option<Session>,
}

pub struct SmoltcpServer {
    iface: Interface,
    sockets: SocketSet<'static>,
    ports: Vec<SmolPort>,
    buf: usize,
}

fn smol_listener(
    sockets: &mut SocketSet<'static>,
    port: u16,
    buf: usize,
) -> Result<SmolHandle, String> {
    let mut s = smol_tcp::Socket::new(
        smol_tcp::SocketBuffer::new(vec![0u8; buf]),
        smol_tcp::SocketBuffer::new(vec![0u8; buf]),
    );
    s.listen(port)
        .map_err(|e| format!("smoltcp listen {port}: {e}"))?;
    Ok(sockets.add(s))
}

impl SmoltcpServer {
    pub fn new<D: Driver>(o: &ServerOptions, dev: &mut D) -> Result<Self, String> {
        let mut cfg = SmolConfig::new(HardwareAddress::Ip);
        cfg.random_seed = u64::from_le_bytes([SEED[0]; 8]);
        let mut device = DriverDevice { driver: dev };
        let mut iface = Interface::new(cfg, &mut device, SmolInstant::ZERO);
        let addr = IpAddress::Ipv4(o.addr);
        let mut added = Ok(());
        iface.update_ip_addrs(|a| added = a.push(IpCidr::new(addr, 32)).map_err(|_| ()));
        added.map_err(|_| "smoltcp: address table full".to_string())?;
        // Medium IP has no next hop to resolve, but smoltcp sends to an address outside its
        // own networks only along a route: a default route through itself will do.
        iface
            .routes_mut()
            .add_default_ipv4_route(o.addr)
            .map_err(|e| format!("smoltcp route: {e}"))?;
        let mut sockets = SocketSet::new(Vec::new());
        let mut ports = Vec::new();
        for (port, mode) in [
            (o.download_port, Mode::Download),
            (o.upload_port, Mode::Upload),
        ] {
            ports.push(SmolPort {
                port,
                mode,
                handle: smol_listener(&mut sockets, port, o.buf)?,
                session: None,
            });
        }
        Ok(SmoltcpServer {
            iface,
            sockets,
            ports,
            buf: o.buf,
        })
    }

    fn pump<D: Driver>(
        &mut self,
        dev: &mut D,
        now_us: u64,
        app: &mut AppCtx,
    ) -> Result<bool, String> {
        let now = SmolInstant::from_micros(now_us as i64);
        let mut device = DriverDevice { driver: dev };
        let mut progress =
            self.iface.poll(now, &mut device, &mut self.sockets) == PollResult::SocketStateChanged;
        for p in &mut self.ports {
            let sock = self.sockets.get_mut::<smol_tcp::Socket>(p.handle);
            use smol_tcp::State;
            if p.session.is_none() && matches!(sock.state(), State::Established | State::CloseWait)
            {
                p.session = Some(Session::new(p.mode, app.bytes));
                app.stats.accepted += 1;
                progress = true;
            }
            if let Some(s) = &mut p.session {
                progress |= s.step(&mut SmolIo(sock), &app.pattern, &mut app.buf);
            }
            // Closed: finished, reset or timed out. TIME-WAIT: finished; it would hold the
            // port for its whole timeout, and nothing of this connection is left to deliver.
            if matches!(sock.state(), State::Closed | State::TimeWait) {
                if let Some(s) = p.session.take() {
                    app.stats.record(&s);
                }
                self.sockets.remove(p.handle);
                p.handle = smol_listener(&mut self.sockets, p.port, self.buf)?;
                progress = true;
            }
        }
        Ok(progress)
    }

    fn deadline_us(&mut self, now_us: u64) -> Option<u64> {
        let now = SmolInstant::from_micros(now_us as i64);
        self.iface
            .poll_at(now, &self.sockets)
            .map(|t| t.total_micros().max(0) as u64)
    }
}

// ---------------------------------------------------------------------------------------
// The loop both share.

/// The application's side, the same for both stacks.
pub struct AppCtx {
    pub bytes: u64,
    pub pattern: Pattern,
    /// Where uploads are read into.
    pub buf: Vec<u8>,
    pub stats: ServerStats,
}

impl AppCtx {
    pub fn new(bytes: u64) -> Self {
        AppCtx {
            bytes,
            pattern: Pattern::new(),
            buf: vec![0u8; CHUNK],
            stats: ServerStats::default(),
        }
    }
}

pub enum Server {
    Hydranet(Box<HydranetServer>),
    Smoltcp(Box<SmoltcpServer>),
}

impl Server {
    pub fn new<D: Driver>(o: &ServerOptions, dev: &mut D) -> Result<Server, String> {
        Ok(match o.stack {
            StackKind::Hydranet => Server::Hydranet(Box::new(HydranetServer::new(o)?)),
            StackKind::Smoltcp => Server::Smoltcp(Box::new(SmoltcpServer::new(o, dev)?)),
        })
    }

    /// One round: packets in and out, timers, the application; true when anything moved.
    pub fn pump<D: Driver>(
        &mut self,
        dev: &mut D,
        now_us: u64,
        app: &mut AppCtx,
    ) -> Result<bool, String> {
        match self {
            Server::Hydranet(s) => s.pump(dev, now_us, app),
            Server::Smoltcp(s) => s.pump(dev, now_us, app),
        }
    }

    /// When the stack next needs to run without a packet (microseconds on the same clock).
    pub fn deadline_us(&mut self, now_us: u64) -> Option<u64> {
        match self {
            Server::Hydranet(s) => s.deadline_us(),
            Server::Smoltcp(s) => s.deadline_us(now_us),
        }
    }
}

/// How long to sleep until `deadline`, at most [`IDLE_WAKE`].
pub fn sleep_until(deadline_us: Option<u64>, now_us: u64) -> Duration {
    deadline_us.map_or(IDLE_WAKE, |d| {
        Duration::from_micros(d.saturating_sub(now_us)).min(IDLE_WAKE)
    })
}

/// The server process: opens the device, serves until stopped or `max_secs` pass.
pub fn run(o: &ServerOptions) -> Result<(), String> {
    install_stop_handler();
    let tun = Tun::open(&o.dev).map_err(|e| format!("TUN device {}: {e}", o.dev))?;
    let mut driver = TunDriver::new(tun);
    let mut server = Server::new(o, &mut driver)?;
    let mut app = AppCtx::new(o.bytes);
    let clock = Clock::start();
    let lifetime = Duration::from_secs_f64(o.max_secs.max(0.0));
    let started = std::time::Instant::now();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")
            .and_then(|_| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    eprintln!(
        "hydranet tun-server: {} on {} ({} mtu {}), download :{} ({} bytes), upload :{}, \
         buffers {} bytes",
        o.stack.name(),
        o.addr,
        o.dev,
        driver.tun().mtu(),
        o.download_port,
        o.bytes,
        o.upload_port,
        o.buf
    );
    let fd = driver.tun().as_raw_fd();
    while !stop_requested() && started.elapsed() < lifetime {
        let now = clock.now().total_micros();
        let wait = sleep_until(server.deadline_us(now), now);
        wait_readable(&[fd], Some(wait)).map_err(|e| format!("poll: {e}"))?;
        for _ in 0..MAX_ROUNDS {
            if !server.pump(&mut driver, clock.now().total_micros(), &mut app)? {
                break;
            }
        }
    }
    let (s, t) = (app.stats, driver.stats());
    eprintln!(
        "hydranet tun-server: {} stopping: connections={} completed={} failed={} bytes_out={} \
         bytes_in={} tun_rx_packets={} tun_tx_packets={} tun_tx_errors={}",
        o.stack.name(),
        s.accepted,
        s.completed,
        s.failed,
        s.bytes_out,
        s.bytes_in,
        t.rx_packets,
        t.tx_packets,
        t.tx_errors
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Starting one from a bench.

/// A `tun-server` process started by this one inside a namespace; stopped (SIGTERM, then
/// SIGKILL after 2 s, by its pid) when dropped, also when the bench fails.
pub struct Spawned {
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
}

impl Spawned {
    /// Starts `exe tun-server ...` in namespace `ns` and waits up to `ready_within` for its
    /// `ready`; its standard error goes to `log`.
    pub fn start(
        exe: &std::path::Path,
        ns: &str,
        o: &ServerOptions,
        log: &std::path::Path,
        ready_within: Duration,
    ) -> Result<Spawned, String> {
        use std::io::BufRead as _;
        use std::process::Stdio;
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = crate::netns::command(ns, exe)
            .arg("tun-server")
            .args(["--stack", o.stack.name(), "--dev", &o.dev])
            .args(["--addr", &o.addr.to_string()])
            .args(["--download-port", &o.download_port.to_string()])
            .args(["--upload-port", &o.upload_port.to_string()])
            .args(["--bytes", &o.bytes.to_string(), "--buf", &o.buf.to_string()])
            .args(["--max-secs", &format!("{:.0}", o.max_secs)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawn tun-server in {ns}: {e}"))?;
        let mut me = Spawned {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let stdout = me
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .ok_or("tun-server: no stdout")?;
        // A thread reads the first line, so the wait for it can time out.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(r.map(|_| line));
        });
        match rx.recv_timeout(ready_within) {
            Ok(Ok(line)) if line.trim() == "ready" => Ok(me),
            other => {
                me.stop();
                Err(format!(
                    "tun-server {} in {ns} did not get ready ({other:?}); its log:\n{}",
                    o.stack.name(),
                    me.log_text()
                ))
            }
        }
    }

    /// Stops the server if it runs; idempotent.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The server's pid while it runs (`ip netns exec` execs it, so the child is the server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydranet_core::driver::loopback::LoopbackDriver;
    use hydranet_core::sim::service::bulk_byte;

    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    fn options(stack: StackKind, bytes: u64) -> ServerOptions {
        ServerOptions {
            stack,
            dev: "unused".into(),
            addr: SERVER,
            download_port: 9000,
            upload_port: 9001,
            bytes,
            buf: 128 * 1024,
            max_secs: 1.0,
        }
    }

    /// A core client on the other end of an in-memory link: downloads (checking every byte)
    /// or uploads `bytes` and waits for the server's close; returns what it got or sent.
    fn transfer(kind: StackKind, mode: Mode, bytes: u64) -> (u64, ServerStats) {
        let (mut sdev, mut cdev) = LoopbackDriver::pair(1500, 64);
        let o = options(kind, bytes);
        let mut server = Server::new(&o, &mut sdev).unwrap();
        let mut app = AppCtx::new(bytes);
        let mut client = Stack::new_alloc([3; 16]);
        client.add_address(CLIENT).unwrap();
        let c = client.socket().unwrap();
        let port = match mode {
            Mode::Download => o.download_port,
            Mode::Upload => o.upload_port,
        };
        let mut now = 0u64;
        let _ = client.connect(Instant::ZERO, c, SocketAddrV4::new(SERVER, port));
        let (mut moved, mut shut) = (0u64, false);
        let mut buf = vec![0u8; 8192];
        let mut scratch = vec![0u8; 1500];
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..200_000 {
            let t = Instant::from_micros(now);
            let mut progress = server.pump(&mut sdev, now, &mut app).unwrap();
            progress |= poll_device(&mut client, &mut cdev, &mut cx, t, &mut scratch)
                .unwrap()
                .progress();
            match mode {
                Mode::Download => loop {
                    match client.recv(t, c, &mut buf, 0) {
                        Ok(0) => return (moved, app.stats),
                        Ok(n) => {
                            for (i, b) in buf[..n].iter().enumerate() {
                                assert_eq!(*b, bulk_byte(moved as usize + i), "byte {moved}+{i}");
                            }
                            moved += n as u64;
                            progress = true;
                        }
                        Err(_) => break,
                    }
                },
                Mode::Upload => {
                    while moved < bytes {
                        let chunk = &app.pattern.chunk(moved, bytes - moved).to_vec();
                        match client.send(t, c, chunk, 0) {
                            Ok(n) => {
                                moved += n as u64;
                                progress = true;
                            }
                            Err(_) => break,
                        }
                    }
                    if moved == bytes && !shut {
                        client
                            .shutdown(t, c, hydranet_core::netinet::tcp_usrreq::Shutdown::Write)
                            .unwrap();
                        shut = true;
                    }
                    if shut && matches!(client.recv(t, c, &mut buf, 0), Ok(0)) {
                        return (moved, app.stats);
                    }
                }
            }
            if !progress {
                let next = [
                    server.deadline_us(now),
                    client.poll_timeout().map(|t| t.total_micros()),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("everything idle before the end");
                now = next.max(now + 1);
            }
        }
        panic!("{kind:?} {mode:?}: not finished after 200000 rounds");
    }

    #[test]
    fn both_stacks_serve_downloads_and_uploads() {
        for kind in [StackKind::Hydranet, StackKind::Smoltcp] {
            let (got, stats) = transfer(kind, Mode::Download, 300_000);
            assert_eq!((got, stats.accepted), (300_000, 1), "{kind:?} download");
            let (sent, stats) = transfer(kind, Mode::Upload, 200_000);
            assert_eq!((sent, stats.accepted), (200_000, 1), "{kind:?} upload");
        }
    }

    #[test]
    fn stack_names_parse() {
        assert_eq!("smoltcp".parse::<StackKind>(), Ok(StackKind::Smoltcp));
        assert_eq!("hydranet".parse::<StackKind>(), Ok(StackKind::Hydranet));
        assert!("lwip".parse::<StackKind>().is_err());
        assert_eq!(StackKind::Smoltcp.name(), "smoltcp");
    }

    #[test]
    fn sleeps_are_capped_and_never_negative() {
        assert_eq!(sleep_until(None, 5), IDLE_WAKE);
        assert_eq!(sleep_until(Some(3), 5), Duration::ZERO);
        assert_eq!(sleep_until(Some(1_005), 5), Duration::from_millis(1));
        assert_eq!(sleep_until(Some(u64::MAX), 0), IDLE_WAKE);
    }
}
