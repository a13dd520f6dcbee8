//! `hydranet demo` on the namespace network: a real Linux TCP client (the kernel's, through
//! std::net) downloads a file over HTTP from a service replicated on three host servers while an
//! interactive echo session runs beside it; the primary is killed with SIGKILL a third of the
//! way through and the next primary two thirds of the way; the client must notice nothing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hydranet_core::ft::params::DetectorParams;
use sha2::{Digest, Sha256};

use crate::harness::{Cluster, ClusterSpec, ORIGIN};
use crate::netns;
use crate::services::ServiceSpec;
use crate::simdemo::Report;

pub const HTTP_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 7;
/// One echo line every this often: an interactive session's pace.
const ECHO_PERIOD: Duration = Duration::from_millis(20);
/// The whole download must finish within this, or the run fails rather than hangs.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the client threads tell the conductor.
enum Progress {
    /// `bytes` of the body arrived by `t` seconds.
    Bytes(f64, usize),
    /// The download passed the next kill point.
    KillPoint(usize),
}

/// The outcome of the client side of one run.
#[derive(Debug, Default)]
pub struct ClientResult {
    pub body: usize,
    pub sha: [u8; 32],
    pub resets: u64,
    pub error: Option<String>,
    pub samples: Vec<(f64, usize)>,
    pub longest_gap: Duration,
    pub secs: f64,
    pub echo_lines: usize,
    pub echo_bad: usize,
    pub echo_worst: Duration,
    pub echo_error: Option<String>,
    /// Kernel counters of the client's namespace, after minus before.
    pub kernel_resets: u64,
}

/// The file the replicas serve: deterministic bytes, so its digest is known before the run.
pub fn make_file(path: &Path, size: usize) -> io::Result<[u8; 32]> {
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = Vec::with_capacity(65536);
    let mut left = size;
    while left > 0 {
        chunk.clear();
        while chunk.len() < 65536.min(left) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.extend_from_slice(&x.to_le_bytes()[..8.min(left - chunk.len())]);
        }
        h.update(&chunk);
        f.write_all(&chunk)?;
        left -= chunk.len();
    }
    f.flush()?;
    Ok(h.finalize().into())
}

