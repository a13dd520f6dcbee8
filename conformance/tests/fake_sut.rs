//! The runner judged against a small hand-written fake TCP: a correct script passes, and each
//! mutation — of the fake's behaviour or of the script — fails (never passes).

use std::collections::VecDeque;

use hydranet_conformance::bsd;
use hydranet_conformance::packet::{
    self, Segment, TcpOpt, TH_ACK, TH_ECE, TH_FIN, TH_PUSH, TH_RST, TH_SYN,
};
use hydranet_conformance::sut::{
    Call, CallResult, Sut, TcpInfo, LOCAL_ADDR, REMOTE_ADDR, REMOTE_PORT,
};
use hydranet_conformance::{run_text, Outcome};
use hydranet_core::Errno;

/// Ways the fake can be wrong (all default to right).
#[derive(Clone, Debug)]
struct Knobs {
    syn_extra_flags: u8,
    /// Added to the sequence number of every segment after the SYN.
    seq_delta: u32,
    /// Added to the ack of every segment the fake sends.
    ack_delta: u32,
    window: u16,
    mss: u16,
    sack_ok: bool,
    /// Send each pure ACK twice.
    duplicate_acks: bool,
    /// First SYN retransmission timeout; later ones grow by half.
    rto_us: u64,
    rcvbuf: i64,
    connect_errno: Errno,
    /// Added to TS val after the first segment.
    ts_jump: u32,
    /// Data segments carry this ECN codepoint.
    data_ecn: packet::Ecn,
    /// Blocking connect fails this much later than TCP_KEEPINIT says.
    keepinit_extra_us: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            syn_extra_flags: 0,
            seq_delta: 0,
            ack_delta: 0,
            window: 65535,
            mss: 1460,
            sack_ok: true,
            duplicate_acks: false,
            rto_us: 1_000_000,
            rcvbuf: 65536,
            connect_errno: Errno::EINPROGRESS,
            ts_jump: 0,
            data_ecn: packet::Ecn::NotEct,
            keepinit_extra_us: 0,
        }
    }
}

const ISN: u32 = 0x1234_5678;
/// The fake's TS clock runs this many ms ahead of virtual time.
const TS_BASE: u32 = 5000;
const EPHEMERAL_PORT: u16 = 40001;

#[derive(Default)]
struct Fake {
    k: Knobs,
    now: u64,
    out: VecDeque<Vec<u8>>,
    sysctls_known: Vec<&'static str>,
    // one socket (fd 3) and possibly one accepted connection (fd 4)
    listening: bool,
    accepted: bool,
    nonblock: bool,
    state: u8,
    local_port: u16,
    snd_nxt: u32,
    rcv_nxt: u32,
    peer_ts: Option<u32>,
    sent_segments: u32,
    rtx_at: Option<u64>,
    rto: u64,
    keepinit_s: i32,
    keepinit_at: Option<u64>,
    blocked_connect: bool,
    completed: Option<CallResult>,
    so_error: i64,
    unread: usize,
    closed: bool,
}

impl Fake {
    fn new(k: Knobs) -> Fake {
        Fake {
            k,
            sysctls_known: vec!["net.inet.tcp.rfc1323", "net.inet.tcp.hostcache.purgenow"],
            keepinit_s: 75,
            ..Default::default()
        }
    }

    fn ts_val(&self) -> u32 {
        let jump = if self.sent_segments > 0 {
            self.k.ts_jump
        } else {
            0
        };
        (self.now / 1000) as u32 + TS_BASE + jump
    }

    fn emit(&mut self, flags: u8, seq: u32, payload: usize, opts: Vec<TcpOpt>, ecn: packet::Ecn) {
        let mut seg = Segment {
            src: LOCAL_ADDR,
            dst: REMOTE_ADDR,
            tos: ecn as u8,
            ttl: 64,
            ip_id: 0,
            dont_fragment: true,
            src_port: self.local_port,
            dst_port: REMOTE_PORT,
            seq,
            ack: 0,
            flags,
            window: self.k.window,
            urgent: 0,
            options: packet::encode_options(&opts),
            payload: vec![0; payload],
        };
        if flags & TH_ACK != 0 {
            seg.ack = self.rcv_nxt.wrapping_add(self.k.ack_delta);
        }
        self.out.push_back(packet::build(&seg));
        self.sent_segments += 1;
    }

