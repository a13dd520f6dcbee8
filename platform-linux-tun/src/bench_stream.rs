//! `hydranet bench stream`: a time-critical stream across a primary kill, like the original
//! HydraNet-FT's video demonstration.
//!
//! A group of three replicas serves the `stream` service (frames of a fixed size at a fixed
//! rate, paced by each replica's clock); a Linux client in the client namespace reads it with
//! the kernel's TCP and checks every byte. In each deployment one stream runs untouched (the
//! control) and then one more with the primary killed at a seeded random point in its middle.
//!
//! Frame `i`'s deadline at the client is the arrival of frame 0 plus `i / fps`: the client
//! cannot know the server's clock, and a player that starts on the first frame plays frame
//! `i` then. A frame is *late* when it arrives more than `--late-ms` (100 ms) after its
//! deadline — the margin a player's buffer would have to cover. A frame "arrives" when the
//! `read` that completes it returns.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bench::{
    bars_svg, fmt_opt, line_svg, median, percentile, recovery_counters, tcp_info, write_file,
    Progress, Series,
};
use crate::harness::{Cluster, ClusterSpec};
use crate::netns;
use crate::services::{
    stream_payload_byte, ServiceSpec, STREAM_HEADER_LEN, STREAM_MAGIC, STREAM_MAX_FPS,
    STREAM_MAX_FRAME,
};

const STREAM_PORT: u16 = 9100;
/// How often the conductor samples the client socket: the resolution of the kill point.
const SAMPLE: Duration = Duration::from_millis(1);
/// A kill lands between these fractions of the stream's length (from its first byte), so
/// there is steady streaming on both sides of it.
const KILL_FROM: f64 = 0.3;
const KILL_TO: f64 = 0.7;

pub struct StreamOptions {
    /// Streams with a primary kill.
    pub streams: usize,
    /// Streams without one, for comparison (each in one of the same deployments).
    pub control: usize,
    pub secs: f64,
    pub fps: u32,
    /// Bits per second of the stream (headers included).
    pub rate_bps: f64,
    pub late_ms: f64,
    pub seed: u64,
    /// A killed stream with no byte moving for this long counts as "no takeover".
    pub takeover_timeout: Duration,
    /// No new deployment is started after this much time.
    pub budget: Duration,
    pub out: PathBuf,
    pub exe: PathBuf,
}

