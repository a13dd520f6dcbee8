//! `hydranet bench`: measurements on the namespace network with the kernel's own TCP as the
//! client.
//!
//! * [`failover`]: how long a client stalls when the primary is killed, for each failure
//!   detector setting, in a download and an upload.
//! * [`schemes`]: throughput of plain TCP to a host server, redirection without fault
//!   tolerance, and groups of 1, 2 and 3 replicas, over a range of transfer sizes.
//! * [`path`]: Linux TCP across a veth pair against a Linux client to servers on a TUN device:
//!   the core's plain Stack, smoltcp (both `hydranet tun-server`) and the host daemon.
//! * `stream` ([`crate::bench_stream`]): a paced frame stream's lateness across a primary kill.
//!
//! This machine is shared and small, so absolute figures move from run to run: every bench
//! measures the things it compares in one run, interleaved, and reports ratios beside them.
//! Figures are printed and written (CSV and SVG), never asserted.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hydranet_core::ft::params::DetectorParams;
use hydranet_core::sim::service::bulk_byte;
use sha2::{Digest, Sha256};

use crate::harness::{Cluster, ClusterSpec, Placement};
use crate::netns;
use crate::services::ServiceSpec;

/// Where benches write when `--out` is not given.
pub const DEFAULT_OUT: &str = "target/hydranet-bench";

/// Parses `16K`, `1M`, `64M`, `1G` or a plain byte count (K = 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1usize << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 65536, 64K, 1M)"))
}

/// Parses a comma-separated list of [`parse_size`] sizes.
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, String> {
    s.split(',').map(parse_size).collect()
}

/// `16K`, `1M`, `1536`: the short form of a size for tables.
pub fn size_label(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{}K", n >> 10)
    } else {
        n.to_string()
    }
}

/// The `p`-th percentile (0..=100) of `v` by nearest rank; `None` for no values.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

pub fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 50.0)
}

pub(crate) fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// The kernel's view of a TCP socket (TCP_INFO).
pub fn tcp_info(s: &TcpStream) -> io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes into it and
    // a shorter answer from an older kernel leaves the rest zero.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(info)
    }
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A progress line that rewrites itself on a terminal and is a plain line in a log.
pub(crate) struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            tty: io::IsTerminal::is_terminal(&io::stdout()),
            last: Instant::now() - Duration::from_secs(10),
        }
    }
    /// Shown at most every 2 s in a log, so a long run leaves a readable trail.
    pub(crate) fn say(&mut self, s: &str) {
        if self.tty {
            print!("\r\x1b[2K  {s}");
            let _ = io::stdout().flush();
        } else if self.last.elapsed() >= Duration::from_secs(2) {
            println!("  {s}");
            self.last = Instant::now();
        }
    }
    pub(crate) fn done(&self) {
        if self.tty {
            print!("\r\x1b[2K");
            let _ = io::stdout().flush();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plots, written by hand: a line plot (optionally log axes) and a bar chart.

/// One line of a plot.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Tick positions for `lo..=hi`: powers of `base` on a log axis, about five round steps on a
/// linear one.
fn ticks(lo: f64, hi: f64, log_base: Option<f64>) -> Vec<f64> {
    match log_base {
        Some(b) => {
            let (a, z) = (lo.log(b).floor() as i32, hi.log(b).ceil() as i32);
            let step = ((z - a) / 8).max(1);
            (a..=z)
                .step_by(step as usize)
                .map(|e| b.powi(e))
                .filter(|t| *t >= lo * 0.999 && *t <= hi * 1.001)
                .collect()
        }
        None => {
            let raw = (hi - lo) / 5.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * mag)
                .find(|s| *s >= raw)
                .unwrap_or(raw);
            let mut t = (lo / step).ceil() * step;
            let mut v = Vec::new();
            while t <= hi + step * 1e-9 && v.len() < 20 {
                v.push(t);
                t += step;
            }
            v
        }
    }
}

fn tick_label(v: f64, log_base: Option<f64>) -> String {
    if log_base == Some(2.0) && v >= 1024.0 {
        size_label(v.round() as usize)
    } else if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line plot. `log_x`/`log_y` give the base of a logarithmic axis.
pub fn line_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: Option<f64>,
    log_y: Option<f64>,
) -> String {
    let (w, h, ml, mr, mt, mb) = (860.0, 440.0, 70.0, 190.0, 40.0, 50.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .filter(|(x, y)| (log_x.is_none() || *x > 0.0) && (log_y.is_none() || *y > 0.0))
        .collect();
    let fold = |f: fn(&(f64, f64)) -> f64, min: bool| {
        all.iter().map(f).fold(
            if min {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            },
            |a, b| if min { a.min(b) } else { a.max(b) },
        )
    };
    let (mut x0, mut x1) = (fold(|p| p.0, true), fold(|p| p.0, false));
    let (mut y0, mut y1) = (fold(|p| p.1, true), fold(|p| p.1, false));
    if all.is_empty() {
        (x0, x1, y0, y1) = (1.0, 2.0, 1.0, 2.0);
    }
    if log_y.is_none() {
        y0 = y0.min(0.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    if log_y.is_some() {
        y0 /= 1.5;
        y1 *= 1.5;
    } else {
        y1 *= 1.05;
    }
    let tr = |v: f64, lo: f64, hi: f64, log: Option<f64>| match log {
        Some(_) => (v.ln() - lo.ln()) / (hi.ln() - lo.ln()),
        None => (v - lo) / (hi - lo),
    };
    let px = |x: f64| ml + (w - ml - mr) * tr(x, x0, x1, log_x);
    let py = |y: f64| h - mb - (h - mt - mb) * tr(y, y0, y1, log_y);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/><text x="{ml}" y="24" font-size="15">{}</text>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{ml}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{ml}" y1="{mt}" x2="{ml}" y2="{0}" stroke="black"/>"#,
        h - mb,
        w - mr
    );
    for t in ticks(x0, x1, log_x) {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{mt}" x2="{0:.1}" y2="{1}" stroke="#ddd"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
            px(t),
            h - mb,
            h - mb + 16.0,
            tick_label(t, log_x)
        );
    }
    for t in ticks(y0, y1, log_y) {
        let _ = write!(
            s,
            r##"<line x1="{ml}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            py(t),
            w - mr,
            ml - 6.0,
            py(t) + 4.0,
            tick_label(t, log_y)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        (ml + w - mr) / 2.0,
        h - 12.0,
        esc(x_label),
        (mt + h - mb) / 2.0,
        (mt + h - mb) / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = se
            .points
            .iter()
            .filter(|(x, y)| (log_x.is_none() || *x > 0.0) && (log_y.is_none() || *y > 0.0))
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{c}"/>"#);
        }
        let ly = mt + 10.0 + 18.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            w - mr + 12.0,
            ly - 4.0,
            w - mr + 32.0,
            ly + 1.0,
            esc(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A horizontal bar chart of `(label, value)`.
pub fn bars_svg(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    let (w, ml, mr, mt, bh) = (860.0, 300.0, 110.0, 44.0, 26.0);
    let h = mt + bh * bars.len() as f64 + 20.0;
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/><text x="10" y="24" font-size="15">{}</text>"#,
        esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = mt + bh * i as f64;
        let len = (w - ml - mr) * v / max;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{ml}" y="{}" width="{len:.1}" height="{}" fill="{}"/><text x="{}" y="{}">{v:.1} {}</text>"#,
            ml - 8.0,
            y + bh * 0.6,
            esc(label),
            y + 3.0,
            bh - 6.0,
            COLOURS[i % COLOURS.len()],
            ml + len + 6.0,
            y + bh * 0.6,
            esc(unit)
        );
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------------------
// Failover.

const BULK_PORT: u16 = 9000;
const DIGEST_PORT: u16 = 9001;
/// How often the conductor samples the client socket's TCP_INFO: the resolution of the
/// upload stall and of the kill points.
const SAMPLE: Duration = Duration::from_millis(1);
/// A failed transfer makes the next ones of the same setting unlikely to differ: after this
/// many in a row without a takeover the setting is reported and left.
const GIVE_UP_AFTER: usize = 2;

/// A transfer direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The client receives (bulk service).
    Download,
    /// The client sends (digest service).
    Upload,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Download => "download",
            Dir::Upload => "upload",
        }
    }
}

/// A failure-detector setting under test.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub name: &'static str,
    pub params: DetectorParams,
}

/// The three settings issue 5 compares: heartbeats alone, the paper's client-retransmission
/// count alone, and both (the default).
pub fn settings() -> Vec<Setting> {
    let both = DetectorParams::default();
    vec![
        Setting {
            name: "heartbeat 10/30 ms",
            params: DetectorParams {
                retransmit_threshold: 0,
                heartbeat_interval_ms: 10,
                heartbeat_timeout_ms: 30,
                ..both
            },
        },
        Setting {
            name: "retransmit 2 in 1000 ms",
            params: DetectorParams {
                retransmit_threshold: 2,
                retransmit_window_ms: 1000,
                heartbeat_interval_ms: 0,
                ..both
            },
        },
        Setting {
            name: "both (default)",
            params: both,
        },
    ]
}

pub struct FailoverOptions {
    pub kills: usize,
    pub size: usize,
    /// A kill with no byte moving for this long counts as "no takeover".
    pub takeover_timeout: Duration,
    /// No new deployment is started after this much time.
    pub budget: Duration,
    pub out: PathBuf,
    pub exe: PathBuf,
}

/// One kill as the client saw it.
#[derive(Clone, Debug)]
pub struct Kill {
    /// `None`: nothing moved within the takeover timeout.
    pub stall_ms: Option<f64>,
    /// The client's RTO when the primary died, and the largest it reached before bytes moved
    /// again (it backs off while nobody answers).
    pub rto_ms: f64,
    pub rto_max_ms: f64,
}

/// One transfer with its kills.
#[derive(Debug, Default)]
pub struct Transfer {
    pub kills: Vec<Kill>,
    pub resets: u64,
    pub complete: bool,
    pub error: Option<String>,
}

/// What the client thread hands back.
#[derive(Default)]
struct ClientEnd {
    /// Download: when each read returned and the bytes so far.
    reads: Vec<(Instant, u64)>,
    bytes: u64,
    content_ok: bool,
    reset: bool,
    kernel_resets: u64,
    error: Option<String>,
}

fn client_download(s: &TcpStream, size: usize, end: &mut ClientEnd) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut r = s;
    let mut ok = true;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let at = end.bytes as usize;
        ok &= buf[..n]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == bulk_byte(at + i));
        end.bytes += n as u64;
        end.reads.push((Instant::now(), end.bytes));
    }
    end.content_ok = ok && end.bytes == size as u64;
    Ok(())
}