    fn syn_options(&self) -> Vec<TcpOpt> {
        let mut o = vec![TcpOpt::Mss(self.k.mss), TcpOpt::Nop, TcpOpt::WScale(6)];
        if self.k.sack_ok {
            o.push(TcpOpt::SackOk);
        } else {
            o.extend([TcpOpt::Nop, TcpOpt::Nop]);
        }
        o.push(TcpOpt::Timestamp {
            val: self.ts_val(),
            ecr: 0,
        });
        o
    }

    fn ts_opts(&self) -> Vec<TcpOpt> {
        match self.peer_ts {
            Some(ecr) => vec![
                TcpOpt::Nop,
                TcpOpt::Nop,
                TcpOpt::Timestamp {
                    val: self.ts_val(),
                    ecr,
                },
            ],
            None => vec![],
        }
    }

    fn send_syn(&mut self) {
        let opts = self.syn_options();
        self.emit(
            TH_SYN | self.k.syn_extra_flags,
            ISN,
            0,
            opts,
            packet::Ecn::NotEct,
        );
    }

    fn send_ack(&mut self) {
        let seq = self.snd_nxt.wrapping_add(self.k.seq_delta);
        let opts = self.ts_opts();
        self.emit(TH_ACK, seq, 0, opts.clone(), packet::Ecn::NotEct);
        if self.k.duplicate_acks {
            self.emit(TH_ACK, seq, 0, opts, packet::Ecn::NotEct);
        }
    }

    fn finish_connect(&mut self, r: CallResult) {
        if self.blocked_connect {
            self.blocked_connect = false;
            self.completed = Some(r);
        }
    }

    fn input(&mut self, seg: Segment) {
        let opts = packet::decode_options(&seg.options).unwrap_or_default();
        let ts = opts.iter().find_map(|o| match o {
            TcpOpt::Timestamp { val, ecr } => Some((*val, *ecr)),
            _ => None,
        });
        match self.state {
            bsd::TCPS_SYN_SENT => {
                // Accept a SYN-ACK only if the runner mapped ack and ecr to our numbers.
                if seg.flags & (TH_SYN | TH_ACK) != TH_SYN | TH_ACK
                    || seg.ack != ISN.wrapping_add(1)
                {
                    return;
                }
                if let Some((_, ecr)) = ts {
                    // ecr must echo a TS val we sent (after the first SYN, at most now).
                    if ecr < TS_BASE || ecr > self.ts_val() {
                        return;
                    }
                }
                self.peer_ts = ts.map(|t| t.0);
                self.rcv_nxt = seg.seq.wrapping_add(1);
                self.snd_nxt = ISN.wrapping_add(1);
                self.state = bsd::TCPS_ESTABLISHED;
                self.rtx_at = None;
                self.keepinit_at = None;
                self.send_ack();
                self.finish_connect(CallResult::Ok(0));
            }
            bsd::TCPS_LISTEN => {
                if seg.flags & TH_SYN == 0 || seg.flags & TH_ACK != 0 {
                    return;
                }
                self.peer_ts = ts.map(|t| t.0);
                self.rcv_nxt = seg.seq.wrapping_add(1);
                self.state = bsd::TCPS_SYN_RECEIVED;
                self.emit(
                    TH_SYN | TH_ACK,
                    ISN,
                    0,
                    vec![
                        TcpOpt::Mss(self.k.mss),
                        TcpOpt::SackOk,
                        TcpOpt::Eol,
                        TcpOpt::Eol,
                    ],
                    packet::Ecn::NotEct,
                );
                self.snd_nxt = ISN.wrapping_add(1);
            }
            bsd::TCPS_SYN_RECEIVED if seg.flags & TH_ACK != 0 && seg.ack == ISN.wrapping_add(1) => {
                self.state = bsd::TCPS_ESTABLISHED;
            }
            bsd::TCPS_ESTABLISHED | bsd::TCPS_FIN_WAIT_1 => {
                if seg.flags & TH_RST != 0 {
                    self.state = bsd::TCPS_CLOSED;
                    return;
                }
                if let Some((val, _)) = ts {
                    self.peer_ts = Some(val);
                }
                if !seg.payload.is_empty() && seg.seq == self.rcv_nxt {
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(seg.payload.len() as u32);
                    self.unread += seg.payload.len();
                    self.send_ack();
                }
                if seg.flags & TH_FIN != 0 {
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                    self.state = bsd::TCPS_CLOSE_WAIT;
                    self.send_ack();
                }
            }
            _ => {}
        }
    }
}

