//! `hydranet`: the HydraNet-FT command line.
//!
//! * `demo` — the replicated download and echo session with the primary killed twice, on the
//!   namespace network with a real Linux client (on the in-process simulator where namespaces
//!   or TUN devices cannot be made, and it says so); then the FreeBSD conformance suite.
//! * `host`, `redirector` — the daemons, each configured by a TOML file and its control socket.
//! * `ctl` — requests to a daemon's control socket (`v_host`, `setportopt`, `group`, `serve`,
//!   `route`, `replica`, `status`, `counters`, `shutdown`).
//! * `topology up|down` — the namespace network by hand.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};
use hydranet_core::ft::params::DetectorParams;
use hydranet_platform_linux_tun::{
    bench, bench_load, bench_stream, conformance_beside, hostd, netdemo, netns, redird, simdemo,
    suite_path, summary_line, topology, tunserver, CONFORMANCE_BIN, SUITE_ENV,
};
use hydranet_syscalls::ctl::{CtlClient, Request, Response};

#[derive(Parser)]
#[command(
    name = "hydranet",
    version,
    about = "HydraNet-FT: replicated TCP services, transparently to clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone, Copy)]
struct DetectorArgs {
    /// Client retransmissions that declare the primary dead (0: off).
    #[arg(long, default_value_t = DetectorParams::default().retransmit_threshold)]
    retransmit_threshold: u32,
    /// ... within this many milliseconds.
    #[arg(long, default_value_t = DetectorParams::default().retransmit_window_ms)]
    retransmit_window_ms: u32,
    /// Milliseconds between ack-channel heartbeats (0: off).
    #[arg(long, default_value_t = DetectorParams::default().heartbeat_interval_ms)]
    heartbeat_interval_ms: u32,
    /// Milliseconds of silence that declare a replica dead.
    #[arg(long, default_value_t = DetectorParams::default().heartbeat_timeout_ms)]
    heartbeat_timeout_ms: u32,
}