fn client_upload(s: &TcpStream, size: usize, end: &mut ClientEnd) -> io::Result<()> {
    let mut w = s;
    let mut h = Sha256::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    while sent < size {
        let n = chunk.len().min(size - sent);
        for (i, b) in chunk[..n].iter_mut().enumerate() {
            *b = bulk_byte(sent + i);
        }
        w.write_all(&chunk[..n])?;
        h.update(&chunk[..n]);
        sent += n;
        end.bytes = sent as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let want: String = h
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    end.content_ok = line.trim_end() == want;
    Ok(())
}

/// The longest gap between successive progress times `t` that ends after `from` and no
/// later than `to`: the stall a kill at `from` caused, when the next kill is at `to` (the
/// next kill waits for bytes to move again, so the gap across it is its own).
fn stall_after(t: &[Instant], from: Instant, to: Option<Instant>) -> Option<Duration> {
    t.windows(2)
        .filter(|w| w[1] > from && to.is_none_or(|to| w[1] <= to))
        .map(|w| w[1] - w[0])
        .max()
}

/// One deployment of three hosts, one transfer, the primary killed at a third and the next
/// primary at two thirds of it.
pub fn failover_transfer(
    exe: &Path,
    setting: &Setting,
    dir: Dir,
    size: usize,
    takeover_timeout: Duration,
) -> Result<Transfer, String> {
    let (port, service) = match dir {
        Dir::Download => (BULK_PORT, ServiceSpec::Bulk(size as u64)),
        Dir::Upload => (DIGEST_PORT, ServiceSpec::Digest),
    };
    let mut spec = ClusterSpec::new(3, vec![(port, service)], exe.to_path_buf());
    spec.detector = setting.params;
    let mut cluster = Cluster::start(spec)?;
    let addr = cluster.service_addr(port);
    let ns = cluster.topo.client_ns.clone();
    let (sock_tx, sock_rx) = mpsc::channel::<TcpStream>();
    let client = std::thread::spawn(move || {
        let mut end = ClientEnd::default();
        if let Err(e) = netns::enter(&ns) {
            end.error = Some(format!("client namespace: {e}"));
            return end;
        }
        let before = netns::kernel_resets();
        let run = (|| -> io::Result<()> {
            let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))?;
            // A stuck transfer ends by the conductor's shutdown; these only guard against the
            // conductor itself being gone.
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            s.set_write_timeout(Some(Duration::from_secs(120)))?;
            let _ = sock_tx.send(s.try_clone()?);
            match dir {
                Dir::Download => client_download(&s, size, &mut end),
                Dir::Upload => client_upload(&s, size, &mut end),
            }
        })();
        if let Err(e) = run {
            end.reset = netns::is_reset(&e);
            end.error = Some(e.to_string());
        }
        end.kernel_resets = netns::kernel_resets().saturating_sub(before);
        end
    });
    let sock = match sock_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(s) => s,
        Err(_) => {
            let end = client.join().unwrap_or_default();
            return Err(format!(
                "the client did not connect: {}",
                end.error.unwrap_or_default()
            ));
        }
    };

    // The conductor: samples the client socket, kills at the thirds, gives up on a stall.
    let mut progress_at: Vec<Instant> = Vec::new();
    let mut last_progress = 0u64;
    let mut kill_at: Vec<Instant> = Vec::new();
    let mut rto: Vec<(f64, f64)> = Vec::new();
    let mut victim = cluster.primary(port).unwrap_or(0);
    let mut awaiting = false;
    let mut timed_out = false;
    let hard_deadline = Instant::now() + Duration::from_secs(300);
    while !client.is_finished() {
        std::thread::sleep(SAMPLE);
        let Ok(info) = tcp_info(&sock) else { break };
        let now = Instant::now();
        let moved = match dir {
            Dir::Download => info.tcpi_bytes_received,
            Dir::Upload => info.tcpi_bytes_acked,
        };
        if moved != last_progress {
            last_progress = moved;
            progress_at.push(now);
            if awaiting {
                awaiting = false;
                victim = cluster.primary(port).unwrap_or(victim);
            }
        }
        if let Some(r) = rto.last_mut().filter(|_| awaiting) {
            r.1 = r.1.max(info.tcpi_rto as f64 / 1000.0);
        }
        let k = kill_at.len();
        if k < 2 && !awaiting && moved >= (k as u64 + 1) * size as u64 / 3 {
            rto.push((info.tcpi_rto as f64 / 1000.0, info.tcpi_rto as f64 / 1000.0));
            cluster.kill_host(victim);
            kill_at.push(Instant::now());
            awaiting = true;
        }
        let stuck = progress_at
            .last()
            .is_some_and(|t| now - *t > takeover_timeout)
            && kill_at.last().is_some_and(|t| now - *t > takeover_timeout);
        if stuck || now > hard_deadline {
            timed_out = true;
            note_no_takeover(&cluster, port);
            let _ = sock.shutdown(Shutdown::Both);
            break;
        }
    }
    let end = client
        .join()
        .map_err(|_| "the client thread panicked".to_string())?;
    let times: Vec<Instant> = match dir {
        Dir::Download => end.reads.iter().map(|r| r.0).collect(),
        Dir::Upload => progress_at,
    };
    let mut t = Transfer {
        resets: end.kernel_resets + u64::from(end.reset),
        complete: end.content_ok && !timed_out,
        error: end.error.clone(),
        ..Default::default()
    };
    for (i, &at) in kill_at.iter().enumerate() {
        let unanswered = timed_out && i + 1 == kill_at.len();
        let stall = if unanswered {
            None
        } else {
            stall_after(&times, at, kill_at.get(i + 1).copied())
        };
        t.kills.push(Kill {
            stall_ms: stall.map(|d| d.as_secs_f64() * 1000.0),
            rto_ms: rto[i].0,
            rto_max_ms: rto[i].1,
        });
    }
    if t.error.is_some() && !timed_out {
        eprintln!("  transfer error: {}", t.error.as_deref().unwrap_or(""));
    }
    drop(cluster);
    Ok(t)
}

