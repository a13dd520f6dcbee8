//! The runner never panics or hangs, whatever a SUT does: every suite script is run against
//! pseudo-random SUTs (random packets, garbage, timers in the past, random call results).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hydranet_conformance::packet::{self, Segment, TcpOpt};
use hydranet_conformance::sut::{
    Call, CallResult, SockStatEntry, Sut, TcpInfo, LOCAL_ADDR, REMOTE_ADDR, REMOTE_PORT,
};
use hydranet_conformance::{collect_scripts, run_file, run_text, Outcome};
use hydranet_core::Errno;

struct Chaos {
    rng: u64,
    now: u64,
    timer: Option<u64>,
}

impl Chaos {
    fn new(seed: u64) -> Chaos {
        Chaos {
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            now: 0,
            timer: Some(1000),
        }
    }
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn packet(&mut self) -> Vec<u8> {
        match self.pick(4) {
            0 => (0..self.pick(80)).map(|_| self.next() as u8).collect(),
            _ => {
                let flags = self.next() as u8;
                let opts = match self.pick(3) {
                    0 => vec![],
                    1 => vec![TcpOpt::Mss(1460), TcpOpt::SackOk, TcpOpt::Eol, TcpOpt::Eol],
                    _ => vec![
                        TcpOpt::Nop,
                        TcpOpt::Nop,
                        TcpOpt::Timestamp {
                            val: self.next() as u32,
                            ecr: self.next() as u32,
                        },
                    ],
                };
                let mut b = packet::build(&Segment {
                    src: LOCAL_ADDR,
                    dst: REMOTE_ADDR,
                    tos: self.pick(4) as u8,
                    ttl: 64,
                    ip_id: 0,
                    dont_fragment: true,
                    src_port: if self.pick(2) == 0 {
                        8080
                    } else {
                        self.next() as u16
                    },
                    dst_port: REMOTE_PORT,
                    seq: self.next() as u32,
                    ack: self.pick(3) as u32,
                    flags,
                    window: if self.pick(2) == 0 {
                        65535
                    } else {
                        self.next() as u16
                    },
                    urgent: 0,
                    options: packet::encode_options(&opts),
                    payload: vec![0; self.pick(20) as usize],
                });
                if self.pick(8) == 0 {
                    let i = self.pick(b.len() as u64) as usize;
                    b[i] ^= 0xff;
                }
                b
            }
        }
    }
    fn result(&mut self) -> CallResult {
        match self.pick(5) {
            0 => CallResult::Ok(self.pick(6) as i64),
            1 => CallResult::Value(self.pick(70000) as i64),
            2 => CallResult::Err(Errno::ECONNRESET),
            3 => CallResult::Blocked,
            _ => CallResult::Ok(0),
        }
    }
}

impl Sut for Chaos {
    fn sysctl(&mut self, _name: &str, _value: i64) -> Result<(), ()> {
        if self.pick(50) == 0 {
            Err(())
        } else {
            Ok(())
        }
    }
    fn advance(&mut self, now_us: u64) {
        self.now = now_us;
        self.timer = match self.pick(6) {
            0 => None,
            1 => Some(now_us), // already due: must not hang the runner
            2 => Some(now_us.saturating_sub(5)),
            _ => Some(now_us + 1 + self.pick(3_000_000)),
        };
    }
    fn inject(&mut self, now_us: u64, packet: &[u8]) {
        assert!(
            packet::parse(packet).is_ok(),
            "the runner injected a malformed packet"
        );
        self.now = now_us;
    }
    fn poll_transmit(&mut self, _now_us: u64) -> Option<Vec<u8>> {
        if self.pick(3) == 0 {
            Some(self.packet())
        } else {
            None
        }
    }
    fn poll_timeout(&self) -> Option<u64> {
        self.timer
    }
    fn syscall(&mut self, _now_us: u64, _call: &Call) -> CallResult {
        self.result()
    }
    fn poll_blocked(&mut self, _now_us: u64) -> Option<CallResult> {
        if self.pick(4) == 0 {
            Some(self.result())
        } else {
            None
        }
    }
    fn tcp_info(&mut self, _fd: i32) -> Option<TcpInfo> {
        if self.pick(5) == 0 {
            None
        } else {
            Some(TcpInfo {
                tcpi_state: self.pick(11) as u8,
                ..Default::default()
            })
        }
    }
    fn sockstat(&mut self) -> Option<Vec<SockStatEntry>> {
        match self.pick(3) {
            0 => None,
            _ => Some(vec![SockStatEntry {
                local_port: 8080,
                foreign_port: REMOTE_PORT,
                state: self.pick(11) as u8,
                owned: self.pick(2) == 0,
            }]),
        }
    }
    fn tcpdrop_state(&mut self, _now_us: u64, _state: u8) -> Option<()> {
        Some(())
    }
    fn set_mtu(&mut self, _mtu: u32) -> Result<(), ()> {
        Ok(())
    }
}