impl StreamOptions {
    /// Bytes per frame (header included) for the rate and frame rate, within what the
    /// service accepts.
    pub fn frame_len(&self) -> u32 {
        let f = self.rate_bps / 8.0 / f64::from(self.fps.max(1));
        (f.round() as u32).clamp(STREAM_HEADER_LEN as u32, STREAM_MAX_FRAME)
    }
    pub fn frames(&self) -> u32 {
        ((self.secs * f64::from(self.fps)).round() as u32).max(1)
    }
    fn check(&self) -> Result<(), String> {
        if !(1..=STREAM_MAX_FPS).contains(&self.fps) {
            return Err(format!("--fps {}: want 1..={STREAM_MAX_FPS}", self.fps));
        }
        if !(self.secs.is_finite() && self.secs > 0.0 && self.secs <= 600.0) {
            return Err(format!(
                "--secs {}: want more than 0, at most 600",
                self.secs
            ));
        }
        if !self.rate_bps.is_finite() || self.rate_bps <= 0.0 {
            return Err("--rate-mbit: want more than 0".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The client's check of the stream.

/// The fields of a frame header: frame number, frame length, frames in the stream.
pub fn parse_header(h: &[u8; STREAM_HEADER_LEN]) -> Result<(u32, u32, u32), String> {
    if h[..4] != STREAM_MAGIC {
        return Err(format!("no frame magic: {:02x?}", &h[..4]));
    }
    let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    Ok((word(4), word(8), word(12)))
}

/// Checks a stream byte by byte as it arrives: every header against the frame it should
/// be, every payload byte against its position. The first wrong byte is an error; nothing
/// after it is trusted.
pub struct FrameChecker {
    frame_len: u32,
    frames: u32,
    /// Stream bytes checked so far.
    off: u64,
    header: [u8; STREAM_HEADER_LEN],
}

impl FrameChecker {
    pub fn new(frame_len: u32, frames: u32) -> FrameChecker {
        FrameChecker {
            frame_len: frame_len.max(STREAM_HEADER_LEN as u32),
            frames,
            off: 0,
            header: [0; STREAM_HEADER_LEN],
        }
    }

    pub fn bytes(&self) -> u64 {
        self.off
    }

    /// Frames received whole so far.
    pub fn frames_done(&self) -> u32 {
        (self.off / u64::from(self.frame_len)) as u32
    }

    pub fn complete(&self) -> bool {
        self.off == u64::from(self.frame_len) * u64::from(self.frames)
    }

    /// Checks `data`, the next bytes of the stream; returns how many frames it completed.
    pub fn feed(&mut self, data: &[u8]) -> Result<u32, String> {
        let len = u64::from(self.frame_len);
        let mut done = 0;
        for &b in data {
            let (n, pos) = ((self.off / len) as u32, (self.off % len) as usize);
            if n >= self.frames {
                return Err(format!(
                    "byte {} is past the last of {} frames",
                    self.off, self.frames
                ));
            }
            if pos < STREAM_HEADER_LEN {
                self.header[pos] = b;
                if pos == STREAM_HEADER_LEN - 1 {
                    let got = parse_header(&self.header).map_err(|e| format!("frame {n}: {e}"))?;
                    let want = (n, self.frame_len, self.frames);
                    if got != want {
                        return Err(format!(
                            "frame {n}: header says frame {} of length {} in {} (want {:?})",
                            got.0, got.1, got.2, want
                        ));
                    }
                }
            } else {
                let want = stream_payload_byte(self.off);
                if b != want {
                    return Err(format!(
                        "frame {n} byte {pos} (stream offset {}): {b:#04x}, want {want:#04x}",
                        self.off
                    ));
                }
            }
            self.off += 1;
            if self.off.is_multiple_of(len) {
                done += 1;
            }
        }
        Ok(done)
    }
}

// ---------------------------------------------------------------------------------------
// Timing, in milliseconds from frame 0's arrival.

/// How late each frame arrived: `arrival[i] - (arrival[0] + i * 1000 / fps)` in ms (negative:
/// early).
pub fn lateness(arrivals_ms: &[f64], fps: u32) -> Vec<f64> {
    let Some(&a0) = arrivals_ms.first() else {
        return Vec::new();
    };
    let period = 1000.0 / f64::from(fps.max(1));
    arrivals_ms
        .iter()
        .enumerate()
        .map(|(i, a)| a - (a0 + i as f64 * period))
        .collect()
}

/// Time between consecutive frame arrivals (one fewer than the frames).
pub fn gaps(arrivals_ms: &[f64]) -> Vec<f64> {
    arrivals_ms.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The longest gap between consecutive arrivals that ends after `kill_ms` and begins no later
/// than `window_ms` after it: the interruption the kill caused (including the frame interval
/// it fell into). `None` when no frame arrived after the kill.
pub fn kill_gap(arrivals_ms: &[f64], kill_ms: f64, window_ms: f64) -> Option<f64> {
    arrivals_ms
        .windows(2)
        .filter(|w| w[1] > kill_ms && w[0] <= kill_ms + window_ms)
        .map(|w| w[1] - w[0])
        .max_by(f64::total_cmp)
}

/// A seeded fraction in `[lo, hi)` for stream `i` (splitmix64: the same seed always kills at
/// the same points, and neighbouring streams get unrelated ones).
pub fn kill_fraction(seed: u64, i: u64, lo: f64, hi: f64) -> f64 {
    let mut z = seed
        .wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    lo + (hi - lo) * ((z >> 11) as f64 / (1u64 << 53) as f64)
}

// ---------------------------------------------------------------------------------------
// One stream.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Control,
    Killed,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Control => "control",
            Kind::Killed => "killed",
        }
    }
}

/// One stream as the client saw it.
#[derive(Clone, Debug)]
pub struct StreamRun {
    pub kind: Kind,
    /// The deployment it ran in (0-based).
    pub index: usize,
    pub frames_expected: u32,
    /// When each whole frame arrived, ms from frame 0's arrival.
    pub arrivals_ms: Vec<f64>,
    /// When the primary was killed, ms from frame 0's arrival.
    pub kill_ms: Option<f64>,
    pub victim: Option<usize>,
    pub new_primary: Option<usize>,
    /// Takeovers the surviving hosts counted during the stream (`ft.takeovers`): 1 for a
    /// kill, 0 for a control stream unless a backup declared a live primary dead.
    pub takeovers: Option<u64>,
    /// Nothing moved for the takeover timeout after the kill.
    pub no_takeover: bool,
    /// Every byte checked and the stream complete.
    pub content_ok: bool,
    pub bytes: u64,
    pub resets: u64,
    pub error: Option<String>,
}

impl StreamRun {
    fn late(&self, fps: u32, late_ms: f64) -> usize {
        lateness(&self.arrivals_ms, fps)
            .iter()
            .filter(|&&l| l > late_ms)
            .count()
    }
    fn max_gap(&self) -> Option<f64> {
        gaps(&self.arrivals_ms).into_iter().max_by(f64::total_cmp)
    }
    /// The gap "around the kill": the one the kill falls in, or the next if a frame already
    /// in flight completed just after the kill (the window is one frame period). A wider
    /// window blames the kill for the loaded machine's hiccups a few hundred ms later, which
    /// the stream's longest gap and its lateness show anyway.
    fn kill_gap(&self, fps: u32) -> Option<f64> {
        kill_gap(
            &self.arrivals_ms,
            self.kill_ms?,
            1000.0 / f64::from(fps.max(1)),
        )
    }
}

/// What the client thread hands back.
#[derive(Default)]
struct ClientEnd {
    arrivals: Vec<Instant>,
    bytes: u64,
    content_ok: bool,
    reset: bool,
    kernel_resets: u64,
    error: Option<String>,
}

fn client_read(s: &TcpStream, check: &mut FrameChecker, end: &mut ClientEnd) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut r = s;
    loop {
        let n = r.read(&mut buf)?;
        let at = Instant::now();
        if n == 0 {
            return Ok(());
        }
        match check.feed(&buf[..n]) {
            Ok(done) => end.arrivals.extend((0..done).map(|_| at)),
            Err(e) => {
                end.error = Some(format!("content: {e}"));
                return Ok(());
            }
        }
        end.bytes = check.bytes();
    }
}

/// Every host's `ft.takeovers` (`None` for a host that does not answer).
fn takeover_counts(c: &Cluster) -> Vec<Option<u64>> {
    (0..c.spec.hosts)
        .map(|i| {
            c.host_alive(i)
                .then(|| c.host_counter(i, "ft.takeovers"))
                .flatten()
        })
        .collect()
}

/// Takeovers between two [`takeover_counts`], over the hosts that answered both times (the
/// killed primary's second count is taken just before the kill).
pub fn takeovers_between(before: &[Option<u64>], after: &[Option<u64>]) -> Option<u64> {
    let pairs: Vec<u64> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some(a.as_ref()?.saturating_sub(*b.as_ref()?)))
        .collect();
    (!pairs.is_empty()).then(|| pairs.iter().sum())
}