/// What the surviving replicas saw when nothing took over: whether the client's
/// retransmissions reached them as duplicates (what the retransmission detector counts) or
/// fell outside their window.
fn note_no_takeover(c: &Cluster, port: u16) {
    const KEYS: [&str; 17] = [
        "ft.takeovers",
        "ft.client_retransmits",
        "ft.retransmits_settling",
        "ft.step_downs",
        "ft.progress_sent",
        "ft.progress_rcvd",
        "ft.deliver_sent",
        "ft.deliver_rcvd",
        "ft.backups_dropped",
        "tcp.rcvduppack",
        "tcp.rcvpartduppack",
        "tcp.rcvpackafterwin",
        "tcp.rcvwinprobe",
        "tcp.rcvacktooold",
        "tcp.rcvghostack",
        "tcp.rcvacktoomuch",
        "tcp.pawsdrop",
    ];
    let mut parts = Vec::new();
    for i in (0..c.spec.hosts).filter(|&i| c.host_alive(i)) {
        let Ok(all) =
            crate::harness::call(c.host_ctl(i), &hydranet_syscalls::ctl::Request::Counters)
        else {
            continue;
        };
        let mut v: Vec<String> = KEYS
            .iter()
            .filter_map(|k| Some(format!("{k}={}", crate::harness::counter(&all, k)?)))
            .collect();
        // The ack channel's own drops say whether the new view reached the others.
        v.extend(
            all.split(' ')
                .filter(|f| f.starts_with(&format!("chan@{}:{port}.", crate::harness::ORIGIN)))
                .filter(|f| !f.ends_with("=0"))
                .map(|f| f.to_string()),
        );
        parts.push(format!("host {i}: {}", v.join(" ")));
    }
    eprintln!(
        "  no takeover on port {port}; surviving replicas: {}",
        parts.join("; ")
    );
}

/// The counters of host `i` that tell a smooth transfer from one that recovered from loss
/// or waited on a timer, non-zero ones only.
pub(crate) fn recovery_counters(c: &Cluster, i: usize) -> String {
    const KEYS: [&str; 12] = [
        "tcp.sndrexmitpack",
        "tcp.rexmttimeo",
        "tcp.persisttimeo",
        "tcp.rcvoopack",
        "tcp.rcvpackafterwin",
        "tcp.rcvduppack",
        "ft.missing_sent",
        "ft.missing_rcvd",
        "ft.chan_queue_full",
        "ft.deliveries_lost",
        "ft.backups_dropped",
        "tun.tx_errors",
    ];
    let Ok(all) = crate::harness::call(c.host_ctl(i), &hydranet_syscalls::ctl::Request::Counters)
    else {
        return "no answer".into();
    };
    let v: Vec<String> = KEYS
        .iter()
        .filter_map(|k| {
            let n = crate::harness::counter(&all, k)?;
            (n > 0).then(|| format!("{k}={n}"))
        })
        .collect();
    if v.is_empty() {
        "all zero".into()
    } else {
        v.join(" ")
    }
}

/// The figures of one setting and direction.
#[derive(Debug, Default)]
pub struct FailoverRow {
    pub setting: String,
    pub dir: String,
    pub kills: usize,
    pub stalls: Vec<f64>,
    pub no_takeover: usize,
    pub rto: Vec<f64>,
    pub rto_max: Vec<f64>,
    pub resets: u64,
    pub transfers: usize,
    pub complete: usize,
    pub skipped: usize,
}