fn suite() -> Option<PathBuf> {
    let dir = match std::env::var_os("TCP_TESTSUITE") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tcp-testsuite"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "tcp-testsuite not found at {}",
        dir.display()
    );
    eprintln!("skipping: tcp-testsuite not found at {}", dir.display());
    None
}

#[test]
fn runner_survives_chaotic_suts() {
    let Some(dir) = suite() else { return };
    let scripts = collect_scripts(&[dir]).unwrap();
    let start = Instant::now();
    let mut passes = 0;
    for (i, path) in scripts.iter().enumerate() {
        for seed in 0..4u64 {
            let mut sut = Chaos::new(i as u64 * 31 + seed + 1);
            let t0 = Instant::now();
            let o = run_file(path, &["FreeBSD"], &mut sut);
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{} took {:?}",
                path.display(),
                t0.elapsed()
            );
            if o == Outcome::Pass {
                passes += 1;
            }
        }
    }
    eprintln!(
        "{} scripts x 4 chaotic SUTs in {:?} ({passes} accidental passes)",
        scripts.len(),
        start.elapsed()
    );
}

/// A SUT whose timer is always due in 1 microsecond cannot keep the runner busy forever.
struct Ticker(u64);

impl Sut for Ticker {
    fn sysctl(&mut self, _: &str, _: i64) -> Result<(), ()> {
        Ok(())
    }
    fn advance(&mut self, now_us: u64) {
        self.0 = now_us;
    }
    fn inject(&mut self, _: u64, _: &[u8]) {}
    fn poll_transmit(&mut self, _: u64) -> Option<Vec<u8>> {
        None
    }
    fn poll_timeout(&self) -> Option<u64> {
        Some(self.0 + 1)
    }
    fn syscall(&mut self, _: u64, _: &Call) -> CallResult {
        CallResult::Ok(0)
    }
    fn poll_blocked(&mut self, _: u64) -> Option<CallResult> {
        None
    }
    fn tcp_info(&mut self, _: i32) -> Option<TcpInfo> {
        None
    }
}

#[test]
fn endless_timers_are_cut_off() {
    let o = run_text(
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 0\n* > S 0:0(0) <...>\n",
        &mut Ticker(0),
    );
    match o {
        Outcome::Fail { message, .. } => assert!(message.contains("timer steps"), "{message}"),
        o => panic!("{o}"),
    }
}

#[test]
fn mangled_scripts_never_panic() {
    let Some(dir) = suite() else { return };
    let scripts = collect_scripts(&[dir]).unwrap();
    let junk = [
        "...",
        "<",
        ">",
        "(",
        ")",
        "[",
        "]",
        "%{",
        "}%",
        "`",
        "/*",
        "+",
        "*",
        "-1",
        "0x",
        ":",
        ",",
        "\n",
        "#ifdef X\n",
        "#endif\n",
        "4294967296",
        "99999999999999999999",
        "S.",
        "ack",
        "win",
        "TS val",
    ];
    let mut rng = Chaos::new(7);
    for path in scripts.iter().step_by(7) {
        let text = std::fs::read_to_string(path).unwrap();
        for _ in 0..20 {
            let mut t: Vec<char> = text.chars().collect();
            for _ in 0..1 + rng.pick(4) {
                let at = rng.pick(t.len() as u64 + 1) as usize;
                match rng.pick(3) {
                    0 if at < t.len() => {
                        let n = (1 + rng.pick(8) as usize).min(t.len() - at);
                        t.drain(at..at + n);
                    }
                    _ => {
                        let j = junk[rng.pick(junk.len() as u64) as usize];
                        t.splice(at..at, j.chars());
                    }
                }
            }
            let mangled: String = t.into_iter().collect();
            let mut sut = Chaos::new(rng.next());
            let _ = run_text(&mangled, &mut sut);
        }
    }
}