impl Sut for Fake {
    fn sysctl(&mut self, name: &str, _value: i64) -> Result<(), ()> {
        if self.sysctls_known.contains(&name) {
            Ok(())
        } else {
            Err(())
        }
    }

    fn advance(&mut self, now_us: u64) {
        assert!(
            now_us >= self.now,
            "time went backwards: {now_us} < {}",
            self.now
        );
        self.now = now_us;
        if let Some(at) = self.keepinit_at {
            if at <= now_us {
                self.keepinit_at = None;
                self.rtx_at = None;
                self.state = bsd::TCPS_CLOSED;
                if self.blocked_connect {
                    self.finish_connect(CallResult::Err(Errno::ETIMEDOUT));
                } else {
                    self.so_error = Errno::ETIMEDOUT.code().into();
                }
            }
        }
        if let Some(at) = self.rtx_at {
            if at <= now_us {
                self.send_syn();
                self.rto = self.rto * 3 / 2;
                self.rtx_at = Some(at + self.rto);
            }
        }
    }

    fn inject(&mut self, now_us: u64, bytes: &[u8]) {
        self.advance(now_us);
        let seg = packet::parse(bytes).expect("the runner builds valid packets");
        assert_eq!((seg.src, seg.dst), (REMOTE_ADDR, LOCAL_ADDR));
        assert_eq!(seg.src_port, REMOTE_PORT);
        if seg.dst_port != self.local_port {
            return;
        }
        self.input(seg);
    }