/// Runs one stream on `cluster`; kills the primary `kill_after` after the first byte.
fn run_stream(
    cluster: &mut Cluster,
    o: &StreamOptions,
    kind: Kind,
    index: usize,
    kill_after: Option<Duration>,
) -> Result<StreamRun, String> {
    let (frame_len, frames) = (o.frame_len(), o.frames());
    let addr = cluster.service_addr(STREAM_PORT);
    let ns = cluster.topo.client_ns.clone();
    let mut victim = None;
    // The victim's own count just before it dies: it may have taken over earlier in the stream.
    let mut victim_count = None;
    let counts_before = takeover_counts(cluster);
    let (sock_tx, sock_rx) = mpsc::channel::<TcpStream>();
    let client = std::thread::spawn(move || {
        let mut end = ClientEnd::default();
        if let Err(e) = netns::enter(&ns) {
            end.error = Some(format!("client namespace: {e}"));
            return end;
        }
        let before = netns::kernel_resets();
        let mut check = FrameChecker::new(frame_len, frames);
        let run = (|| -> io::Result<()> {
            let s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))?;
            // The conductor ends a stuck stream with a shutdown; this only guards against
            // the conductor itself being gone.
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            let _ = sock_tx.send(s.try_clone()?);
            client_read(&s, &mut check, &mut end)
        })();
        if let Err(e) = run {
            end.reset = netns::is_reset(&e);
            end.error = Some(e.to_string());
        }
        end.content_ok = end.error.is_none() && check.complete();
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

    // The conductor: finds the first byte, kills on time, gives up on a stall.
    let mut first: Option<Instant> = None;
    let mut last_bytes = 0u64;
    let mut last_move = Instant::now();
    let mut kill_at: Option<Instant> = None;
    let mut awaiting = false;
    let mut new_primary = None;
    let mut no_takeover = false;
    let hard_deadline = Instant::now() + Duration::from_secs_f64(o.secs * 2.0 + 30.0);
    while !client.is_finished() {
        std::thread::sleep(SAMPLE);
        let Ok(info) = tcp_info(&sock) else { break };
        let now = Instant::now();
        if info.tcpi_bytes_received != last_bytes {
            last_bytes = info.tcpi_bytes_received;
            last_move = now;
            first.get_or_insert(now);
            if awaiting {
                awaiting = false;
                new_primary = cluster.primary(STREAM_PORT);
            }
        }
        if let (Some(after), Some(f), None) = (kill_after, first, kill_at) {
            if now >= f + after {
                // Asked now, not before the stream: on a loaded machine a backup may have
                // taken over already (the takeover count shows it), and the kill is of
                // whoever is primary. A few ms of control calls; the kill time is taken after.
                let v = cluster.primary(STREAM_PORT).unwrap_or(0);
                victim = Some(v);
                victim_count = cluster.host_counter(v, "ft.takeovers");
                cluster.kill_host(v);
                kill_at = Some(Instant::now());
                awaiting = true;
            }
        }
        let stuck = kill_at
            .is_some_and(|k| now - k > o.takeover_timeout && now - last_move > o.takeover_timeout);
        if stuck || now > hard_deadline {
            no_takeover = stuck;
            let _ = sock.shutdown(Shutdown::Both);
            break;
        }
    }
    let end = client
        .join()
        .map_err(|_| "the client thread panicked".to_string())?;
    let mut counts_after = takeover_counts(cluster);
    if let Some(v) = victim.filter(|&v| v < counts_after.len()) {
        counts_after[v] = victim_count;
    }
    let takeovers = takeovers_between(&counts_before, &counts_after);
    let a0 = end.arrivals.first().copied();
    let rel = |t: Instant| -> f64 {
        let Some(a0) = a0 else { return 0.0 };
        if t >= a0 {
            (t - a0).as_secs_f64() * 1000.0
        } else {
            -((a0 - t).as_secs_f64() * 1000.0)
        }
    };
    Ok(StreamRun {
        kind,
        index,
        frames_expected: frames,
        arrivals_ms: end.arrivals.iter().map(|&t| rel(t)).collect(),
        kill_ms: kill_at.filter(|_| a0.is_some()).map(rel),
        victim,
        new_primary,
        takeovers,
        no_takeover,
        content_ok: end.content_ok && !no_takeover,
        bytes: end.bytes,
        resets: end.kernel_resets + u64::from(end.reset),
        error: end.error,
    })
}

