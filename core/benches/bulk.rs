//! Bulk transfer between two stacks in memory: HydraNet-FT's core against smoltcp (the
//! workload itself is in `support/inmem.rs`, shared with the `segcount` example).
//!
//! After the criterion groups a summary table is printed, measured independently of criterion
//! (median of a few runs timed with `std::time::Instant`), with the size of one connection's
//! control state in each stack.
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

/// Median throughput in MB/s (10^6 bytes) over `runs` transfers, and the last outcome.
fn measure(runs: usize, mut f: impl FnMut() -> Outcome) -> (f64, Outcome) {
    let mut rates = Vec::with_capacity(runs);
    let mut last = Outcome::default();
    for _ in 0..runs {
        let t0 = StdInstant::now();
        last = black_box(f());
        let secs = t0.elapsed().as_secs_f64();
        rates.push(last.bytes as f64 / secs / 1e6);
    }
    (median(rates), last)
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
    let (ours, ours_out) = measure(settings.summary_runs, || {
        hydranet_transfer(src, total, false)
    });
    let (smol, smol_out) = measure(settings.summary_runs, || {
        smoltcp_transfer(src, total, false)
    });
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
        let (rate, _) = measure(settings.summary_runs * 4, || f(&src, settings.total, false));
        println!("{which}: {rate:.1} MB/s");
        return;
    }

    let mut c = Criterion::default().configure_from_args();
    criterion_groups(&mut c, &settings, &src);
    c.final_summary();

    summary(&settings, &src);
}