    fn poll_transmit(&mut self, _now_us: u64) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<u64> {
        match (self.rtx_at, self.keepinit_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn syscall(&mut self, now_us: u64, call: &Call) -> CallResult {
        self.advance(now_us);
        match *call {
            Call::Socket => CallResult::Ok(3),
            Call::GetFl { fd: 3 } => CallResult::Ok(if self.nonblock { 6 } else { 2 }),
            Call::SetFl { fd: 3, flags } => {
                self.nonblock = flags & 4 != 0;
                CallResult::Ok(0)
            }
            Call::SetSockOpt {
                fd: 3,
                level: 6,
                name: 128,
                value,
            } => {
                self.keepinit_s = value;
                CallResult::Ok(0)
            }
            Call::SetSockOpt { fd: 3, .. } => CallResult::Ok(0),
            Call::GetSockOpt {
                fd: 3 | 4,
                level: 0xffff,
                name,
            } => match name {
                0x1002 => CallResult::Value(self.k.rcvbuf),
                0x1007 => CallResult::Value(std::mem::take(&mut self.so_error)),
                _ => CallResult::Err(Errno::ENOPROTOOPT),
            },
            Call::Bind { fd: 3 } => {
                self.local_port = 8080;
                CallResult::Ok(0)
            }
            Call::Listen { fd: 3, .. } => {
                self.listening = true;
                self.state = bsd::TCPS_LISTEN;
                CallResult::Ok(0)
            }
            Call::Accept { fd: 3 } => {
                if self.state == bsd::TCPS_ESTABLISHED && !self.accepted {
                    self.accepted = true;
                    CallResult::Ok(4)
                } else {
                    CallResult::Err(Errno::EWOULDBLOCK)
                }
            }
            Call::Connect { fd: 3 } => {
                self.local_port = EPHEMERAL_PORT;
                self.state = bsd::TCPS_SYN_SENT;
                self.send_syn();
                self.rto = self.k.rto_us;
                self.rtx_at = Some(now_us + self.rto);
                let keepinit = u64::try_from(self.keepinit_s).unwrap_or(75) * 1_000_000;
                self.keepinit_at = Some(now_us + keepinit + self.k.keepinit_extra_us);
                if self.nonblock {
                    CallResult::Err(self.k.connect_errno)
                } else {
                    self.blocked_connect = true;
                    CallResult::Blocked
                }
            }
            Call::Write { fd: 3 | 4, len } => {
                let seq = self.snd_nxt.wrapping_add(self.k.seq_delta);
                let opts = self.ts_opts();
                self.emit(TH_PUSH | TH_ACK, seq, len, opts, self.k.data_ecn);
                self.snd_nxt = self.snd_nxt.wrapping_add(len as u32);
                CallResult::Ok(len as i64)
            }
            Call::Read { fd: 3 | 4, len } => {
                if self.unread == 0 {
                    CallResult::Err(Errno::EWOULDBLOCK)
                } else {
                    let n = self.unread.min(len);
                    self.unread -= n;
                    CallResult::Ok(n as i64)
                }
            }
            Call::Close { fd: 3 | 4 } if !self.closed => {
                self.closed = true;
                if self.state == bsd::TCPS_ESTABLISHED {
                    let seq = self.snd_nxt.wrapping_add(self.k.seq_delta);
                    let opts = self.ts_opts();
                    self.emit(TH_FIN | TH_ACK, seq, 0, opts, packet::Ecn::NotEct);
                    self.state = bsd::TCPS_FIN_WAIT_1;
                }
                CallResult::Ok(0)
            }
            _ => CallResult::Err(Errno::EBADF),
        }
    }

    fn poll_blocked(&mut self, _now_us: u64) -> Option<CallResult> {
        self.completed.take()
    }

    fn tcp_info(&mut self, fd: i32) -> Option<TcpInfo> {
        (fd == 3 || fd == 4).then(|| TcpInfo {
            tcpi_state: self.state,
            tcpi_options: bsd::TCPI_OPT_TIMESTAMPS | bsd::TCPI_OPT_SACK | bsd::TCPI_OPT_WSCALE,
            ..Default::default()
        })
    }
}

/// An active open with one SYN retransmission, data, and a close.
const ACTIVE: &str = r#"
--ip_version=ipv4
--tolerance_usecs=25000

 0.00 `sysctl -w net.inet.tcp.rfc1323=1`
+0.00 `sysctl -w net.inet.tcp.hostcache.purgenow=1`
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [65536], [4]) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S  0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
+1.00 > S  0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 1100 ecr 0>
+0.10 < S. 0:0(0) ack 1 win 32767 <mss 1460,nop,wscale 3,sackOK,TS val 500 ecr 1100>
+0.00 >  . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1200 ecr 500>
+0.00 %{ assert tcpi_state == TCPI_ESTABLISHED }%
+0.00 `sockstat -4 -P tcp -s | grep packetdril | grep -c ESTABLISHED | grep 1`
+0.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.10 write(3, ..., 10) = 10
+0.00 > P. 1:11(10) ack 1 win 65535 <nop,nop,TS val 1300 ecr 500>
+0.10 <  . 1:1(0) ack 11 win 32767 <nop,nop,TS val 600 ecr 1300>
+0.00 read(3, ..., 100) = -1 EWOULDBLOCK (Operation would block)
+0.10 <  . 1:4(3) ack 11 win 32767 <nop,nop,TS val 700 ecr 1300>
+0.00 >  . 11:11(0) ack 4 win 65535 <nop,nop,TS val 1500 ecr 700>
+0.00 read(3, ..., 100) = 3
+0.00 close(3) = 0
+0.00 > F. 11:11(0) ack 4 win 65535 <nop,nop,TS val 1500 ecr 700>
"#;

/// A blocking connect that times out after TCP_KEEPINIT, with `*` retransmissions.
const BLOCKING: &str = r#"
--tolerance_usecs=25000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, IPPROTO_TCP, TCP_KEEPINIT, [3], 4) = 0
 1.00...4.00 connect(3, ..., ...) = -1 ETIMEDOUT (Operation timed out)
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
+1.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 1100 ecr 0>
*     > S 0:0(0) win 65535 <...>
 5.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
+0.00 close(3) = 0
"#;