pub fn failover(o: &FailoverOptions) -> Result<Vec<FailoverRow>, String> {
    netns::capable()?;
    let t0 = Instant::now();
    let per = o.kills.div_ceil(2).max(1);
    println!(
        "bench failover: {} kills per setting and direction ({} deployments of 3 hosts, 2 kills \
         each), {} bytes per transfer; no takeover = nothing moved for {:.1} s; time budget {} s",
        per * 2,
        per,
        o.size,
        o.takeover_timeout.as_secs_f64(),
        o.budget.as_secs()
    );
    let mut rows = Vec::new();
    let mut csv = String::from("setting,direction,transfer,kill,stall_ms,client_rto_ms,client_rto_max_ms,resets,complete\n");
    let mut prog = Progress::new();
    let mut over_budget = false;
    for dir in [Dir::Download, Dir::Upload] {
        for s in settings() {
            let mut row = FailoverRow {
                setting: s.name.to_string(),
                dir: dir.name().to_string(),
                ..Default::default()
            };
            let mut fails_in_a_row = 0;
            for n in 0..per {
                if t0.elapsed() > o.budget {
                    over_budget = true;
                    row.skipped = per - n;
                    break;
                }
                if fails_in_a_row >= GIVE_UP_AFTER {
                    row.skipped = per - n;
                    break;
                }
                prog.say(&format!(
                    "{} / {}: transfer {} of {per}, {:.0} s so far",
                    dir.name(),
                    s.name,
                    n + 1,
                    t0.elapsed().as_secs_f64()
                ));
                let t = match failover_transfer(&o.exe, &s, dir, o.size, o.takeover_timeout) {
                    Ok(t) => t,
                    Err(e) => {
                        prog.done();
                        eprintln!("  deployment failed: {e}");
                        fails_in_a_row += 1;
                        continue;
                    }
                };
                row.transfers += 1;
                row.complete += usize::from(t.complete);
                row.resets += t.resets;
                let mut any_missing = false;
                for (k, kill) in t.kills.iter().enumerate() {
                    row.kills += 1;
                    row.rto.push(kill.rto_ms);
                    row.rto_max.push(kill.rto_max_ms);
                    match kill.stall_ms {
                        Some(ms) => row.stalls.push(ms),
                        None => {
                            row.no_takeover += 1;
                            any_missing = true;
                        }
                    }
                    let _ = writeln!(
                        csv,
                        "{},{},{n},{k},{},{:.1},{:.1},{},{}",
                        s.name,
                        dir.name(),
                        kill.stall_ms.map_or("none".into(), |m| format!("{m:.2}")),
                        kill.rto_ms,
                        kill.rto_max_ms,
                        t.resets,
                        t.complete
                    );
                }
                fails_in_a_row = if any_missing { fails_in_a_row + 1 } else { 0 };
            }
            prog.done();
            print_failover_row(&row, o.takeover_timeout);
            rows.push(row);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!();
    print_failover_table(&rows, o.takeover_timeout);
    println!(
        "total run time {secs:.0} s{}",
        if over_budget {
            " (time budget reached: the rest was skipped)"
        } else {
            ""
        }
    );
    let csv_path = o.out.join("failover.csv");
    write_file(&csv_path, &csv)?;
    let mut series = Vec::new();
    for r in &rows {
        let mut v = r.stalls.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let pts = v
            .iter()
            .enumerate()
            .map(|(i, ms)| (100.0 * (i + 1) as f64 / n, *ms))
            .collect();
        if !v.is_empty() {
            series.push(Series {
                name: format!("{} {}", r.dir, r.setting),
                points: pts,
            });
        }
    }
    let svg_path = o.out.join("failover.svg");
    write_file(
        &svg_path,
        &line_svg(
            "Client-visible stall per primary kill (sorted), by failure detector",
            "percent of kills",
            "stall (ms, log)",
            &series,
            None,
            Some(10.0),
        ),
    )?;
    println!("wrote {} and {}", csv_path.display(), svg_path.display());
    Ok(rows)
}

fn print_failover_row(r: &FailoverRow, timeout: Duration) {
    println!(
        "  {:<8} {:<24} {} kills: stall p50 {} ms, max {} ms, no takeover {}, resets {}{}",
        r.dir,
        r.setting,
        r.kills,
        fmt_opt(median(&r.stalls), 1),
        fmt_opt(percentile(&r.stalls, 100.0), 1),
        r.no_takeover,
        r.resets,
        if r.no_takeover > 0 {
            format!(" (no takeover within {:.1} s)", timeout.as_secs_f64())
        } else {
            String::new()
        }
    );
}

pub fn print_failover_table(rows: &[FailoverRow], timeout: Duration) {
    println!(
        "{:<9}{:<25}{:>6}{:>10}{:>10}{:>10}{:>8}{:>9}{:>10}{:>11}{:>9}",
        "dir",
        "detector",
        "kills",
        "p50 ms",
        "p99 ms",
        "max ms",
        "resets",
        "complete",
        "no-takeov",
        "client RTO",
        "RTO max"
    );
    for r in rows {
        println!(
            "{:<9}{:<25}{:>6}{:>10}{:>10}{:>10}{:>8}{:>9}{:>10}{:>11}{:>9}",
            r.dir,
            r.setting,
            r.kills,
            fmt_opt(median(&r.stalls), 1),
            fmt_opt(percentile(&r.stalls, 99.0), 1),
            fmt_opt(percentile(&r.stalls, 100.0), 1),
            r.resets,
            format!("{}/{}", r.complete, r.transfers),
            r.no_takeover,
            fmt_opt(median(&r.rto), 0),
            fmt_opt(percentile(&r.rto_max, 100.0), 0),
        );
        if r.no_takeover > 0 || r.skipped > 0 {
            println!(
                "{:<34}-> no takeover within {:.1} s in {} of {} kills{}",
                "",
                timeout.as_secs_f64(),
                r.no_takeover,
                r.kills,
                if r.skipped > 0 {
                    format!("; {} further transfers skipped", r.skipped)
                } else {
                    String::new()
                }
            );
        }
    }
    println!("(stall: longest pause of the client's reads (download) or of its bytes acked (upload) after a kill; RTO in ms from the client's TCP_INFO at the kill, and the largest it backed off to; resets: Tcp.EstabResets plus ECONNRESET; required 0)");
}

// ---------------------------------------------------------------------------------------
// Schemes.

/// The deployments `schemes` compares, in table order.
pub const SCHEMES: [(&str, Placement); 5] = [
    ("direct", Placement::Direct),
    ("redirect", Placement::Redirected),
    ("FT-1", Placement::Replicated(1)),
    ("FT-2", Placement::Replicated(2)),
    ("FT-3", Placement::Replicated(3)),
];
const HTTP_BASE: u16 = 8000;
const DISCARD_BASE: u16 = 8100;

pub struct SchemesOptions {
    pub sizes: Vec<usize>,
    pub bulk: usize,
    pub repeat: usize,
    pub out: PathBuf,
    pub exe: PathBuf,
}

fn file_name(size: usize) -> String {
    format!("f{size}.bin")
}

/// GET of one file; bytes of body per second, from connect to the last byte.
fn http_get(addr: SocketAddrV4, size: usize) -> io::Result<f64> {
    let t = Instant::now();
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_nodelay(true)?;
    let mut w = &s;
    write!(
        w,
        "GET /{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        file_name(size),
        addr.ip()
    )?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    let mut r = &s;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    let secs = t.elapsed().as_secs_f64();
    // The response head is a little over 100 bytes; what counts is the whole body arrived.
    if total < size {
        return Err(io::Error::other(format!("{total} bytes of {size}")));
    }
    Ok(size as f64 / secs)
}

/// Sends `size` bytes to a discard service and waits for its close: the server has read all.
fn upload_discard(addr: SocketAddrV4, size: usize, chunk: &[u8]) -> io::Result<f64> {
    let t = Instant::now();
    let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut left = size;
    let mut w = &s;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n])?;
        left -= n;
    }
    s.shutdown(Shutdown::Write)?;
    let mut r = &s;
    let mut b = [0u8; 64];
    while r.read(&mut b)? > 0 {}
    Ok(size as f64 / t.elapsed().as_secs_f64())
}

/// One point of the schemes table.
#[derive(Clone, Debug)]
pub struct SchemePoint {
    pub dir: Dir,
    pub size: usize,
    pub scheme: &'static str,
    /// Median throughput in MB/s (10^6 bytes), and how many transfers failed.
    pub mbps: Option<f64>,
    pub failed: usize,
}