impl DetectorArgs {
    fn params(self) -> DetectorParams {
        DetectorParams {
            retransmit_threshold: self.retransmit_threshold,
            retransmit_window_ms: self.retransmit_window_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            heartbeat_timeout_ms: self.heartbeat_timeout_ms,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// The replicated download and echo session with primaries killed, then the conformance
    /// suite.
    Demo {
        /// Bytes the client downloads.
        #[arg(long, default_value_t = 16 << 20)]
        size: usize,
        /// Folder for the report's timeline plot (SVG).
        #[arg(long, value_name = "DIR", default_value = "target/hydranet-demo")]
        out: PathBuf,
        /// Write pcap captures of every interface the demo owns into DIR.
        #[arg(long, value_name = "DIR")]
        pcap: Option<PathBuf>,
        /// Runs the scenario this many times (two kills each), reporting every run and the
        /// worst stall; 25 runs are 50 kills.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Run on the in-process simulator even where namespaces could be made.
        #[arg(long)]
        simulated: bool,
        #[command(flatten)]
        detector: DetectorArgs,
        /// The tcp-testsuite folder [default: $HYDRANET_TCP_TESTSUITE, else
        /// ../shared/tcp-testsuite beside the workspace]
        #[arg(long, value_name = "PATH")]
        suite: Option<PathBuf>,
        /// Skip the conformance suite.
        #[arg(long)]
        no_conformance: bool,
        /// Print the runner's line for every script, not only its summary.
        #[arg(long, short)]
        verbose: bool,
    },
    /// The redirector daemon: tunnels client packets of replicated services to every replica.
    Redirector {
        /// Its configuration (TOML; see `redird::RedirectorConfig`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// The host-server daemon: the core with its virtual hosts, replica groups and services.
    Host {
        /// Its configuration (TOML; see `hostd::HostConfig`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// One request to a daemon's control socket, e.g. `hydranet ctl --socket S status`,
    /// `v_host 192.0.2.80`, `setportopt 192.0.2.80 80 backup 2 1000 10 30`,
    /// `route add 192.0.2.80 80 198.51.100.10,198.51.100.11`, `counters`.
    Ctl {
        /// The daemon's control socket [default: $HYDRANET_CTL, else /run/hydranet/host.sock].
        #[arg(long, short, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// The request, as words.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        request: Vec<String>,
    },
    /// Creates or removes the namespace network.
    Topology {
        #[command(subcommand)]
        action: TopologyCmd,
    },
    /// Benchmarks on the namespace network with a real Linux client: failover stalls,
    /// throughput by scheme, veth vs TUN path, a paced stream across a kill. Each writes CSV
    /// and SVG into --out.
    Bench {
        /// Folder for the CSV files and plots.
        #[arg(long, global = true, value_name = "DIR", default_value = bench::DEFAULT_OUT)]
        out: PathBuf,
        #[command(subcommand)]
        which: BenchCmd,
    },
    /// `bench path`'s bulk server on a TUN device: the core's plain stack or smoltcp.
    #[command(hide = true)]
    TunServer {
        /// hydranet or smoltcp.
        #[arg(long)]
        stack: tunserver::StackKind,
        /// The TUN device (in this process's namespace).
        #[arg(long)]
        dev: String,
        /// The server's address, routed into the device.
        #[arg(long)]
        addr: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 9000)]
        download_port: u16,
        #[arg(long, default_value_t = 9001)]
        upload_port: u16,
        /// Bytes per download (K, M, G suffixes).
        #[arg(long, value_parser = bench::parse_size)]
        bytes: usize,
        /// Send and receive buffer of every connection (K, M suffixes).
        #[arg(long, default_value = "256K", value_parser = bench::parse_size)]
        buf: usize,
        /// Seconds after which the server ends in any case.
        #[arg(long, default_value_t = 600.0)]
        max_secs: f64,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The client's stall over primary kills, per failure-detector setting (heartbeats only,
    /// client retransmissions only, both), in a download and an upload.
    Failover {
        /// Primary kills per setting and direction (two per deployment of 3 hosts).
        #[arg(long, default_value_t = 50)]
        kills: usize,
        /// Bytes per transfer (K, M suffixes).
        #[arg(long, default_value = "8M", value_parser = bench::parse_size)]
        size: usize,
        /// Seconds without a byte moving after a kill that count as "no takeover".
        #[arg(long, default_value_t = 5.0)]
        takeover_timeout: f64,
        /// Seconds after which no further deployment is started.
        #[arg(long, default_value_t = 1200)]
        budget: u64,
    },
    /// Throughput of direct TCP to a host server, redirection without FT and groups of 1, 2
    /// and 3 replicas, for each transfer size and a long bulk transfer, both directions.
    Schemes {
        /// Transfer sizes, comma-separated (K, M suffixes).
        #[arg(long, default_value = "16K,32K,64K,128K,256K,512K,1M", value_delimiter = ',', value_parser = bench::parse_size)]
        sizes: Vec<usize>,
        /// The long transfer's size.
        #[arg(long, default_value = "64M", value_parser = bench::parse_size)]
        bulk: usize,
        /// Transfers per point (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// Linux TCP across a veth pair (offloads on and off) against a Linux client to the
    /// core's plain Stack, smoltcp and the host daemon, each on a TUN device, in the same run.
    Path {
        /// Seconds each veth run sends for.
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Runs per path (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// One scheme under a steady one-way load for a fixed time, for profiling: prints the
    /// pids of the daemons (and of this process, whose thread is the Linux client) before the
    /// load starts, then the rate and each process's CPU use over the load.
    Load {
        /// direct, redirect, ft1, ft2, ft3, stack, smoltcp, veth-off, veth-on.
        #[arg(long, value_enum, default_value = "ft3")]
        scheme: bench_load::LoadScheme,
        /// upload or download (ignored by the veth schemes).
        #[arg(long, default_value = "upload", value_parser = parse_dir)]
        dir: bench::Dir,
        /// Bytes per transfer; transfers repeat until --secs have passed (K, M, G suffixes).
        #[arg(long, default_value = "256M", value_parser = bench::parse_size)]
        size: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 20.0)]
        secs: f64,
        /// Seconds between printing the pids and starting the load.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// 256 KiB socket buffers on the host daemons (default: FreeBSD's 64/32 KiB).
        #[arg(long)]
        large_buffers: bool,
    },
    /// A paced constant-bit-rate stream (like a video feed) from a group of 3 replicas to a
    /// Linux client, the primary killed mid-stream at a seeded random point; frame lateness
    /// and arrival gaps against control streams without a kill, every byte checked.
    Stream {
        /// Streams with a primary kill (one deployment of 3 hosts each).
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Streams without a kill, for comparison (run in the same deployments, before the
        /// kill) [default: as many as --streams].
        #[arg(long)]
        control: Option<usize>,
        /// Seconds per stream.
        #[arg(long, default_value_t = 6.0)]
        secs: f64,
        /// Frames per second.
        #[arg(long, default_value_t = 30)]
        fps: u32,
        /// Stream rate in Mbit/s, frame headers included (sets the frame size).
        #[arg(long, default_value_t = 5.0)]
        rate_mbit: f64,
        /// A frame is late when it arrives more than this many ms after its deadline.
        #[arg(long, default_value_t = 100.0)]
        late_ms: f64,
        /// Seed of the kill points.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds without a byte moving after a kill that count as "no takeover".
        #[arg(long, default_value_t = 5.0)]
        takeover_timeout: f64,
        /// Seconds after which no further deployment is started.
        #[arg(long, default_value_t = 600)]
        budget: u64,
    },
}

#[derive(Subcommand)]
enum TopologyCmd {
    /// Creates the namespaces, veths, TUN devices and routes, and prints the plan.
    Up {
        /// Name prefix of everything created (at most 7 characters).
        #[arg(long, default_value = "hn0")]
        prefix: String,
        /// Host servers.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
    },
    /// Removes everything whose name starts with the prefix (also leftovers of a crashed run).
    Down {
        #[arg(long, default_value = "hn0")]
        prefix: String,
    },
}

fn print_report(r: &simdemo::Report, simulated: bool) {
    let secs = r.virtual_secs.max(1e-9);
    println!("report:");
    println!("  bytes received        {} of {}", r.bytes, r.expected);
    println!(
        "  sha256 equal          {}",
        if r.sha_equal { "yes" } else { "NO" }
    );
    println!("  connection resets     {}", r.resets);
    if simulated {
        println!("  invariant violations  {}", r.violations);
    }
    println!("  longest stall         {} ms", r.longest_stall_ms);
    println!(
        "  throughput            {:.1} MB/s{}",
        r.bytes as f64 / secs / 1e6,
        if simulated { " (virtual time)" } else { "" }
    );
    let who: Vec<String> = r
        .primaries
        .iter()
        .map(|(t, p)| format!("replica {p} from {t:.3} s"))
        .collect();
    println!("  primary               {}", who.join(", "));
    println!(
        "  echo across the kills {}",
        if r.echo_ok { "ok" } else { "FAILED" }
    );
}

fn report_ok(r: &simdemo::Report) -> bool {
    r.sha_equal && r.resets == 0 && r.violations == 0 && r.echo_ok && r.bytes == r.expected
}

fn write_plot(r: &simdemo::Report, out: &std::path::Path, title: &str) {
    let plot = out.join("timeline.svg");
    match std::fs::create_dir_all(out).and_then(|_| simdemo::write_svg(r, title, &plot)) {
        Ok(()) => println!("  timeline plot         {}", plot.display()),
        Err(e) => eprintln!("  timeline plot not written ({}): {e}", plot.display()),
    }
}

fn simulated_demo(size: usize, out: &std::path::Path) -> bool {
    println!("client downloads {size} bytes from a service replicated on 3 hosts (simulated):");
    let r = simdemo::run(size, &mut |line| println!("{line}"));
    print_report(&r, true);
    write_plot(
        &r,
        out,
        "HydraNet-FT: client bytes received, primaries killed (simulated, 10 ms RTT)",
    );
    report_ok(&r)
}

fn network_demo(opts: &netdemo::DemoOptions, repeat: u32) -> bool {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this executable: {e}");
            return false;
        }
    };
    println!(
        "a real Linux client downloads {} bytes over HTTP from 192.0.2.80, a service replicated \
         on 3 host servers, with an echo session beside it:",
        opts.size
    );
    let mut all_ok = true;
    let mut worst = 0u64;
    let mut kills = 0usize;
    for run in 1..=repeat {
        if repeat > 1 {
            println!("run {run} of {repeat}");
        }
        match netdemo::run_once(opts, &exe) {
            Ok((r, c)) => {
                if repeat == 1 || !report_ok(&r) {
                    print_report(&r, false);
                    println!(
                        "  echo lines            {} ({} wrong), slowest answer {} ms",
                        c.echo_lines,
                        c.echo_bad,
                        c.echo_worst.as_millis()
                    );
                    if let Some(e) = c.error.as_ref().or(c.echo_error.as_ref()) {
                        println!("  client error          {e}");
                    }
                } else {
                    println!(
                        "  {} bytes, sha256 {}, resets {}, longest stall {} ms, echo {}",
                        r.bytes,
                        if r.sha_equal { "equal" } else { "DIFFERENT" },
                        r.resets,
                        r.longest_stall_ms,
                        if r.echo_ok { "ok" } else { "FAILED" }
                    );
                }
                if run == repeat {
                    write_plot(
                        &r,
                        &opts.out,
                        "HydraNet-FT: a Linux client's bytes received, primaries killed (namespaces, TUN)",
                    );
                }
                worst = worst
                    .max(r.longest_stall_ms)
                    .max(c.echo_worst.as_millis() as u64);
                kills += r.kills.len();
                all_ok &= report_ok(&r) && r.kills.len() == 2;
            }
            Err(e) => {
                eprintln!("error: {e}");
                all_ok = false;
            }
        }
    }
    if repeat > 1 {
        println!(
            "{repeat} runs, {kills} primaries killed, worst stall {worst} ms: {}",
            if all_ok {
                "nothing lost, corrupted or reset"
            } else {
                "FAILURES above"
            }
        );
    }
    if let Some(p) = &opts.pcap {
        println!("  captures              {}", p.display());
    }
    all_ok
}

fn ctl(socket: Option<PathBuf>, words: &[String]) -> ExitCode {
    let path = socket.unwrap_or_else(hydranet_syscalls::ctl::ctl_path);
    let line = words.join(" ");
    let req = match Request::parse(&line) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hydranet ctl: {e}: not a request: {line:?}");
            return ExitCode::from(2);
        }
    };
    // v_host and setportopt go through the library calls applications use.
    let result = match &req {
        Request::VHost(ip) => hydranet_syscalls::v_host_at(&path, *ip).map(|_| String::new()),
        Request::SetPortOpt {
            vip,
            port,
            mode,
            params,
        } => hydranet_syscalls::setportopt_at(&path, *vip, *port, *mode, params)
            .map(|_| String::new()),
        _ => match CtlClient::connect(&path).and_then(|mut c| c.call_raw(&line)) {
            Ok(Response::Ok(p)) => Ok(p),
            Ok(Response::Err(e, what)) => {
                eprintln!("hydranet ctl: {e}: {what}");
                return ExitCode::from(1);
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(p) => {
            for f in p.split(' ').filter(|f| !f.is_empty()) {
                println!("{f}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hydranet ctl: {} ({e})", path.display());
            ExitCode::from(1)
        }
    }
}

fn topology_cmd(action: TopologyCmd) -> ExitCode {
    match action {
        TopologyCmd::Up { prefix, hosts } => {
            if let Err(why) = netns::capable() {
                eprintln!("hydranet topology: {why}");
                return ExitCode::from(1);
            }
            match topology::up(&topology::TopologySpec::new(&prefix, hosts)) {
                Ok(t) => {
                    println!("client      ns {}  {:?}", t.client_ns, t.client_addrs);
                    println!(
                        "redirector  ns {}  tun {}  addr {}",
                        t.redirector_ns, t.redirector_tun, t.redirector_addr
                    );
                    for i in 0..t.host_ns.len() {
                        println!(
                            "host {i}      ns {}  tun {}  addr {}",
                            t.host_ns[i], t.host_tuns[i], t.host_addrs[i]
                        );
                    }
                    println!("remove with: hydranet topology down --prefix {prefix}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hydranet topology up: {e}");
                    ExitCode::from(1)
                }
            }
        }
        TopologyCmd::Down { prefix } => match topology::down(&prefix) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hydranet topology down: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn demo(suite: Option<PathBuf>, verbose: bool) -> ExitCode {
    println!("conformance: the core against the FreeBSD tcp-testsuite");
    let suite = suite_path(suite.as_deref(), std::env::var_os(SUITE_ENV).as_deref());
    let suite = suite.canonicalize().unwrap_or(suite);
    if !suite.is_dir() {
        eprintln!(
            "error: tcp-testsuite folder {} not found (give --suite PATH or set {SUITE_ENV})",
            suite.display()
        );
        return ExitCode::from(1);
    }
    let runner = match std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(conformance_beside)
    {
        Some(r) if r.is_file() => r,
        r => {
            let where_ = r.map(|r| r.display().to_string()).unwrap_or_default();
            eprintln!(
                "error: {CONFORMANCE_BIN} not found next to this executable ({where_}); \
                 build it with `cargo build -p hydranet-conformance` into the same target folder"
            );
            return ExitCode::from(1);
        }
    };
    println!("running {} {}", runner.display(), suite.display());
    let out = match Command::new(&runner).arg(&suite).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", runner.display());
            return ExitCode::from(1);
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if verbose {
        print!("{stdout}");
    }
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    match summary_line(&stdout) {
        Some(s) if !verbose => println!("conformance: {}", s.trim()),
        Some(_) => {}
        None => eprintln!("error: {CONFORMANCE_BIN} printed no summary line"),
    }
    match out.status.code() {
        Some(0) if summary_line(&stdout).is_some() => ExitCode::SUCCESS,
        Some(0) => ExitCode::from(1),
        Some(c) => {
            eprintln!("error: {CONFORMANCE_BIN} exited with status {c}");
            ExitCode::from(u8::try_from(c).unwrap_or(1).max(1))
        }
        None => {
            eprintln!("error: {CONFORMANCE_BIN} was killed by a signal");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Demo {
            size,
            out,
            pcap,
            repeat,
            simulated,
            detector,
            suite,
            no_conformance,
            verbose,
        } => {
            let replicated = match netns::capable() {
                Ok(()) if !simulated => network_demo(
                    &netdemo::DemoOptions {
                        size,
                        out: out.clone(),
                        pcap,
                        detector: detector.params(),
                        quiet: false,
                    },
                    repeat.max(1),
                ),
                Ok(()) => simulated_demo(size, &out),
                Err(why) => {
                    println!(
                        "hydranet demo: cannot build the namespace network here ({why}); running \
                         the same scenario in the in-process simulator (virtual time, 10 ms RTT)."
                    );
                    simulated_demo(size, &out)
                }
            };
            let conformance = if no_conformance {
                ExitCode::SUCCESS
            } else {
                demo(suite, verbose)
            };
            if !replicated {
                eprintln!("error: the replicated scenario lost, corrupted or reset the stream");
                return ExitCode::from(1);
            }
            conformance
        }
        Cmd::Redirector { config } => {
            let run = redird::RedirectorConfig::load(&config).and_then(|c| redird::run(&c));
            daemon_exit("redirector", run)
        }
        Cmd::Host { config } => {
            let run = hostd::HostConfig::load(&config).and_then(|c| hostd::run(&c));
            daemon_exit("host", run)
        }
        Cmd::Ctl { socket, request } => ctl(socket, &request),
        Cmd::Topology { action } => topology_cmd(action),
        Cmd::Bench { out, which } => bench_cmd(out, which),
        Cmd::TunServer {
            stack,
            dev,
            addr,
            download_port,
            upload_port,
            bytes,
            buf,
            max_secs,
        } => daemon_exit(
            "tun-server",
            tunserver::run(&tunserver::ServerOptions {
                stack,
                dev,
                addr,
                download_port,
                upload_port,
                bytes: bytes as u64,
                buf,
                max_secs,
            }),
        ),
    }
}

fn bench_cmd(out: PathBuf, which: BenchCmd) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("hydranet bench: cannot find this executable: {e}");
            return ExitCode::from(1);
        }
    };
    let r = match which {
        BenchCmd::Failover {
            kills,
            size,
            takeover_timeout,
            budget,
        } => bench::failover(&bench::FailoverOptions {
            kills,
            size,
            takeover_timeout: std::time::Duration::from_secs_f64(takeover_timeout.max(0.1)),
            budget: std::time::Duration::from_secs(budget),
            out,
            exe,
        })
        .map(|_| ()),
        BenchCmd::Schemes {
            sizes,
            bulk,
            repeat,
        } => bench::schemes(&bench::SchemesOptions {
            sizes,
            bulk,
            repeat,
            out,
            exe,
        })
        .map(|_| ()),
        BenchCmd::Path { secs, repeat } => bench::path(&bench::PathOptions {
            secs: secs.clamp(0.1, 60.0),
            repeat,
            out,
            exe,
        })
        .map(|_| ()),
        BenchCmd::Load {
            scheme,
            dir,
            size,
            secs,
            warmup,
            large_buffers,
        } => bench_load::run(&bench_load::LoadOptions {
            scheme,
            dir,
            size,
            secs: secs.clamp(0.1, 600.0),
            warmup: warmup.clamp(0.0, 60.0),
            large_buffers,
            exe,
        }),
        BenchCmd::Stream {
            streams,
            control,
            secs,
            fps,
            rate_mbit,
            late_ms,
            seed,
            takeover_timeout,
            budget,
        } => bench_stream::stream(&bench_stream::StreamOptions {
            streams,
            control: control.unwrap_or(streams),
            secs,
            fps,
            rate_bps: rate_mbit * 1e6,
            late_ms,
            seed,
            takeover_timeout: std::time::Duration::from_secs_f64(
                takeover_timeout.clamp(0.1, 600.0),
            ),
            budget: std::time::Duration::from_secs(budget),
            out,
            exe,
        })
        .map(|_| ()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hydranet bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_dir(s: &str) -> Result<bench::Dir, String> {
    match s {
        "upload" => Ok(bench::Dir::Upload),
        "download" => Ok(bench::Dir::Download),
        _ => Err(format!("{s:?}: upload or download")),
    }
}

fn daemon_exit(name: &str, r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hydranet {name}: {e}");
            ExitCode::from(1)
        }
    }
}