/// A passive open: the inbound ack is relative to the ISN learned from the SYN-ACK.
const PASSIVE: &str = r#"
--tolerance_usecs=25000
 0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0.00 bind(3, ..., ...) = 0
+0.00 listen(3, 1) = 0
+0.00 %{ assert tcpi_state == TCPI_LISTEN }%
+0.00 < S  0:0(0) win 32767 <mss 1460,sackOK,eol,eol>
+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>
+0.10 <  . 1:1(0) ack 1 win 32767
+0.00 accept(3, ..., ...) = 4
+0.00 %{ assert tcpi_state == TCPI_ESTABLISHED }%
+0.00 < F. 1:1(0) ack 1 win 32767
+0.00 >  . 1:1(0) ack 2 win 65535
+0.00 %{ assert tcpi_state == TCPI_CLOSE_WAIT }%
"#;

fn run_with(script: &str, k: Knobs) -> Outcome {
    let mut fake = Fake::new(k);
    run_text(script, &mut fake)
}

fn assert_fails(script: &str, k: Knobs, what: &str, needle: &str) {
    match run_with(script, k) {
        Outcome::Fail { line, message } => {
            eprintln!("{what}: line {line}: {message}");
            assert!(
                message.contains(needle),
                "{what}: failed (line {line}) but not for the expected reason ('{needle}'): {message}"
            );
        }
        o => panic!("{what}: expected FAIL, got {o}"),
    }
}

#[test]
fn correct_scripts_pass() {
    for (name, s) in [
        ("active", ACTIVE),
        ("blocking", BLOCKING),
        ("passive", PASSIVE),
    ] {
        let o = run_with(s, Knobs::default());
        assert_eq!(o, Outcome::Pass, "{name}");
    }
}

#[test]
fn unknown_sysctl_is_unsupported() {
    let s = ACTIVE.replace("net.inet.tcp.rfc1323=1", "net.inet.tcp.bogus=1");
    match run_with(&s, Knobs::default()) {
        Outcome::Unsupported { line, reason } => {
            assert_eq!(line, 5);
            assert!(reason.contains("net.inet.tcp.bogus"), "{reason}");
        }
        o => panic!("expected UNSUPPORTED, got {o}"),
    }
}

#[test]
fn wrong_sut_behaviour_fails() {
    let d = Knobs::default;
    let cases: Vec<(&str, Knobs, &str)> = vec![
        (
            "wrong flag",
            Knobs {
                syn_extra_flags: TH_ECE,
                ..d()
            },
            "flags SE",
        ),
        (
            "wrong seq",
            Knobs {
                seq_delta: 1,
                ..d()
            },
            "sequence number 2",
        ),
        (
            "wrong ack",
            Knobs {
                ack_delta: 1,
                ..d()
            },
            "ack 2",
        ),
        (
            "wrong win",
            Knobs {
                window: 65000,
                ..d()
            },
            "window 65000",
        ),
        (
            "wrong option value",
            Knobs { mss: 1400, ..d() },
            "TCP option mss 1400",
        ),
        (
            "missing option",
            Knobs {
                sack_ok: false,
                ..d()
            },
            "TCP options",
        ),
        (
            "extra unexpected packet",
            Knobs {
                duplicate_acks: true,
                ..d()
            },
            "unexpected outbound packet",
        ),
        (
            "late packet",
            Knobs {
                rto_us: 1_050_000,
                ..d()
            },
            "expected packet not sent",
        ),
        (
            "early packet",
            Knobs {
                rto_us: 950_000,
                ..d()
            },
            "timing error",
        ),
        (
            "wrong syscall return",
            Knobs {
                rcvbuf: 32768,
                ..d()
            },
            "option value is 32768",
        ),
        (
            "wrong errno",
            Knobs {
                connect_errno: Errno::EALREADY,
                ..d()
            },
            "returned -1 EALREADY",
        ),
        (
            "timestamp clock off",
            Knobs { ts_jump: 30, ..d() },
            "TS val",
        ),
        (
            "wrong ECN codepoint",
            Knobs {
                data_ecn: packet::Ecn::Ce,
                ..d()
            },
            "ECN codepoint ce",
        ),
    ];
    for (what, k, needle) in cases {
        let script = if what == "wrong ECN codepoint" {
            ACTIVE.replace("> P. 1:11(10)", ">[noecn] P. 1:11(10)")
        } else {
            ACTIVE.to_string()
        };
        assert_fails(&script, k, what, needle);
    }
}