// ---------------------------------------------------------------------------------------
// The bench.

/// The figures of one kind of stream, over all its streams.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub streams: usize,
    pub frames: usize,
    pub frames_expected: usize,
    pub late: usize,
    pub lateness: Vec<f64>,
    pub gaps: Vec<f64>,
    /// The longest gap of each stream.
    pub max_gaps: Vec<f64>,
    /// The gap around the kill of each killed stream that resumed.
    pub kill_gaps: Vec<f64>,
    pub no_takeover: usize,
    /// Takeovers counted by the hosts during these streams.
    pub takeovers: u64,
    pub resets: u64,
    pub content_ok: usize,
}

pub fn summarize(runs: &[&StreamRun], fps: u32, late_ms: f64) -> Summary {
    let mut s = Summary {
        streams: runs.len(),
        ..Default::default()
    };
    for r in runs {
        s.frames += r.arrivals_ms.len();
        s.frames_expected += r.frames_expected as usize;
        s.late += r.late(fps, late_ms);
        s.lateness.extend(lateness(&r.arrivals_ms, fps));
        s.gaps.extend(gaps(&r.arrivals_ms));
        s.max_gaps.extend(r.max_gap());
        s.kill_gaps
            .extend(r.kill_gap(fps).filter(|_| !r.no_takeover));
        s.no_takeover += usize::from(r.no_takeover);
        s.takeovers += r.takeovers.unwrap_or(0);
        s.resets += r.resets;
        s.content_ok += usize::from(r.content_ok);
    }
    s
}

