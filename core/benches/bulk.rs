//! Bulk transfer between two stacks in memory: HydraNet-FT's core against smoltcp (the
//! workload itself is in `support/inmem.rs`, shared with the `segcount` example).
//!
//! After the criterion groups a summary table is printed, measured independently of criterion
//! (median of a few runs timed with `std::time::Instant`), with the size of one connection's
//! control state in each stack.
//!
//! The summary's runs alternate between the stacks; every run's rate goes to `bulk.csv` and the
//! medians to `bulk.svg` under `HYDRANET_BENCH_OUT` (default `target/hydranet-bench`).
//!
//! `HYDRANET_BENCH_QUICK=1` shrinks the transfer and the sample counts for CI smoke runs.

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use criterion::{BenchmarkId, Criterion, Throughput};

#[path = "support/inmem.rs"]
mod inmem;

use inmem::{hydranet_transfer, smoltcp_transfer, Outcome, Source, MTU, SOCKBUF};
use smoltcp::socket::tcp as smol_tcp;

// ------------------------------------------------------------------------------------------
// Harness

struct Settings {
    quick: bool,
    /// Bytes per transfer.
    total: usize,
    /// Runs per stack for the summary's median.
    summary_runs: usize,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("HYDRANET_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        // `cargo test --benches` runs this binary without `--bench`: keep it to a smoke run.
        let benchmarking = std::env::args().any(|a| a == "--bench");
        if quick || !benchmarking {
            Settings {
                quick: true,
                total: 4 << 20,
                summary_runs: 3,
            }
        } else {
            Settings {
                quick: false,
                total: 64 << 20,
                summary_runs: 5,
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median throughput in MB/s (10^6 bytes) over `runs` transfers, and the last outcome;
/// every run's rate goes into `rates`.
fn measure(runs: usize, rates: &mut Vec<f64>, mut f: impl FnMut() -> Outcome) -> (f64, Outcome) {
    let mut mine = Vec::with_capacity(runs);
    let mut last = Outcome::default();
    for _ in 0..runs {
        let t0 = StdInstant::now();
        last = black_box(f());
        let secs = t0.elapsed().as_secs_f64();
        mine.push(last.bytes as f64 / secs / 1e6);
    }
    rates.extend_from_slice(&mine);
    (median(mine), last)
}

/// Where the summary's CSV and SVG go: `HYDRANET_BENCH_OUT`, else `target/hydranet-bench`.
fn out_dir() -> std::path::PathBuf {
    std::env::var_os("HYDRANET_BENCH_OUT")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("target/hydranet-bench"))
}

/// Every run's rate as CSV, and the two medians as an SVG bar chart with the ratio in its
/// title, so a run leaves the same kind of record as `hydranet bench`.
fn write_records(rates: &[(&str, Vec<f64>)], ratio: f64, total: usize) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let mut csv = String::from("stack,run,bytes,mb_per_s\n");
    for (name, v) in rates {
        for (i, r) in v.iter().enumerate() {
            let _ = writeln!(csv, "{name},{i},{total},{r:.1}");
        }
    }
    std::fs::write(dir.join("bulk.csv"), csv)?;
    let max = rates
        .iter()
        .map(|(_, v)| median(v.clone()))
        .fold(1.0f64, f64::max);
    let (w, h, left, bar_h) = (640.0, 60.0 + 40.0 * rates.len() as f64, 90.0, 24.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\">in-memory \
         bulk transfer, {} MiB one way: median MB/s (hydranet/smoltcp {ratio:.3})</text>\n",
        total >> 20
    );
    for (i, (name, v)) in rates.iter().enumerate() {
        let m = median(v.clone());
        let y = 40.0 + 40.0 * i as f64;
        let len = (w - left - 90.0) * m / max;
        let _ = writeln!(
            svg,
            "<text x=\"10\" y=\"{:.0}\">{name}</text><rect x=\"{left}\" y=\"{y:.0}\" \
             width=\"{len:.1}\" height=\"{bar_h}\" fill=\"#4a7ab0\"/><text x=\"{:.1}\" \
             y=\"{:.0}\">{m:.0}</text>",
            y + 16.0,
            left + len + 6.0,
            y + 16.0
        );
    }
    svg.push_str("</svg>\n");
    std::fs::write(dir.join("bulk.svg"), svg)
}

fn criterion_groups(c: &mut Criterion, settings: &Settings, src: &Source) {
    let mut group = c.benchmark_group("bulk_transfer");
    group.throughput(Throughput::Bytes(settings.total as u64));
    group.sample_size(10);
    if settings.quick {
        group.warm_up_time(StdDuration::from_millis(200));
        group.measurement_time(StdDuration::from_secs(1));
    } else {
        group.warm_up_time(StdDuration::from_secs(2));
        group.measurement_time(StdDuration::from_secs(10));
    }
    let total = settings.total;
    // The size is part of the id so quick and full runs are not compared with each other.
    let size = format!("{}MiB", total >> 20);
    group.bench_function(BenchmarkId::new("hydranet", &size), |b| {
        b.iter(|| hydranet_transfer(src, black_box(total), false))
    });
    group.bench_function(BenchmarkId::new("smoltcp", &size), |b| {
        b.iter(|| smoltcp_transfer(src, black_box(total), false))
    });
    group.finish();
}

fn summary(settings: &Settings, src: &Source) {
    let total = settings.total;
    let (mut ours_rates, mut smol_rates) = (Vec::new(), Vec::new());
    // Interleaved, one run of each at a time, so that a noisy moment hits both.
    let (mut ours_out, mut smol_out) = (Outcome::default(), Outcome::default());
    for run in 0..settings.summary_runs {
        eprintln!("bulk summary: run {} of {}", run + 1, settings.summary_runs);
        (_, ours_out) = measure(1, &mut ours_rates, || hydranet_transfer(src, total, false));
        (_, smol_out) = measure(1, &mut smol_rates, || smoltcp_transfer(src, total, false));
    }
    let (ours, smol) = (median(ours_rates.clone()), median(smol_rates.clone()));
    let ours_cb = core::mem::size_of::<hydranet_core::socket::socketvar::Socket<'static>>();
    let ours_tcpcb = core::mem::size_of::<hydranet_core::netinet::tcp_var::TcpCb>();
    let smol_cb = core::mem::size_of::<smol_tcp::Socket<'static>>();
    let sockbuf = core::mem::size_of::<hydranet_core::socket::sockbuf::SockBuf<'static>>();

    println!();
    println!(
        "bulk transfer summary: {} MiB one way, MTU {MTU}, {} KiB socket buffers, \
         median of {} runs{}",
        total >> 20,
        SOCKBUF >> 10,
        settings.summary_runs,
        if settings.quick { " (quick mode)" } else { "" }
    );
    if cfg!(debug_assertions) {
        println!("(unoptimised build, e.g. `cargo test --benches`: the figures mean nothing)");
    }
    println!(
        "{:<10} {:>10} {:>10} {:>8} {:>6} {:>8} {:>10} {:>10} {:>8} {:>8}",
        "stack",
        "MB/s",
        "packets",
        "data",
        "ctrl",
        "rounds",
        "timer jmp",
        "virt ms",
        "rcvbuf",
        "sndbuf"
    );
    for (name, rate, o) in [("hydranet", ours, ours_out), ("smoltcp", smol, smol_out)] {
        println!(
            "{:<10} {:>10.1} {:>10} {:>8} {:>6} {:>8} {:>10} {:>10.1} {:>8} {:>8}",
            name,
            rate,
            o.segs.packets,
            o.segs.data,
            o.segs.control(),
            o.rounds,
            o.time_jumps,
            o.virtual_us as f64 / 1000.0,
            o.bufs.0,
            o.bufs.1
        );
    }
    println!("ratio ours/smoltcp: {:.3}", ours / smol);
    let rates = [("hydranet", ours_rates), ("smoltcp", smol_rates)];
    match write_records(&rates, ours / smol, total) {
        Ok(()) => println!("wrote {0}/bulk.csv and {0}/bulk.svg", out_dir().display()),
        Err(e) => println!(
            "could not write the CSV/SVG under {}: {e}",
            out_dir().display()
        ),
    }
    println!(
        "connection control state: hydranet Socket {ours_cb} bytes (of which tcpcb \
         {ours_tcpcb}, 2 x SockBuf handle {sockbuf}; storage is on the heap), smoltcp \
         tcp::Socket {smol_cb} bytes"
    );
}

fn main() {
    let settings = Settings::from_env();
    let src = Source::new();

    // Both stacks must deliver every byte intact before their speed means anything.
    let check = 1 << 20;
    let o = hydranet_transfer(&src, check, true);
    assert_eq!(o.bytes, check);
    let o = smoltcp_transfer(&src, check, true);
    assert_eq!(o.bytes, check);

    // For profilers: `HYDRANET_BENCH_PROFILE=hydranet|smoltcp` runs only that stack's transfer,
    // repeatedly, without criterion.
    if let Ok(which) = std::env::var("HYDRANET_BENCH_PROFILE") {
        let f = match which.as_str() {
            "hydranet" => hydranet_transfer,
            "smoltcp" => smoltcp_transfer,
            other => panic!("HYDRANET_BENCH_PROFILE: unknown stack {other:?}"),
        };
        let (rate, _) = measure(settings.summary_runs * 4, &mut Vec::new(), || {
            f(&src, settings.total, false)
        });
        println!("{which}: {rate:.1} MB/s");
        return;
    }

    let mut c = Criterion::default().configure_from_args();
    criterion_groups(&mut c, &settings, &src);
    c.final_summary();

    summary(&settings, &src);
}