#[test]
fn blocking_call_returning_at_the_wrong_time_fails() {
    // The connect times out 0.5 s after the script's end time.
    let k = Knobs {
        keepinit_extra_us: 500_000,
        ..Knobs::default()
    };
    assert_fails(BLOCKING, k, "late blocking return", "connect()");
    // The script expects a later return than the fake gives.
    let s = BLOCKING.replace("1.00...4.00", "1.00...4.50");
    assert_fails(
        &s,
        Knobs::default(),
        "early blocking return",
        "timing error",
    );
    // A blocking call with a plain time must return at once.
    let s = BLOCKING.replace(" 1.00...4.00 connect", " 1.00 connect");
    assert_fails(&s, Knobs::default(), "blocking plain call", "blocked");
}

#[test]
fn mutated_scripts_fail() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "wrong flag",
            "+0.00 > S  0:0(0) win",
            "+0.00 > S. 0:0(0) win",
            "flags S",
        ),
        (
            "wrong flag on data",
            "> P. 1:11(10)",
            "> . 1:11(10)",
            "flags P.",
        ),
        (
            "wrong seq",
            "> P. 1:11(10)",
            "> P. 2:12(10)",
            "sequence number 1",
        ),
        (
            "wrong length",
            "> P. 1:11(10)",
            "> P. 1:10(9)",
            "payload length 10",
        ),
        (
            "wrong ack",
            "> P. 1:11(10) ack 1",
            "> P. 1:11(10) ack 2",
            "ack 1",
        ),
        (
            "wrong win",
            "+0.00 > S  0:0(0) win 65535",
            "+0.00 > S  0:0(0) win 65534",
            "window 65535",
        ),
        (
            "wrong option value",
            "wscale 6,sackOK,TS val 100",
            "wscale 7,sackOK,TS val 100",
            "TCP option wscale 6",
        ),
        (
            "missing option",
            "nop,wscale 6,sackOK,TS val 100",
            "nop,wscale 6,TS val 100",
            "TCP options",
        ),
        (
            "extra option",
            "<nop,nop,TS val 1200 ecr 500>",
            "<nop,nop,TS val 1200 ecr 500,nop,nop,nop,nop>",
            "TCP options",
        ),
        (
            "no options expected",
            "+0.00 >  . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1200 ecr 500>",
            "+0.00 >  . 1:1(0) ack 1 win 65535",
            "TCP options present",
        ),
        (
            "extra unexpected packet",
            "+0.00 >  . 1:1(0) ack 1 win 65535 <nop,nop,TS val 1200 ecr 500>\n",
            "",
            "unexpected outbound packet",
        ),
        (
            "packet expected too late",
            "+1.00 > S  0:0(0)",
            "+1.10 > S  0:0(0)",
            "timing error",
        ),
        (
            "packet expected too early",
            "+1.00 > S  0:0(0)",
            "+0.90 > S  0:0(0)",
            "expected packet not sent",
        ),
        (
            "missing packet",
            "+0.00 read(3, ..., 100) = 3",
            "+0.00 > . 11:11(0) ack 4\n+0.00 read(3, ..., 100) = 3",
            "expected packet not sent",
        ),
        (
            "wrong TS val",
            "TS val 1200 ecr 500",
            "TS val 1300 ecr 500",
            "TS val",
        ),
        (
            "wrong TS ecr",
            "TS val 1200 ecr 500",
            "TS val 1200 ecr 501",
            "TS ecr",
        ),
        (
            "wrong ECN",
            "> P. 1:11(10)",
            ">[ect0] P. 1:11(10)",
            "ECN codepoint noecn",
        ),
        (
            "wrong syscall return",
            "SO_RCVBUF, [65536]",
            "SO_RCVBUF, [65537]",
            "option value",
        ),
        (
            "wrong return value",
            "write(3, ..., 10) = 10",
            "write(3, ..., 10) = 9",
            "returned 10",
        ),
        (
            "wrong fcntl flags",
            "= 0x02 (flags O_RDWR)",
            "= 0x06 (flags O_RDWR)",
            "returned 2",
        ),
        (
            "wrong errno",
            "= -1 EINPROGRESS",
            "= -1 EWOULDBLOCK",
            "returned -1 EINPROGRESS",
        ),
        (
            "error expected, success got",
            "read(3, ..., 100) = 3",
            "read(3, ..., 100) = -1 EWOULDBLOCK",
            "returned 3",
        ),
        (
            "success expected, error got",
            "read(3, ..., 100) = -1 EWOULDBLOCK",
            "read(3, ..., 100) = 0",
            "returned -1",
        ),
        (
            "wrong SO_ERROR",
            "SO_ERROR, [0]",
            "SO_ERROR, [ECONNRESET]",
            "option value is 0, expected 54",
        ),
        (
            "wrong tcp state",
            "TCPI_ESTABLISHED",
            "TCPI_SYN_SENT",
            "assertion failed",
        ),
        (
            "wrong sockstat count",
            "grep -c ESTABLISHED | grep 1",
            "grep -c ESTABLISHED | grep 0",
            "sockstat",
        ),
        (
            "inbound ack off (SUT ignores it)",
            "< S. 0:0(0) ack 1",
            "< S. 0:0(0) ack 2",
            "expected packet not sent",
        ),
        (
            "inbound ecr off (SUT ignores it)",
            "TS val 500 ecr 1100>",
            "TS val 500 ecr 99999>",
            "expected packet not sent",
        ),
    ];
    for (what, from, to, needle) in cases {
        assert!(ACTIVE.contains(from), "{what}: pattern not in script");
        let s = ACTIVE.replacen(from, to, 1);
        assert_fails(&s, Knobs::default(), what, needle);
    }
}