pub fn stream(o: &StreamOptions) -> Result<Vec<StreamRun>, String> {
    o.check()?;
    netns::capable()?;
    let t0 = Instant::now();
    let (frame_len, frames) = (o.frame_len(), o.frames());
    let deployments = o.streams.max(o.control).max(1);
    println!(
        "bench stream: {} frames/s of {frame_len} bytes ({:.2} Mbit/s), {frames} frames \
         ({:.1} s) per stream, from a group of 3 replicas (default detector) to a Linux client; \
         {} streams with the primary killed at a seeded point (seed {}) in {:.0}-{:.0} % of the \
         stream, {} control streams without a kill; late = more than {} ms after its \
         deadline; time budget {} s",
        o.fps,
        f64::from(frame_len) * 8.0 * f64::from(o.fps) / 1e6,
        frames as f64 / f64::from(o.fps),
        o.streams,
        o.seed,
        KILL_FROM * 100.0,
        KILL_TO * 100.0,
        o.control,
        o.late_ms,
        o.budget.as_secs()
    );
    let mut runs: Vec<StreamRun> = Vec::new();
    let mut prog = Progress::new();
    let mut over_budget = false;
    for i in 0..deployments {
        if t0.elapsed() > o.budget {
            over_budget = true;
            break;
        }
        let spec = ClusterSpec::new(
            3,
            vec![(
                STREAM_PORT,
                ServiceSpec::Stream {
                    frame_len,
                    fps: o.fps,
                    frames,
                },
            )],
            o.exe.clone(),
        );
        let mut cluster = match Cluster::start(spec) {
            Ok(c) => c,
            Err(e) => {
                prog.done();
                eprintln!("  deployment {} failed: {e}", i + 1);
                continue;
            }
        };
        // The control first, while all three replicas are up; then the kill.
        let mut plan = Vec::new();
        if i < o.control {
            plan.push((Kind::Control, None));
        }
        if i < o.streams {
            let f = kill_fraction(o.seed, i as u64, KILL_FROM, KILL_TO);
            plan.push((Kind::Killed, Some(Duration::from_secs_f64(o.secs * f))));
        }
        for (kind, kill_after) in plan {
            prog.say(&format!(
                "deployment {} of {deployments}: {} stream{}, {:.0} s so far",
                i + 1,
                kind.name(),
                kill_after.map_or(String::new(), |k| format!(
                    ", kill at {:.2} s",
                    k.as_secs_f64()
                )),
                t0.elapsed().as_secs_f64()
            ));
            match run_stream(&mut cluster, o, kind, i, kill_after) {
                Ok(r) => {
                    let spurious = kind == Kind::Control && r.takeovers.unwrap_or(0) > 0;
                    if kind == Kind::Killed || !r.content_ok || r.resets > 0 || spurious {
                        prog.done();
                        print_run(&r, o);
                    }
                    if r.late(o.fps, o.late_ms) > 0 || r.no_takeover {
                        // What the survivors did meanwhile: retransmission timeouts, lost
                        // segments, dropped backups tell a slow takeover from a slow machine.
                        for h in (0..cluster.spec.hosts).filter(|&h| cluster.host_alive(h)) {
                            let t = cluster.host_counter(h, "ft.takeovers").unwrap_or(0);
                            let d = cluster.host_counter(h, "ft.step_downs").unwrap_or(0);
                            println!(
                                "      host {h}: ft.takeovers={t} ft.step_downs={d} {}",
                                recovery_counters(&cluster, h)
                            );
                        }
                    }
                    runs.push(r);
                }
                Err(e) => {
                    prog.done();
                    eprintln!("  {} stream {}: {e}", kind.name(), i + 1);
                }
            }
        }
        drop(cluster);
    }
    prog.done();
    println!();
    let control: Vec<&StreamRun> = runs.iter().filter(|r| r.kind == Kind::Control).collect();
    let killed: Vec<&StreamRun> = runs.iter().filter(|r| r.kind == Kind::Killed).collect();
    let sc = summarize(&control, o.fps, o.late_ms);
    let sk = summarize(&killed, o.fps, o.late_ms);
    print_table(&[("control (no kill)", &sc), ("primary killed", &sk)], o);
    println!(
        "total run time {:.0} s{}",
        t0.elapsed().as_secs_f64(),
        if over_budget {
            " (time budget reached: the rest was skipped)"
        } else {
            ""
        }
    );
    write_outputs(&runs, o)?;
    Ok(runs)
}

fn print_run(r: &StreamRun, o: &StreamOptions) {
    let late = lateness(&r.arrivals_ms, o.fps);
    println!(
        "  {} #{}: kill at {} s (host {} -> {}), gap around it {} ms, longest gap {} ms, late \
         {}, lateness max {} ms, frames {}/{}, takeovers {}, resets {}, content {}{}",
        r.kind.name(),
        r.index + 1,
        fmt_opt(r.kill_ms.map(|k| k / 1000.0), 2),
        r.victim.map_or("-".into(), |v| v.to_string()),
        r.new_primary.map_or("?".into(), |v| v.to_string()),
        fmt_opt(r.kill_gap(o.fps), 1),
        fmt_opt(r.max_gap(), 1),
        r.late(o.fps, o.late_ms),
        fmt_opt(percentile(&late, 100.0), 1),
        r.arrivals_ms.len(),
        r.frames_expected,
        r.takeovers.map_or("?".into(), |t| t.to_string()),
        r.resets,
        if r.content_ok { "ok" } else { "BAD" },
        match (&r.error, r.no_takeover) {
            (_, true) => format!(
                " (no takeover within {:.1} s)",
                o.takeover_timeout.as_secs_f64()
            ),
            (Some(e), _) => format!(" ({e})"),
            _ => String::new(),
        }
    );
}