/// An HTTP/1.1 GET with the kernel's TCP; reports progress and kill points as it reads.
fn download(
    size: usize,
    kill_points: Vec<usize>,
    tx: mpsc::Sender<Progress>,
    r: &mut ClientResult,
) -> io::Result<()> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(
        &SocketAddrV4::new(ORIGIN, HTTP_PORT).into(),
        Duration::from_secs(5),
    )?;
    s.set_read_timeout(Some(DOWNLOAD_TIMEOUT))?;
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: 192.0.2.80\r\nConnection: close\r\n\r\n")?;
    let mut rd = BufReader::with_capacity(256 * 1024, s);
    let mut line = String::new();
    let mut length = None;
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Err(io::Error::other(
                "connection closed inside the response head",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("Content-Length: ") {
            length = v.parse::<usize>().ok();
        }
    }
    if length != Some(size) {
        return Err(io::Error::other(format!(
            "Content-Length {length:?}, expected {size}"
        )));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut last = Instant::now();
    let mut next_kill = 0;
    loop {
        let n = rd.read(&mut buf)?;
        let now = Instant::now();
        if n == 0 {
            break;
        }
        r.longest_gap = r.longest_gap.max(now - last);
        last = now;
        h.update(&buf[..n]);
        r.body += n;
        let t = (now - t0).as_secs_f64();
        r.samples.push((t, r.body));
        let _ = tx.send(Progress::Bytes(t, r.body));
        while next_kill < kill_points.len() && r.body >= kill_points[next_kill] {
            let _ = tx.send(Progress::KillPoint(next_kill));
            next_kill += 1;
        }
    }
    r.secs = (Instant::now() - t0).as_secs_f64();
    r.sha = h.finalize().into();
    Ok(())
}

/// The interactive session: a numbered line every [`ECHO_PERIOD`], each answer checked, until
/// `stop` says the download is over.
fn echo_session(stop: mpsc::Receiver<()>, r: &mut ClientResult) -> io::Result<()> {
    let s = TcpStream::connect_timeout(
        &SocketAddrV4::new(ORIGIN, ECHO_PORT).into(),
        Duration::from_secs(5),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut rd = BufReader::new(s);
    let mut line = String::new();
    for n in 0.. {
        if stop.try_recv().is_ok() {
            break;
        }
        let msg = format!("hydranet echo line {n}\n");
        let t = Instant::now();
        w.write_all(msg.as_bytes())?;
        line.clear();
        rd.read_line(&mut line)?;
        r.echo_worst = r.echo_worst.max(t.elapsed());
        r.echo_lines += 1;
        if line != msg {
            r.echo_bad += 1;
        }
        std::thread::sleep(ECHO_PERIOD);
    }
    w.shutdown(std::net::Shutdown::Write)?;
    line.clear();
    if rd.read_line(&mut line)? != 0 {
        r.echo_bad += 1;
    }
    Ok(())
}

/// Options of a run.
pub struct DemoOptions {
    pub size: usize,
    pub out: PathBuf,
    pub pcap: Option<PathBuf>,
    pub detector: DetectorParams,
    pub quiet: bool,
}

/// One run: a fresh deployment, the download and the echo session, two kills.
pub fn run_once(opts: &DemoOptions, exe: &Path) -> Result<(Report, ClientResult), String> {
    let www = std::env::temp_dir().join(format!("hydranet-www-{}", std::process::id()));
    std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _www_guard = RemoveDir(www.clone());
    let want = make_file(&www.join("big.bin"), opts.size).map_err(|e| e.to_string())?;

    let mut cluster = Cluster::start(ClusterSpec {
        hosts: 3,
        services: vec![
            (HTTP_PORT, ServiceSpec::Http(www.clone())),
            (ECHO_PORT, ServiceSpec::Echo),
        ],
        detector: opts.detector,
        pcap: opts.pcap.clone(),
        exe: exe.to_path_buf(),
        placed: Vec::new(),
        sysctl: crate::harness::host_sysctl_default(),
    })?;
    // A live progress line only on a terminal; in a log, just the events.
    let tty = io::IsTerminal::is_terminal(&io::stdout());
    let say = |s: &str| {
        if !opts.quiet {
            println!("{}{s}", if tty { "\r\x1b[2K" } else { "" });
        }
    };
    say(&format!(
        "  network up: client {} -> redirector {} -> replicas {}",
        cluster.topo.client_addrs[0],
        cluster.topo.redirector_addr,
        cluster
            .topo
            .host_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let size = opts.size;
    let (tx, rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let client_ns = cluster.topo.client_ns.clone();
    let client = std::thread::spawn(move || {
        let echo = std::thread::spawn({
            let ns = client_ns.clone();
            move || {
                let mut r = ClientResult::default();
                if let Err(e) = netns::enter(&ns) {
                    r.echo_error = Some(format!("client namespace: {e}"));
                    return r;
                }
                if let Err(e) = echo_session(stop_rx, &mut r) {
                    if netns::is_reset(&e) {
                        r.resets += 1;
                    }
                    r.echo_error = Some(e.to_string());
                }
                r
            }
        });
        let mut r = ClientResult::default();
        if let Err(e) = netns::enter(&client_ns) {
            r.error = Some(format!("client namespace: {e}"));
            return r;
        }
        let before = netns::kernel_resets();
        if let Err(e) = download(size, vec![size / 3, 2 * size / 3], tx, &mut r) {
            if netns::is_reset(&e) {
                r.resets += 1;
            }
            r.error = Some(e.to_string());
        }
        let _ = stop_tx.send(());
        let e = echo.join().unwrap_or_default();
        r.echo_lines = e.echo_lines;
        r.echo_bad = e.echo_bad;
        r.echo_worst = e.echo_worst;
        r.echo_error = e.echo_error;
        r.resets += e.resets;
        r.kernel_resets = netns::kernel_resets().saturating_sub(before);
        r
    });

    let t0 = Instant::now();
    let mut primaries = vec![(0.0, cluster.primary(HTTP_PORT).unwrap_or(0))];
    let mut kills = Vec::new();
    let mut awaiting_primary = false;
    let mut last_print = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(Progress::Bytes(t, b)) => {
                if tty && !opts.quiet && last_print.elapsed() > Duration::from_millis(250) {
                    last_print = Instant::now();
                    print!(
                        "\r  {:>6.1} MB of {:.1} MB  {:>6.2} s",
                        b as f64 / 1e6,
                        size as f64 / 1e6,
                        t
                    );
                    let _ = io::stdout().flush();
                }
            }
            Ok(Progress::KillPoint(k)) => {
                let victim = cluster.primary(HTTP_PORT).unwrap_or(k);
                let t = t0.elapsed().as_secs_f64();
                cluster.kill_host(victim);
                kills.push((t, victim));
                awaiting_primary = true;
                say(&format!(
                    "  {t:.3} s: killed replica {victim} (the primary) with SIGKILL at {}/3 of the download",
                    k + 1
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if awaiting_primary {
            if let Some(p) = cluster.primary(HTTP_PORT) {
                let t = t0.elapsed().as_secs_f64();
                primaries.push((t, p));
                awaiting_primary = false;
                say(&format!("  {t:.3} s: replica {p} is primary"));
            }
        }
        if t0.elapsed() > DOWNLOAD_TIMEOUT + Duration::from_secs(10) {
            break;
        }
    }
    let r = client
        .join()
        .map_err(|_| "the client thread panicked".to_string())?;
    if tty && !opts.quiet {
        print!("\r\x1b[2K");
    }
    if r.error.is_some() || r.echo_error.is_some() {
        eprintln!("daemon logs:\n{}", cluster.logs());
    }
    let report = Report {
        bytes: r.body,
        expected: size,
        sha_equal: r.sha == want && r.body == size,
        resets: r.resets + r.kernel_resets,
        violations: 0,
        longest_stall_ms: r.longest_gap.as_millis() as u64,
        virtual_secs: r.secs,
        primaries,
        kills,
        echo_ok: r.echo_error.is_none() && r.echo_bad == 0 && r.echo_lines > 0,
        samples: r.samples.clone(),
    };
    drop(cluster);
    Ok((report, r))
}