#[test]
fn unchecked_fields_pass() {
    let cases: &[(&str, &str)] = &[
        ("<mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>", "<...>"),
        ("> P. 1:11(10)", "> P. ...(10)"),
        ("> P. 1:11(10)", ">[noecn] P. 1:11(10)"),
        ("> P. 1:11(10) ack 1 win 65535", "> P. 1:11(10) ack 1"),
        ("+0.00 >  . 1:1(0) ack 1 win", "+0.00 >  . 1:1(0) win"),
        ("TS val 1200 ecr 500", "TS val 1225 ecr 500"),
    ];
    for (from, to) in cases {
        let s = ACTIVE.replacen(from, to, 1);
        assert_eq!(
            run_with(&s, Knobs::default()),
            Outcome::Pass,
            "{from} -> {to}"
        );
    }
}

#[test]
fn passive_open_mutations_fail() {
    let cases: &[(&str, &str, &str)] = &[
        ("> S. 0:0(0) ack 1", "> S. 0:0(0) ack 2", "ack 1"),
        (
            "<mss 1460,sackOK,eol,eol>\n+0.10",
            "<mss 1460,sackOK,eol>\n+0.10",
            "TCP options",
        ),
        (
            "accept(3, ..., ...) = 4",
            "accept(3, ..., ...) = -1 EWOULDBLOCK",
            "returned 4",
        ),
        ("TCPI_CLOSE_WAIT", "TCPI_LAST_ACK", "assertion failed"),
        (">  . 1:1(0) ack 2", ">  . 1:1(0) ack 1", "ack 2"),
        // The inbound ack is mapped with the learned ISN; a wrong one leaves the fake in
        // SYN_RCVD, so accept fails.
        (
            "<  . 1:1(0) ack 1 win 32767",
            "<  . 1:1(0) ack 5 win 32767",
            "accept()",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(PASSIVE.contains(from), "pattern {from} not in script");
        let s = PASSIVE.replacen(from, to, 1);
        assert_fails(&s, Knobs::default(), from, needle);
    }
}

#[test]
fn nothing_is_checked_after_the_last_event() {
    // The fake sends a FIN after close; with the expectation removed, close is the last event.
    let s = ACTIVE.replace(
        "+0.00 > F. 11:11(0) ack 4 win 65535 <nop,nop,TS val 1500 ecr 700>\n",
        "",
    );
    assert_eq!(run_with(&s, Knobs::default()), Outcome::Pass);
}

/// Records what the runner injects; sends one SYN on connect.
#[derive(Default)]
struct Recorder {
    injected: Vec<(u64, Segment)>,
    out: VecDeque<Vec<u8>>,
}

impl Sut for Recorder {
    fn sysctl(&mut self, _: &str, _: i64) -> Result<(), ()> {
        Ok(())
    }
    fn advance(&mut self, _: u64) {}
    fn inject(&mut self, now_us: u64, bytes: &[u8]) {
        self.injected
            .push((now_us, packet::parse(bytes).expect("valid packet")));
    }
    fn poll_transmit(&mut self, _: u64) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<u64> {
        None
    }
    fn syscall(&mut self, _: u64, call: &Call) -> CallResult {
        match call {
            Call::Socket => CallResult::Ok(7),
            Call::Connect { fd: 7 } => {
                self.out.push_back(packet::build(&Segment {
                    src: LOCAL_ADDR,
                    dst: REMOTE_ADDR,
                    tos: 0,
                    ttl: 64,
                    ip_id: 1,
                    dont_fragment: true,
                    src_port: 50000,
                    dst_port: REMOTE_PORT,
                    seq: 1000,
                    ack: 0,
                    flags: TH_SYN,
                    window: 65535,
                    urgent: 0,
                    options: packet::encode_options(&[
                        TcpOpt::Mss(1460),
                        TcpOpt::Nop,
                        TcpOpt::Nop,
                        TcpOpt::Timestamp { val: 7000, ecr: 0 },
                    ]),
                    payload: vec![],
                }));
                CallResult::Err(Errno::EINPROGRESS)
            }
            _ => CallResult::Err(Errno::EBADF),
        }
    }
    fn poll_blocked(&mut self, _: u64) -> Option<CallResult> {
        None
    }
    fn tcp_info(&mut self, _: i32) -> Option<TcpInfo> {
        None
    }
}

#[test]
fn inbound_packets_are_built_as_written() {
    let script = "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 connect(3, ..., ...) = -1 EINPROGRESS
+0 > S 0:0(0) win 65535 <mss 1460,nop,nop,TS val 100 ecr 0>
+0.1 <[ect0] S. 5:5(0) ack 1 win 1234 <mss 536,nop,nop,TS val 42 ecr 100>
+0 < R 9:9(0) ack 77 win 0
+0.25 < P. 6:9(3) win 10
";
    let mut r = Recorder::default();
    assert_eq!(run_text(script, &mut r), Outcome::Pass);
    assert_eq!(r.injected.len(), 3);
    let (t, a) = &r.injected[0];
    assert_eq!(*t, 100_000);
    assert_eq!(
        (a.src, a.dst, a.src_port, a.dst_port),
        (REMOTE_ADDR, LOCAL_ADDR, REMOTE_PORT, 50000)
    );
    assert_eq!(
        (a.ttl, a.dont_fragment, a.ecn()),
        (64, true, packet::Ecn::Ect0)
    );
    assert_eq!(
        (a.seq, a.ack, a.flags, a.window),
        (5, 1001, TH_SYN | TH_ACK, 1234)
    );
    assert_eq!(
        packet::decode_options(&a.options).unwrap(),
        vec![
            TcpOpt::Mss(536),
            TcpOpt::Nop,
            TcpOpt::Nop,
            // ecr 100 in the script's terms is the SUT's 7000.
            TcpOpt::Timestamp { val: 42, ecr: 7000 },
        ]
    );
    let (_, b) = &r.injected[1];
    // No ACK flag: the ack field is written as is.
    assert_eq!(
        (b.flags, b.seq, b.ack, b.window, b.ecn()),
        (TH_RST, 9, 77, 0, packet::Ecn::NotEct)
    );
    assert!(b.options.is_empty());
    let (t, c) = &r.injected[2];
    assert_eq!(*t, 350_000);
    // ACK flag without `ack`: 0 relative to the SUT's ISN.
    assert_eq!(
        (c.flags, c.seq, c.ack, c.payload.clone()),
        (TH_PUSH | TH_ACK, 6, 1000, vec![0; 3])
    );
}