pub fn print_table(rows: &[(&str, &Summary)], o: &StreamOptions) {
    println!(
        "{:<19}{:>8}{:>11}{:>6}{:>22}{:>19}{:>18}{:>7}{:>7}{:>9}{:>7}",
        "run",
        "streams",
        "frames",
        "late",
        "lateness p50/p99/max",
        "gap p50/p99/max",
        "kill gap p50/max",
        "takeov",
        "no-tk",
        "content",
        "resets",
    );
    let three = |v: &[f64]| {
        format!(
            "{}/{}/{}",
            fmt_opt(median(v), 1),
            fmt_opt(percentile(v, 99.0), 1),
            fmt_opt(percentile(v, 100.0), 1)
        )
    };
    for (name, s) in rows {
        println!(
            "{:<19}{:>8}{:>11}{:>6}{:>22}{:>19}{:>18}{:>7}{:>7}{:>9}{:>7}",
            name,
            s.streams,
            format!("{}/{}", s.frames, s.frames_expected),
            s.late,
            three(&s.lateness),
            three(&s.gaps),
            if s.kill_gaps.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{}/{}",
                    fmt_opt(median(&s.kill_gaps), 1),
                    fmt_opt(percentile(&s.kill_gaps, 100.0), 1)
                )
            },
            s.takeovers,
            s.no_takeover,
            format!("{}/{}", s.content_ok, s.streams),
            s.resets,
        );
    }
    let normal = rows
        .iter()
        .find(|(_, s)| s.kill_gaps.is_empty())
        .and_then(|(_, s)| median(&s.gaps));
    let worst_kill = rows
        .iter()
        .flat_map(|(_, s)| s.kill_gaps.iter().copied())
        .max_by(f64::total_cmp);
    if let (Some(n), Some(k)) = (normal, worst_kill) {
        if n > 0.0 {
            println!(
                "worst gap around a kill {k:.1} ms = {:.1} x the control's median inter-frame gap \
                 ({n:.1} ms; the frame period is {:.1} ms)",
                k / n,
                1000.0 / f64::from(o.fps)
            );
        }
    }
    println!(
        "(ms; late: frames more than {} ms after deadline = frame 0's arrival + i/fps; gap: \
         between consecutive frame arrivals; kill gap: the longest gap ending after the kill and \
         starting within one frame period ({:.1} ms) of it; takeov: takeovers the hosts counted (ft.takeovers), 1 per kill \
         expected and 0 without; no-tk: nothing moved for {:.1} s after the kill; content: \
         every byte checked; resets: Tcp.EstabResets plus ECONNRESET, required 0)",
        o.late_ms,
        1000.0 / f64::from(o.fps),
        o.takeover_timeout.as_secs_f64()
    );
}