pub fn schemes(o: &SchemesOptions) -> Result<Vec<SchemePoint>, String> {
    netns::capable()?;
    let t0 = Instant::now();
    let mut sizes = o.sizes.clone();
    sizes.push(o.bulk);
    let www = std::env::temp_dir().join(format!("hydranet-bench-www-{}", std::process::id()));
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
    let _guard = RemoveDir(www.clone());
    for &s in &sizes {
        crate::netdemo::make_file(&www.join(file_name(s)), s).map_err(|e| e.to_string())?;
    }
    // A host server holds at most four groups (hydranet_core::ft::host::MAX_GROUPS), so
    // downloads and uploads each get a deployment of their own; both stay up and the rounds
    // alternate between them, so a busy machine slows every point alike.
    let mut clusters = Vec::new();
    for d in 0..2 {
        let mut spec = ClusterSpec::new(3, Vec::new(), o.exe.clone());
        for (i, (_, how)) in SCHEMES.iter().enumerate() {
            spec.placed.push(if d == 0 {
                (HTTP_BASE + i as u16, ServiceSpec::Http(www.clone()), *how)
            } else {
                (DISCARD_BASE + i as u16, ServiceSpec::Discard, *how)
            });
        }
        clusters.push(Cluster::start(spec)?);
    }
    let http: Vec<SocketAddrV4> = (0..SCHEMES.len())
        .map(|i| clusters[0].service_addr(HTTP_BASE + i as u16))
        .collect();
    let discard: Vec<SocketAddrV4> = (0..SCHEMES.len())
        .map(|i| clusters[1].service_addr(DISCARD_BASE + i as u16))
        .collect();
    println!(
        "bench schemes: median of {} transfers per point, schemes interleaved in every round; \
         direct = {}, the others via the redirector to {}",
        o.repeat,
        http[0].ip(),
        http[1].ip()
    );
    let repeat = o.repeat.max(1);
    // One client thread per deployment (a socket belongs to its creator's namespace), each
    // running the transfers it is handed, one at a time.
    type Job = (usize, usize);
    let mut workers = Vec::new();
    for (d, c) in clusters.iter().enumerate() {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (res_tx, res_rx) = mpsc::channel::<io::Result<f64>>();
        let ns = c.topo.client_ns.clone();
        let addrs = if d == 0 {
            http.clone()
        } else {
            discard.clone()
        };
        let h = std::thread::spawn(move || {
            if let Err(e) = netns::enter(&ns) {
                let _ = res_tx.send(Err(e));
                return;
            }
            let chunk: Vec<u8> = (0..256 * 1024).map(bulk_byte).collect();
            for (k, size) in job_rx {
                let r = if d == 0 {
                    http_get(addrs[k], size)
                } else {
                    upload_discard(addrs[k], size, &chunk)
                };
                if res_tx.send(r).is_err() {
                    break;
                }
            }
        });
        workers.push((job_tx, res_rx, h));
    }
    // [dir][size][scheme] -> samples (MB/s); a failed transfer leaves no sample.
    let mut res = vec![vec![vec![Vec::<f64>::new(); SCHEMES.len()]; sizes.len()]; 2];
    let mut prog = Progress::new();
    for rep in 0..repeat {
        for (si, &size) in sizes.iter().enumerate() {
            for (d, (job_tx, res_rx, _)) in workers.iter().enumerate() {
                for k in 0..SCHEMES.len() {
                    prog.say(&format!(
                        "round {} of {repeat}: {} {} {} ({:.0} s)",
                        rep + 1,
                        if d == 0 { "download" } else { "upload" },
                        size_label(size),
                        SCHEMES[k].0,
                        t0.elapsed().as_secs_f64()
                    ));
                    let r = job_tx
                        .send((k, size))
                        .map_err(|_| io::Error::other("client thread gone"))
                        .and_then(|_| {
                            res_rx
                                .recv_timeout(Duration::from_secs(180))
                                .map_err(|_| io::Error::other("no answer within 180 s"))?
                        });
                    match r {
                        Ok(bps) => res[d][si][k].push(bps / 1e6),
                        Err(e) => {
                            prog.done();
                            eprintln!("  {} {}: {e}", SCHEMES[k].0, size_label(size));
                        }
                    }
                }
            }
        }
    }
    prog.done();
    for (job_tx, _, h) in workers {
        drop(job_tx);
        let _ = h.join();
    }
    println!("host counters after the run (non-zero, of those that show recovery):");
    for (d, c) in clusters.iter().enumerate() {
        for i in 0..c.spec.hosts {
            println!(
                "  {} host {i}: {}",
                if d == 0 { "download" } else { "upload" },
                recovery_counters(c, i)
            );
        }
    }
    drop(clusters);
    let mut points = Vec::new();
    let mut csv = String::from("direction,size,scheme,median_MBps,samples,failed\n");
    for (d, dir) in [Dir::Download, Dir::Upload].into_iter().enumerate() {
        for (si, &size) in sizes.iter().enumerate() {
            for (k, (name, _)) in SCHEMES.iter().enumerate() {
                let v = &res[d][si][k];
                let p = SchemePoint {
                    dir,
                    size,
                    scheme: name,
                    mbps: median(v),
                    failed: repeat - v.len(),
                };
                let _ = writeln!(
                    csv,
                    "{},{size},{name},{},{},{}",
                    dir.name(),
                    fmt_opt(p.mbps, 2),
                    v.iter()
                        .map(|x| format!("{x:.2}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    p.failed
                );
                points.push(p);
            }
        }
    }
    print_schemes_table(&points, &sizes);
    println!("total run time {:.0} s", t0.elapsed().as_secs_f64());
    let csv_path = o.out.join("schemes.csv");
    write_file(&csv_path, &csv)?;
    for dir in [Dir::Download, Dir::Upload] {
        let series: Vec<Series> = SCHEMES
            .iter()
            .map(|(name, _)| Series {
                name: name.to_string(),
                points: points
                    .iter()
                    .filter(|p| p.dir == dir && p.scheme == *name)
                    .filter_map(|p| Some((p.size as f64, p.mbps?)))
                    .collect(),
            })
            .collect();
        let path = o.out.join(format!("schemes-{}.svg", dir.name()));
        write_file(
            &path,
            &line_svg(
                &format!(
                    "Throughput by scheme, {} (Linux client, median of {repeat})",
                    dir.name()
                ),
                "transfer size (bytes, log)",
                "MB/s",
                &series,
                Some(2.0),
                None,
            ),
        )?;
        println!("wrote {}", path.display());
    }
    println!("wrote {}", csv_path.display());
    Ok(points)
}

pub fn print_schemes_table(points: &[SchemePoint], sizes: &[usize]) {
    for dir in [Dir::Download, Dir::Upload] {
        println!("{} (MB/s, median):", dir.name());
        let mut head = format!("{:>8}", "size");
        for (name, _) in SCHEMES {
            let _ = write!(head, "{name:>10}");
        }
        println!("{head}{:>13}", "FT-3/redir");
        for &size in sizes {
            let get = |scheme: &str| {
                points
                    .iter()
                    .find(|p| p.dir == dir && p.size == size && p.scheme == scheme)
                    .and_then(|p| p.mbps)
            };
            let mut line = format!("{:>8}", size_label(size));
            for (name, _) in SCHEMES {
                let _ = write!(line, "{:>10}", fmt_opt(get(name), 1));
            }
            let ratio = match (get("FT-3"), get("redirect")) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let failed: usize = points
                .iter()
                .filter(|p| p.dir == dir && p.size == size)
                .map(|p| p.failed)
                .sum();
            println!(
                "{line}{:>13}{}",
                fmt_opt(ratio, 2),
                if failed > 0 {
                    format!("  ({failed} transfers failed)")
                } else {
                    String::new()
                }
            );
        }
    }
    println!("(target: FT-3/redir >= 0.9 from 256K; reported, not asserted)");
}

// ---------------------------------------------------------------------------------------
// Path.

pub struct PathOptions {
    pub secs: f64,
    pub repeat: usize,
    pub out: PathBuf,
    pub exe: PathBuf,
}

/// Two namespaces joined by one veth pair; removed when dropped.
pub(crate) struct VethPair {
    ns: [String; 2],
    ifs: [String; 2],
}

const VETH_ADDRS: [std::net::Ipv4Addr; 2] = [
    std::net::Ipv4Addr::new(203, 0, 113, 1),
    std::net::Ipv4Addr::new(203, 0, 113, 2),
];

impl VethPair {
    pub(crate) fn up() -> Result<VethPair, String> {
        let p = crate::topology::TopologySpec::unique_prefix();
        let v = VethPair {
            ns: [format!("{p}pa"), format!("{p}pb")],
            ifs: [format!("{p}va"), format!("{p}vb")],
        };
        let e = |e: io::Error| e.to_string();
        for ns in &v.ns {
            netns::ip(None, &["netns", "add", ns]).map_err(e)?;
        }
        // From here on, Drop removes what exists.
        netns::ip(
            Some(&v.ns[0]),
            &[
                "link", "add", &v.ifs[0], "type", "veth", "peer", "name", &v.ifs[1], "netns",
                &v.ns[1],
            ],
        )
        .map_err(e)?;
        for (i, addr) in VETH_ADDRS.iter().enumerate() {
            netns::ip(Some(&v.ns[i]), &["link", "set", "dev", "lo", "up"]).map_err(e)?;
            netns::ip(
                Some(&v.ns[i]),
                &["addr", "add", &format!("{addr}/24"), "dev", &v.ifs[i]],
            )
            .map_err(e)?;
            netns::ip(Some(&v.ns[i]), &["link", "set", "dev", &v.ifs[i], "up"]).map_err(e)?;
            crate::topology::wait_running(&v.ns[i], &v.ifs[i], Duration::from_secs(5))
                .map_err(e)?;
        }
        Ok(v)
    }

    /// TSO, GSO and GRO on or off at both ends; `Err` when ethtool is missing or refuses.
    pub(crate) fn offloads(&self, on: bool) -> Result<(), String> {
        let v = if on { "on" } else { "off" };
        for i in 0..2 {
            netns::exec(
                &self.ns[i],
                &["ethtool", "-K", &self.ifs[i], "tso", v, "gso", v, "gro", v],
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in &self.ns {
            if Path::new(netns::NETNS_RUN_DIR).join(ns).exists() {
                if let Err(e) = netns::ip(None, &["netns", "del", ns]) {
                    eprintln!("bench path: removing {ns}: {e}");
                }
            }
        }
    }
}

/// Sends for `secs` from a thread in `ns[0]` to a receiver in `ns[1]`; the receiver's bytes
/// per second from its first to its last byte.
pub(crate) fn veth_throughput(v: &VethPair, secs: f64) -> Result<f64, String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let ns_b = v.ns[1].clone();
    let recv = std::thread::spawn(move || -> Result<f64, String> {
        netns::enter(&ns_b).map_err(|e| e.to_string())?;
        let l =
            TcpListener::bind(SocketAddrV4::new(VETH_ADDRS[1], 5201)).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let mut first = None;
        loop {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            total += n as u64;
        }
        let t = first.map_or(1e-9, |f| f.elapsed().as_secs_f64());
        Ok(total as f64 / t)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| "the receiver did not start".to_string())?;
    let ns_a = v.ns[0].clone();
    let send = netns::run_in(&ns_a, move || -> Result<(), String> {
        let mut s = TcpStream::connect_timeout(
            &SocketAddrV4::new(VETH_ADDRS[1], 5201).into(),
            Duration::from_secs(5),
        )
        .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let chunk: Vec<u8> = (0..256 * 1024).map(bulk_byte).collect();
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < secs {
            s.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let r = recv
        .join()
        .map_err(|_| "the receiver panicked".to_string())?;
    send.map_err(|e| e.to_string())??;
    r
}

/// User and system CPU time (clock ticks) in a `/proc/PID/stat` line: fields 14 and 15,
/// counted after the command name, which is in parentheses and may hold spaces.
fn stat_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// User and system CPU seconds process `pid` has used so far.
pub(crate) fn cpu_secs(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (u, s) = stat_cpu_ticks(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((u as f64 / hz, s as f64 / hz))
}

/// What one TUN transfer measured: the client's rate, and the server's user and system CPU
/// milliseconds per MB moved — unlike the rate, these hardly depend on how much of a core
/// the shared machine gave the server.
#[derive(Clone, Copy, Debug, Default)]
struct PathSample {
    /// The repetition it belongs to, to pair it with the other rows' samples of that run.
    rep: usize,
    mbps: f64,
    cpu_ms_per_mb: Option<(f64, f64)>,
}

/// The median over repetitions of `f(a) / f(b)` for samples of the same repetition: rows run
/// back to back share the machine's load of the moment, which a ratio of medians does not
/// pair up.
fn paired_ratio(
    a: &[PathSample],
    b: &[PathSample],
    f: impl Fn(&PathSample) -> Option<f64>,
) -> Option<f64> {
    let r: Vec<f64> = a
        .iter()
        .filter_map(|x| {
            let y = b.iter().find(|y| y.rep == x.rep)?;
            let (fx, fy) = (f(x)?, f(y)?);
            (fy > 0.0).then(|| fx / fy)
        })
        .collect();
    median(&r)
}

/// Like [`veth_throughput`] from a client thread in namespace `ns` to a bulk server at
/// `addr`: a download reads `bytes` to the server's close, an upload sends `bytes`, half-closes
/// and waits for the server's close. Bytes per second from `connect` to the end.
fn client_throughput(ns: &str, addr: SocketAddrV4, dir: Dir, bytes: usize) -> Result<f64, String> {
    netns::run_in(ns, move || -> Result<f64, String> {
        match dir {
            Dir::Download => {
                let t = Instant::now();
                let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0usize;
                loop {
                    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                if total != bytes {
                    return Err(format!("{total} bytes of {bytes}"));
                }
                Ok(total as f64 / t.elapsed().as_secs_f64())
            }
            Dir::Upload => {
                let chunk: Vec<u8> = (0..256 * 1024).map(bulk_byte).collect();
                upload_discard(addr, bytes, &chunk).map_err(|e| e.to_string())
            }
        }
    })
    .map_err(|e| format!("client namespace: {e}"))?
}

/// Ports of the bulk servers, in the host daemon (`bulk`, `discard` services) and in the
/// `tun-server`s alike.
const PATH_DOWNLOAD_PORT: u16 = BULK_PORT;
const PATH_UPLOAD_PORT: u16 = DIGEST_PORT;
/// Socket buffers of both `tun-server` stacks, each way.
pub const PATH_SERVER_BUF: usize = 256 * 1024;

/// Where a TUN row's server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TunServer {
    /// The core's plain Stack (`tun-server --stack hydranet`).
    Stack,
    /// smoltcp (`tun-server --stack smoltcp`).
    Smoltcp,
    /// The host daemon (Host: the FT layer, ports in Normal mode) of a 1-host Cluster.
    HostDaemon,
}

/// One row of the path table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PathRow {
    Veth { offloads: bool },
    Tun(TunServer, Dir),
}

impl PathRow {
    fn name(self) -> String {
        match self {
            PathRow::Veth { offloads: true } => "veth, offloads on".into(),
            PathRow::Veth { offloads: false } => "veth, offloads off".into(),
            PathRow::Tun(s, d) => format!(
                "{} on TUN, {}",
                match s {
                    TunServer::Stack => "hydranet Stack",
                    TunServer::Smoltcp => "smoltcp",
                    TunServer::HostDaemon => "host daemon (FT layer)",
                },
                d.name()
            ),
        }
    }
}

/// The rows in the order each repetition runs them: the kernel first, then per direction the
/// three TUN servers back to back, so load changes hit the compared rows alike.
fn path_rows(ethtool: bool) -> Vec<PathRow> {
    let mut v = vec![PathRow::Veth { offloads: true }];
    if ethtool {
        v.push(PathRow::Veth { offloads: false });
    }
    for d in [Dir::Download, Dir::Upload] {
        for s in [TunServer::Stack, TunServer::Smoltcp, TunServer::HostDaemon] {
            v.push(PathRow::Tun(s, d));
        }
    }
    v
}

/// `a / b` when both rows have a figure.
fn row_ratio(rows: &[(PathRow, f64)], a: PathRow, b: PathRow) -> Option<f64> {
    let get = |r: PathRow| rows.iter().find(|x| x.0 == r).map(|x| x.1);
    match (get(a), get(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

/// The two `tun-server`s on a topology of their own with the Cluster's shape (client ns →
/// router ns → host ns → TUN): the Stack on host 0's device, smoltcp on host 1's.
pub(crate) struct TunServers {
    // Field order is drop order: the servers stop before their namespaces go.
    servers: Vec<(TunServer, crate::tunserver::Spawned)>,
    pub(crate) topo: crate::topology::TopologyGuard,
    run_dir: PathBuf,
}

impl TunServers {
    pub(crate) fn start(exe: &Path, bytes: usize, max_secs: f64) -> Result<TunServers, String> {
        use crate::topology::{TopologyGuard, TopologySpec};
        use crate::tunserver::{ServerOptions, Spawned, StackKind};
        let prefix = TopologySpec::unique_prefix();
        let topo = TopologyGuard::up(&TopologySpec::new(&prefix, 2))
            .map_err(|e| format!("topology up: {e}"))?;
        let run_dir = std::env::temp_dir().join(format!("hydranet-{prefix}"));
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let mut me = TunServers {
            servers: Vec::new(),
            topo,
            run_dir,
        };
        for (i, (which, stack)) in [
            (TunServer::Stack, StackKind::Hydranet),
            (TunServer::Smoltcp, StackKind::Smoltcp),
        ]
        .into_iter()
        .enumerate()
        {
            let o = ServerOptions {
                stack,
                dev: me.topo.host_tuns[i].clone(),
                addr: me.topo.host_addrs[i],
                download_port: PATH_DOWNLOAD_PORT,
                upload_port: PATH_UPLOAD_PORT,
                bytes: bytes as u64,
                buf: PATH_SERVER_BUF,
                max_secs,
            };
            let log = me.run_dir.join(format!("{}.log", stack.name()));
            let ns = me.topo.host_ns[i].clone();
            let p = Spawned::start(exe, &ns, &o, &log, Duration::from_secs(10))?;
            me.servers.push((which, p));
        }
        Ok(me)
    }

    pub(crate) fn pid(&self, which: TunServer) -> Option<u32> {
        self.servers
            .iter()
            .find(|(w, _)| *w == which)
            .and_then(|(_, p)| p.pid())
    }

    pub(crate) fn addr(&self, which: TunServer, dir: Dir) -> SocketAddrV4 {
        let i = usize::from(which == TunServer::Smoltcp);
        let port = match dir {
            Dir::Download => PATH_DOWNLOAD_PORT,
            Dir::Upload => PATH_UPLOAD_PORT,
        };
        SocketAddrV4::new(self.topo.host_addrs[i], port)
    }

    /// Stops the servers and returns the last line of each one's log (its counters).
    fn stop(&mut self) -> Vec<String> {
        self.servers
            .iter_mut()
            .map(|(_, p)| {
                p.stop();
                p.log_text().lines().last().unwrap_or("").to_string()
            })
            .collect()
    }
}

impl Drop for TunServers {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

pub fn path(o: &PathOptions) -> Result<Vec<(String, f64)>, String> {
    netns::capable()?;
    let t0 = Instant::now();
    let veth = VethPair::up()?;
    let ethtool = veth.offloads(true);
    if let Err(e) = &ethtool {
        println!("  ethtool not usable ({e}): offloads stay as the kernel set them (on)");
    }
    // The TUN transfers carry about what the veth carries in `secs` at the TUN's rate, so
    // both last about as long: sized from NOTES.md's 0.7 GB/s ceiling.
    let tun_bytes = ((o.secs * 300e6) as usize).clamp(16 << 20, 1 << 30);
    let rows = path_rows(ethtool.is_ok());
    // Every transfer gives up after 60 s without a byte; the servers outlive the whole run
    // only by that bound, and end on their own if this process dies.
    let max_secs = 60.0 + 70.0 * (o.repeat.max(1) * rows.len()) as f64;
    let mut spec = ClusterSpec::new(1, Vec::new(), o.exe.clone());
    spec.placed = vec![
        (
            PATH_DOWNLOAD_PORT,
            ServiceSpec::Bulk(tun_bytes as u64),
            Placement::Direct,
        ),
        (PATH_UPLOAD_PORT, ServiceSpec::Discard, Placement::Direct),
    ];
    let cluster = Cluster::start(spec)?;
    let mut servers = TunServers::start(&o.exe, tun_bytes, max_secs)?;
    println!(
        "bench path: Linux TCP over a veth pair ({:.1} s per run) against a Linux client and, on \
         a TUN device behind one router namespace, the core's plain Stack, smoltcp (both \
         {} KiB buffers each way) and the host daemon (FreeBSD default buffers), {} MB per \
         transfer; median of {} interleaved runs",
        o.secs,
        PATH_SERVER_BUF >> 10,
        tun_bytes / 1_000_000,
        o.repeat
    );
    let mut samples: Vec<Vec<PathSample>> = vec![Vec::new(); rows.len()];
    let mut prog = Progress::new();
    for rep in 0..o.repeat.max(1) {
        for (i, row) in rows.iter().enumerate() {
            prog.say(&format!(
                "run {} of {}: {} ({:.0} s)",
                rep + 1,
                o.repeat,
                row.name(),
                t0.elapsed().as_secs_f64()
            ));
            let pid = match *row {
                PathRow::Veth { .. } => None,
                PathRow::Tun(TunServer::HostDaemon, _) => cluster.host_pid(0),
                PathRow::Tun(which, _) => servers.pid(which),
            };
            let cpu0 = pid.and_then(cpu_secs);
            let r = match *row {
                PathRow::Veth { offloads } => {
                    let set = if ethtool.is_ok() {
                        veth.offloads(offloads)
                    } else {
                        Ok(())
                    };
                    set.and_then(|_| veth_throughput(&veth, o.secs))
                }
                PathRow::Tun(TunServer::HostDaemon, dir) => {
                    let addr = cluster.service_addr(match dir {
                        Dir::Download => PATH_DOWNLOAD_PORT,
                        Dir::Upload => PATH_UPLOAD_PORT,
                    });
                    client_throughput(&cluster.topo.client_ns, addr, dir, tun_bytes)
                }
                PathRow::Tun(which, dir) => client_throughput(
                    &servers.topo.client_ns,
                    servers.addr(which, dir),
                    dir,
                    tun_bytes,
                ),
            };
            match r {
                Ok(bps) => {
                    let mb = tun_bytes as f64 / 1e6;
                    let cpu = match (cpu0, pid.and_then(cpu_secs)) {
                        (Some((u0, s0)), Some((u1, s1))) => {
                            Some(((u1 - u0) * 1e3 / mb, (s1 - s0) * 1e3 / mb))
                        }
                        _ => None,
                    };
                    samples[i].push(PathSample {
                        rep,
                        mbps: bps / 1e6,
                        cpu_ms_per_mb: cpu,
                    });
                }
                Err(e) => {
                    prog.done();
                    eprintln!("  {}: {e}", row.name());
                }
            }
        }
    }
    prog.done();
    let server_lines = servers.stop();
    drop(servers);
    drop(cluster);
    drop(veth);
    let rates = |v: &[PathSample]| v.iter().map(|x| x.mbps).collect::<Vec<_>>();
    let cpu_of = |v: &[PathSample], user: bool| {
        let c: Vec<f64> = v
            .iter()
            .filter_map(|x| x.cpu_ms_per_mb.map(|(u, s)| if user { u } else { s }))
            .collect();
        median(&c)
    };
    let medians: Vec<(PathRow, f64)> = rows
        .iter()
        .zip(&samples)
        .filter_map(|(r, v)| Some((*r, median(&rates(v))?)))
        .collect();
    // Server user CPU per MB, the TCP code's share (plus the same loop and application).
    let user_cpu: Vec<(PathRow, f64)> = rows
        .iter()
        .zip(&samples)
        .filter_map(|(r, v)| Some((*r, cpu_of(v, true)?)))
        .collect();
    let on = PathRow::Veth { offloads: true };
    let off = PathRow::Veth { offloads: false };
    println!(
        "{:<40}{:>9}{:>13}{:>14}{:>12}{:>12}",
        "path", "MB/s", "/ veth (on)", "/ veth (off)", "srv usr", "srv sys"
    );
    println!(
        "{:<40}{:>9}{:>13}{:>14}{:>12}{:>12}",
        "", "", "", "", "ms/MB", "ms/MB"
    );
    let mut csv = String::from(
        "path,median_MBps,ratio_to_veth_offloads_on,ratio_to_veth_offloads_off,\
         server_user_ms_per_MB,server_sys_ms_per_MB,samples_MBps\n",
    );
    for (row, v) in rows.iter().zip(&samples) {
        let Some(&(_, mbps)) = medians.iter().find(|m| m.0 == *row) else {
            continue;
        };
        let r_on = row_ratio(&medians, *row, on);
        let r_off = row_ratio(&medians, *row, off);
        let (usr, sys) = (cpu_of(v, true), cpu_of(v, false));
        println!(
            "{:<40}{mbps:>9.1}{:>13}{:>14}{:>12}{:>12}",
            row.name(),
            fmt_opt(r_on, 3),
            fmt_opt(r_off, 3),
            fmt_opt(usr, 2),
            fmt_opt(sys, 2)
        );
        let opt = |x: Option<f64>, d: usize| x.map_or(String::new(), |x| format!("{x:.d$}"));
        let _ = writeln!(
            csv,
            "{},{mbps:.1},{},{},{},{},{}",
            row.name(),
            opt(r_on, 4),
            opt(r_off, 4),
            opt(usr, 3),
            opt(sys, 3),
            rates(v)
                .iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    for dir in [Dir::Download, Dir::Upload] {
        let stack = PathRow::Tun(TunServer::Stack, dir);
        let smol = PathRow::Tun(TunServer::Smoltcp, dir);
        let host = PathRow::Tun(TunServer::HostDaemon, dir);
        let of = |r: PathRow| &samples[rows.iter().position(|x| *x == r).unwrap_or(0)][..];
        let paired =
            |a, b, f: fn(&PathSample) -> Option<f64>| fmt_opt(paired_ratio(of(a), of(b), f), 3);
        let mbps = |x: &PathSample| Some(x.mbps);
        let user = |x: &PathSample| x.cpu_ms_per_mb.map(|c| c.0);
        println!(
            "{:<9} hydranet Stack / smoltcp: MB/s {} (per run {}), server user CPU per MB {} \
             (per run {}); Stack / veth (off) {}; host daemon / Stack {} (per run {})",
            dir.name(),
            fmt_opt(row_ratio(&medians, stack, smol), 3),
            paired(stack, smol, mbps),
            fmt_opt(row_ratio(&user_cpu, stack, smol), 3),
            paired(stack, smol, user),
            fmt_opt(row_ratio(&medians, stack, off), 3),
            fmt_opt(row_ratio(&medians, host, stack), 3),
            paired(host, stack, mbps),
        );
    }
    for l in &server_lines {
        println!("  {}", l.trim_start_matches("hydranet tun-server: "));
    }
    println!("total run time {:.0} s", t0.elapsed().as_secs_f64());
    let csv_path = o.out.join("path.csv");
    write_file(&csv_path, &csv)?;
    let svg_path = o.out.join("path.svg");
    let bars: Vec<(String, f64)> = medians.iter().map(|(r, m)| (r.name(), *m)).collect();
    write_file(
        &svg_path,
        &bars_svg(
            "Linux TCP over veth vs a Linux client to TUN servers (core Stack, smoltcp, host daemon)",
            "MB/s",
            &bars,
        ),
    )?;
    println!("wrote {} and {}", csv_path.display(), svg_path.display());
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("16K"), Ok(16384));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert_eq!(parse_sizes("16K,1M").unwrap(), vec![16384, 1 << 20]);
        assert_eq!(size_label(64 << 20), "64M");
        assert_eq!(size_label(512 << 10), "512K");
        assert_eq!(size_label(1500), "1500");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn stall_is_the_gap_across_the_kill() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let t = [
            ms(0),
            ms(1),
            ms(2),
            ms(40),
            ms(41),
            ms(42),
            ms(100),
            ms(101),
        ];
        assert_eq!(
            stall_after(&t, ms(3), Some(ms(60))),
            Some(Duration::from_millis(38))
        );
        // A longer gap across the next kill belongs to that kill.
        assert_eq!(
            stall_after(&t, ms(3), Some(ms(45))),
            Some(Duration::from_millis(38))
        );
        assert_eq!(
            stall_after(&t, ms(60), None),
            Some(Duration::from_millis(58))
        );
    }

    #[test]
    fn paired_ratios_match_repetitions() {
        let s = |rep, mbps| PathSample {
            rep,
            mbps,
            cpu_ms_per_mb: None,
        };
        // Run 1 of `b` failed: its run-1 sample of `a` has no partner.
        let a = [s(0, 100.0), s(1, 50.0), s(2, 300.0)];
        let b = [s(0, 200.0), s(2, 100.0)];
        assert_eq!(paired_ratio(&a, &b, |x| Some(x.mbps)), Some(0.5));
        assert_eq!(paired_ratio(&a, &b, |x| x.cpu_ms_per_mb.map(|c| c.0)), None);
        assert_eq!(paired_ratio(&a, &[], |x| Some(x.mbps)), None);
    }

    #[test]
    fn cpu_ticks_come_after_the_command_name() {
        let stat = "4242 (tun server) S 1 4242 4242 0 -1 4194560 120 0 0 0 37 215 0 0 20 0 1";
        assert_eq!(stat_cpu_ticks(stat), Some((37, 215)));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis"), None);
        let (u, s) = cpu_secs(std::process::id()).expect("our own stat");
        assert!(u >= 0.0 && s >= 0.0);
    }

    #[test]
    fn path_rows_interleave_and_ratios_need_both() {
        let rows = path_rows(true);
        assert_eq!(rows.len(), 8);
        assert_eq!(rows[1].name(), "veth, offloads off");
        assert_eq!(
            rows[2].name(),
            "hydranet Stack on TUN, download",
            "the compared TUN rows run back to back"
        );
        assert_eq!(rows[3].name(), "smoltcp on TUN, download");
        assert_eq!(path_rows(false).len(), 7);
        let stack = PathRow::Tun(TunServer::Stack, Dir::Upload);
        let smol = PathRow::Tun(TunServer::Smoltcp, Dir::Upload);
        let m = [(stack, 150.0), (smol, 300.0)];
        assert_eq!(row_ratio(&m, stack, smol), Some(0.5));
        assert_eq!(
            row_ratio(&m, stack, PathRow::Veth { offloads: false }),
            None
        );
        assert_eq!(row_ratio(&[(stack, 1.0), (smol, 0.0)], stack, smol), None);
    }

    #[test]
    fn plots_are_svg() {
        let s = line_svg(
            "t <x>",
            "x",
            "y",
            &[Series {
                name: "a".into(),
                points: vec![(16384.0, 1.0), (1048576.0, 10.0)],
            }],
            Some(2.0),
            Some(10.0),
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("t &lt;x&gt;") && s.contains("polyline"));
        let b = bars_svg("b", "MB/s", &[("veth".into(), 3000.0)]);
        assert!(b.contains("veth") && b.contains("3000.0 MB/s"));
    }
}