/// `stream.csv` (one line per stream), `stream-frames.csv` (one per frame), the lateness
/// plot of the killed stream with the longest interruption beside its deployment's control
/// stream, and the longest gap of every stream as bars.
fn write_outputs(runs: &[StreamRun], o: &StreamOptions) -> Result<(), String> {
    let mut csv = String::from(
        "kind,deployment,kill_ms,victim,new_primary,frames,frames_expected,late,lateness_p50_ms,\
         lateness_p99_ms,lateness_max_ms,gap_max_ms,kill_gap_ms,takeovers,no_takeover,resets,content_ok,error\n",
    );
    let mut frames_csv =
        String::from("kind,deployment,frame,arrival_ms,deadline_ms,lateness_ms,gap_ms\n");
    let period = 1000.0 / f64::from(o.fps);
    for r in runs {
        let late = lateness(&r.arrivals_ms, o.fps);
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.kind.name(),
            r.index,
            fmt_opt(r.kill_ms, 2),
            r.victim.map_or("".into(), |v| v.to_string()),
            r.new_primary.map_or("".into(), |v| v.to_string()),
            r.arrivals_ms.len(),
            r.frames_expected,
            r.late(o.fps, o.late_ms),
            fmt_opt(median(&late), 2),
            fmt_opt(percentile(&late, 99.0), 2),
            fmt_opt(percentile(&late, 100.0), 2),
            fmt_opt(r.max_gap(), 2),
            fmt_opt(r.kill_gap(o.fps), 2),
            r.takeovers.map_or("".into(), |t| t.to_string()),
            r.no_takeover,
            r.resets,
            r.content_ok,
            r.error.as_deref().unwrap_or("").replace([',', '\n'], ";"),
        );
        for (i, (a, l)) in r.arrivals_ms.iter().zip(&late).enumerate() {
            let gap = if i == 0 {
                String::new()
            } else {
                format!("{:.3}", a - r.arrivals_ms[i - 1])
            };
            let _ = writeln!(
                frames_csv,
                "{},{},{i},{a:.3},{:.3},{l:.3},{gap}",
                r.kind.name(),
                r.index,
                i as f64 * period
            );
        }
    }
    let csv_path = o.out.join("stream.csv");
    write_file(&csv_path, &csv)?;
    let frames_path = o.out.join("stream-frames.csv");
    write_file(&frames_path, &frames_csv)?;

    let worst = runs
        .iter()
        .filter(|r| r.kind == Kind::Killed)
        .filter_map(|r| Some((r, r.kill_gap(o.fps)?, r.kill_ms?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let lateness_path = o.out.join("stream-lateness.svg");
    if let Some((k, gap, kill_ms)) = worst {
        // Two seconds around the kill: the spike and the recovery, not 6 s of flat line.
        let (lo, hi) = (kill_ms - 1000.0, kill_ms + 1000.0);
        let points = |r: &StreamRun| -> Vec<(f64, f64)> {
            lateness(&r.arrivals_ms, o.fps)
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64 * period, *l))
                .filter(|(t, _)| *t >= lo && *t <= hi)
                .map(|(t, l)| (t / 1000.0, l))
                .collect()
        };
        let mut series = vec![Series {
            name: format!("primary killed (#{})", k.index + 1),
            points: points(k),
        }];
        if let Some(c) = runs
            .iter()
            .find(|r| r.kind == Kind::Control && r.index == k.index)
        {
            series.push(Series {
                name: format!("control (#{})", c.index + 1),
                points: points(c),
            });
        }
        let top = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(o.late_ms, f64::max);
        series.push(Series {
            name: "kill".into(),
            points: vec![(kill_ms / 1000.0, 0.0), (kill_ms / 1000.0, top)],
        });
        series.push(Series {
            name: format!("late limit {} ms", o.late_ms),
            points: vec![(lo.max(0.0) / 1000.0, o.late_ms), (hi / 1000.0, o.late_ms)],
        });
        write_file(
            &lateness_path,
            &line_svg(
                &format!(
                    "Frame lateness around a primary kill ({} fps, gap around the kill {gap:.0} ms)",
                    o.fps
                ),
                "frame deadline (s from frame 0)",
                "lateness (ms)",
                &series,
                None,
                None,
            ),
        )?;
    }
    let bars: Vec<(String, f64)> = runs
        .iter()
        .filter_map(|r| {
            let g = match r.kind {
                Kind::Killed => r.kill_gap(o.fps)?,
                Kind::Control => r.max_gap()?,
            };
            let what = match r.kind {
                Kind::Killed => "killed, gap around the kill",
                Kind::Control => "control, longest gap",
            };
            Some((format!("#{} {what}", r.index + 1), g))
        })
        .collect();
    let gaps_path = o.out.join("stream-gaps.svg");
    write_file(
        &gaps_path,
        &bars_svg(
            "Longest gap between frame arrivals: control streams vs around a primary kill",
            "ms",
            &bars,
        ),
    )?;
    println!(
        "wrote {}, {}, {}{}",
        csv_path.display(),
        frames_path.display(),
        gaps_path.display(),
        if worst.is_some() {
            format!(" and {}", lateness_path.display())
        } else {
            String::new()
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use crate::services::{stream_frame, stream_header};

    fn stream_bytes(frame_len: u32, frames: u32) -> Vec<u8> {
        let mut v = VecDeque::new();
        for n in 0..frames {
            stream_frame(n, frame_len, frames, &mut v);
        }
        v.into_iter().collect()
    }

    #[test]
    fn checker_counts_whole_frames_in_any_cut() {
        let all = stream_bytes(100, 5);
        for cut in [1usize, 7, 16, 99, 100, 101, 500] {
            let mut c = FrameChecker::new(100, 5);
            let mut done = Vec::new();
            for chunk in all.chunks(cut) {
                done.push(c.feed(chunk).unwrap());
            }
            assert_eq!(done.iter().sum::<u32>(), 5, "cut {cut}");
            assert!(c.complete());
            assert_eq!(c.frames_done(), 5);
        }
        let mut c = FrameChecker::new(100, 5);
        assert_eq!(c.feed(&all[..250]), Ok(2));
        assert!(!c.complete());
    }

    #[test]
    fn checker_finds_every_kind_of_damage() {
        let all = stream_bytes(100, 3);
        // One payload byte flipped.
        let mut bad = all.clone();
        bad[150] ^= 1;
        let e = FrameChecker::new(100, 3).feed(&bad).unwrap_err();
        assert!(e.contains("frame 1 byte 50"), "{e}");
        // A frame missing: frame 2's header where frame 1's should be.
        let mut skip = all[..100].to_vec();
        skip.extend(&all[200..]);
        let e = FrameChecker::new(100, 3).feed(&skip).unwrap_err();
        assert!(e.contains("header says frame 2"), "{e}");
        // Bytes after the last frame.
        let mut more = all.clone();
        more.push(0);
        assert!(FrameChecker::new(100, 3).feed(&more).is_err());
        // Not a frame at all.
        assert!(FrameChecker::new(100, 3).feed(&[0u8; 100]).is_err());
        // A stream of another frame length.
        assert!(FrameChecker::new(100, 3)
            .feed(&stream_bytes(120, 3))
            .is_err());
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header(&stream_header(7, 20833, 180)),
            Ok((7, 20833, 180))
        );
        let mut h = stream_header(7, 20833, 180);
        h[0] = b'X';
        assert!(parse_header(&h).is_err());
    }

    #[test]
    fn lateness_is_against_frame_zero_plus_the_period() {
        // 10 fps: deadlines 0, 100, 200, 300 ms.
        let a = [0.0, 100.0, 350.0, 360.0];
        assert_eq!(lateness(&a, 10), vec![0.0, 0.0, 150.0, 60.0]);
        assert_eq!(gaps(&a), vec![100.0, 250.0, 10.0]);
        assert!(lateness(&[], 10).is_empty());
        assert!(gaps(&[5.0]).is_empty());
        let r = StreamRun {
            kind: Kind::Killed,
            index: 0,
            frames_expected: 4,
            arrivals_ms: a.to_vec(),
            kill_ms: Some(120.0),
            victim: Some(0),
            new_primary: Some(1),
            takeovers: Some(1),
            no_takeover: false,
            content_ok: true,
            bytes: 400,
            resets: 0,
            error: None,
        };
        assert_eq!(r.late(10, 100.0), 1);
        assert_eq!(r.max_gap(), Some(250.0));
        // 10 fps: the window is 100 ms, and the kill at 120 falls in the 100..350 gap.
        assert_eq!(r.kill_gap(10), Some(250.0));
        let s = summarize(&[&r], 10, 100.0);
        assert_eq!((s.frames, s.late, s.kill_gaps.clone()), (4, 1, vec![250.0]));
        assert_eq!(s.takeovers, 1);
    }

    #[test]
    fn takeovers_count_only_hosts_that_answered_twice() {
        let before = [Some(0), Some(2), Some(0)];
        assert_eq!(
            takeovers_between(&before, &[None, Some(3), Some(0)]),
            Some(1)
        );
        assert_eq!(
            takeovers_between(&before, &[Some(0), Some(2), Some(0)]),
            Some(0)
        );
        assert_eq!(takeovers_between(&[None, None], &[Some(1), None]), None);
        // A counter that went backwards (a restarted host) counts nothing, not a wrap.
        assert_eq!(takeovers_between(&[Some(5)], &[Some(1)]), Some(0));
    }

    #[test]
    fn kill_gap_is_the_interruption_around_the_kill() {
        let a = [0.0, 33.0, 66.0, 140.0, 166.0, 200.0, 1300.0, 1333.0];
        // The kill at 70 falls in the 66..140 gap; the long gap from 200 starts 130 ms after
        // the kill, outside a 100 ms window, inside a 1 s one.
        assert_eq!(kill_gap(&a, 70.0, 100.0), Some(74.0));
        assert_eq!(kill_gap(&a, 70.0, 1000.0), Some(1100.0));
        // A kill exactly at an arrival belongs to the next gap.
        assert_eq!(kill_gap(&a, 66.0, 100.0), Some(74.0));
        // A kill inside the long gap is that gap.
        assert_eq!(kill_gap(&a, 250.0, 0.0), Some(1100.0));
        // Nothing after the kill.
        assert_eq!(kill_gap(&a, 2000.0, 1000.0), None);
    }

    #[test]
    fn kill_points_are_seeded_and_in_range() {
        let v: Vec<f64> = (0..50).map(|i| kill_fraction(1, i, 0.3, 0.7)).collect();
        assert!(v.iter().all(|f| (0.3..0.7).contains(f)), "{v:?}");
        assert_eq!(v[3], kill_fraction(1, 3, 0.3, 0.7));
        assert_ne!(v[3], kill_fraction(2, 3, 0.3, 0.7));
        assert_ne!(v[3], v[4]);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn frame_size_follows_rate_and_fps() {
        let o = StreamOptions {
            streams: 1,
            control: 1,
            secs: 6.0,
            fps: 30,
            rate_bps: 5e6,
            late_ms: 100.0,
            seed: 1,
            takeover_timeout: Duration::from_secs(5),
            budget: Duration::from_secs(60),
            out: PathBuf::new(),
            exe: PathBuf::new(),
        };
        assert_eq!((o.frame_len(), o.frames()), (20833, 180));
        assert!(o.check().is_ok());
        let tiny = StreamOptions { rate_bps: 8.0, ..o };
        assert_eq!(tiny.frame_len(), STREAM_HEADER_LEN as u32);
        let bad = StreamOptions { fps: 0, ..tiny };
        assert!(bad.check().is_err());
    }
}
