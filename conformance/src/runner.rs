//! Runs a parsed script against a [`Sut`] in virtual time.
//!
//! The semantics are packetdrill's, made strict and deterministic:
//!
//! * An event's time is absolute, or relative to the previous event's script time (for `*`
//!   events, the time the packet was actually sent; for a blocking call `a...b`, the start `a`).
//!   Before an event, the runner advances the SUT to the event's time, stepping through each of
//!   the SUT's timer deadlines in between so timers fire exactly on time.
//! * Every outbound packet must be expected: a packet sent while the next event is not an
//!   outbound expectation fails the script. After the last event nothing more is checked.
//! * An outbound expectation at `t` is met by the next packet the SUT sends, which must be sent
//!   within `[t - tol, t + tol]` (for a range `a...b`: `[a - tol, b + tol]`; for `*`: any time)
//!   and match every field the script gives.
//! * A blocking call `a...b` starts at `a` and must return at `b ± tol` (packetdrill's rule)
//!   while the script goes on; a call with a plain time must return within `tol` of its start.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;

use crate::bsd;
use crate::packet::{self, Segment, TcpOpt};
use crate::script::{
    self, Action, Direction, EcnSpec, ErrorKind, Event, EventTime, Expect, OptionsSpec, PacketSpec,
    Script, SockstatQuery, SysOp, SyscallSpec, TcpInfoAssert,
};
use crate::sut::{
    Call, CallResult, SockStatEntry, Sut, LOCAL_ADDR, LOCAL_BIND_PORT, REMOTE_ADDR, REMOTE_PORT,
};

/// packetdrill's default `--tolerance_usecs`.
pub const DEFAULT_TOLERANCE_USECS: u64 = 4000;

/// The result of running one script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail { line: u32, message: String },
    Unsupported { line: u32, reason: String },
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => write!(f, "PASS"),
            Outcome::Fail { line, message } => write!(f, "FAIL line {line}: {message}"),
            Outcome::Unsupported { line, reason } => write!(f, "UNSUPPORTED line {line}: {reason}"),
        }
    }
}

/// Parses `text` (with the default `#ifdef` definitions) and runs it.
pub fn run_text(text: &str, sut: &mut dyn Sut) -> Outcome {
    match script::parse(text) {
        Ok(s) => run(&s, sut),
        Err(e) => parse_error_outcome(&e),
    }
}

/// How a parse error is reported: syntax errors fail, unsupported constructs are skipped.
pub fn parse_error_outcome(e: &script::ScriptError) -> Outcome {
    match e.kind {
        ErrorKind::Syntax => Outcome::Fail {
            line: e.line,
            message: format!("parse error: {}", e.message),
        },
        ErrorKind::Unsupported => Outcome::Unsupported {
            line: e.line,
            reason: e.message.clone(),
        },
    }
}

/// Runs a parsed script against `sut`, which must be fresh.
pub fn run(script: &Script, sut: &mut dyn Sut) -> Outcome {
    let first_line = script.events.first().map(|e| e.line).unwrap_or(1);
    if let Some(reason) = sut.unavailable() {
        return Outcome::Unsupported {
            line: first_line,
            reason,
        };
    }
    let mut r = Runner {
        sut,
        tol: DEFAULT_TOLERANCE_USECS,
        now: 0,
        queue: VecDeque::new(),
        isn: None,
        ts_offset: None,
        local_port: None,
        fds: HashMap::new(),
        open: BTreeSet::new(),
        last_fd: None,
        pending: None,
        line: first_line,
        ip_id: 0,
        steps: 0,
    };
    match r.run(script) {
        Ok(()) => Outcome::Pass,
        Err(o) => o,
    }
}

type R<T> = Result<T, Outcome>;

fn fail<T>(line: u32, message: impl Into<String>) -> R<T> {
    Err(Outcome::Fail {
        line,
        message: message.into(),
    })
}

fn unsupported<T>(line: u32, reason: impl Into<String>) -> R<T> {
    Err(Outcome::Unsupported {
        line,
        reason: reason.into(),
    })
}

/// Seconds, for messages.
fn secs(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// A blocking call that has not returned yet.
struct Pending {
    line: u32,
    spec: SyscallSpec,
    /// When it must return (± tolerance).
    due: u64,
}

/// How many times in a row the SUT may report a timer that is already due without making
/// progress before the runner gives up.
const MAX_STALLED_STEPS: u32 = 1000;

/// How many times one script may advance the SUT (a guard against SUTs whose timers never
/// settle).
const MAX_STEPS: u64 = 2_000_000;

/// How many sent packets may wait for their expectations at once (a guard against a SUT that
/// never stops sending).
const MAX_QUEUED: usize = 100_000;

/// How far `*` expectations and the end-of-script wait may run the clock ahead.
const MAX_WAIT_USECS: u64 = 24 * 3600 * 1_000_000;

struct Runner<'a> {
    sut: &'a mut dyn Sut,
    tol: u64,
    /// The virtual clock.
    now: u64,
    /// Outbound packets drained from the SUT, stamped with the time they were drained.
    queue: VecDeque<(u64, Vec<u8>)>,
    /// The SUT's initial sequence number, learned from its first SYN.
    isn: Option<u32>,
    /// Live TS val minus script TS val, learned from the first checked outbound timestamp.
    ts_offset: Option<u32>,
    local_port: Option<u16>,
    /// Script descriptor -> live descriptor.
    fds: HashMap<i32, i32>,
    /// Script descriptors currently open.
    open: BTreeSet<i32>,
    /// The socket `%{ }%` asserts look at: the one most recently created or accepted
    /// (packetdrill's "socket under test"), as a script descriptor.
    last_fd: Option<i32>,
    pending: Option<Pending>,
    /// The line of the event being run.
    line: u32,
    ip_id: u16,
    /// How many times the SUT has been advanced.
    steps: u64,
}

impl Runner<'_> {
    fn run(&mut self, script: &Script) -> R<()> {
        self.header_options(script)?;
        let mut base: u64 = 0;
        let mut prev_absolute: Option<u64> = None;
        for ev in &script.events {
            self.line = ev.line;
            let (t, end) = match ev.time {
                EventTime::Any => (self.now, None),
                EventTime::At {
                    relative,
                    usecs,
                    end_usecs,
                } => {
                    let b = if relative { base } else { 0 };
                    if !relative {
                        if let Some(p) = prev_absolute {
                            if usecs < p {
                                return fail(
                                    ev.line,
                                    format!(
                                        "parse error: time goes backward in script from {} to {}",
                                        secs(p),
                                        secs(usecs)
                                    ),
                                );
                            }
                        }
                        prev_absolute = Some(usecs);
                    }
                    (
                        b.saturating_add(usecs),
                        end_usecs.map(|e| b.saturating_add(e)),
                    )
                }
            };
            let actual = self.event(ev, t, end)?;
            base = actual;
        }
        // A blocking call still outstanding must still return on time.
        if let Some(p) = &self.pending {
            let limit = p.due.saturating_add(self.tol);
            self.wait_pending(limit)?;
        }
        Ok(())
    }

    fn header_options(&mut self, script: &Script) -> R<()> {
        for o in &script.options {
            let value = o.value.as_deref().unwrap_or("");
            match o.name.as_str() {
                "ip_version" => {
                    if value != "ipv4" {
                        return unsupported(o.line, format!("--ip_version={value} (only ipv4)"));
                    }
                }
                "tolerance_usecs" => match value.parse::<u64>() {
                    Ok(v) => self.tol = v,
                    Err(_) => {
                        return fail(
                            o.line,
                            format!("parse error: bad --tolerance_usecs={value}"),
                        )
                    }
                },
                "mtu" => match value.parse::<u32>() {
                    Ok(v) => {
                        if self.sut.set_mtu(v).is_err() {
                            return unsupported(
                                o.line,
                                format!("--mtu={v} (the SUT cannot set its MTU)"),
                            );
                        }
                    }
                    Err(_) => return fail(o.line, format!("parse error: bad --mtu={value}")),
                },
                name => {
                    return unsupported(o.line, format!("header option --{name}"));
                }
            }
        }
        Ok(())
    }

    /// Runs one event; returns the time later relative events count from.
    fn event(&mut self, ev: &Event, t: u64, end: Option<u64>) -> R<u64> {
        let line = ev.line;
        match &ev.action {
            Action::Packet(p) if p.direction == Direction::Outbound => {
                let window = match ev.time {
                    EventTime::Any => None,
                    EventTime::At { .. } => Some((t, end.unwrap_or(t))),
                };
                let sent = self.expect_outbound(p, window)?;
                return Ok(if window.is_none() { sent } else { t });
            }
            Action::Packet(p) => {
                self.advance_to(t)?;
                let bytes = self.build_inbound(p);
                let now = self.now;
                self.sut.inject(now, &bytes);
                self.after_sut()?;
            }
            Action::Syscall(s) => {
                self.advance_to(t)?;
                self.syscall(line, s, end)?;
            }
            Action::Sysctl { name, value } => {
                self.advance_to(t)?;
                if self.sut.sysctl(name, *value).is_err() {
                    return unsupported(line, format!("sysctl {name} is unknown to the SUT"));
                }
                self.after_sut()?;
            }
            Action::Sockstat(q) => {
                self.advance_to(t)?;
                self.sockstat(line, q)?;
            }
            Action::TcpDrop { state } => {
                self.advance_to(t)?;
                let now = self.now;
                if self.sut.tcpdrop_state(now, *state).is_none() {
                    return unsupported(
                        line,
                        "tcpdrop (the SUT does not implement Sut::tcpdrop_state)",
                    );
                }
                self.after_sut()?;
            }
            Action::Asserts(asserts) => {
                self.advance_to(t)?;
                self.asserts(line, asserts)?;
            }
        }
        Ok(t)
    }

    // ---- time

    /// Drains the SUT's output into the queue and checks an outstanding blocking call.
    fn after_sut(&mut self) -> R<()> {
        let now = self.now;
        while let Some(p) = self.sut.poll_transmit(now) {
            if self.queue.len() >= MAX_QUEUED {
                return fail(
                    self.line,
                    format!("the SUT sent more than {MAX_QUEUED} packets the script does not expect yet"),
                );
            }
            self.queue.push_back((now, p));
        }
        if self.pending.is_some() {
            if let Some(res) = self.sut.poll_blocked(now) {
                let Some(p) = self.pending.take() else {
                    return Ok(());
                };
                if now.saturating_add(self.tol) < p.due || now > p.due.saturating_add(self.tol) {
                    return fail(
                        p.line,
                        format!(
                            "timing error: expected {}() to return at {} sec but it returned at {} sec",
                            p.spec.name,
                            secs(p.due),
                            secs(now)
                        ),
                    );
                }
                self.check_result(p.line, &p.spec, res)?;
            } else if let Some(p) = &self.pending {
                if now > p.due.saturating_add(self.tol) {
                    return fail(
                        p.line,
                        format!(
                            "blocking {}() had not returned by {} sec (expected at {} sec)",
                            p.spec.name,
                            secs(now),
                            secs(p.due)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, at: u64) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return fail(
                self.line,
                format!("the SUT needed more than {MAX_STEPS} timer steps; giving up"),
            );
        }
        self.now = self.now.max(at);
        let now = self.now;
        self.sut.advance(now);
        self.after_sut()
    }

    /// Steps through the SUT's timers due strictly before `limit`; with `strict`, any packet
    /// sent meanwhile is unexpected.
    fn run_timers_before(&mut self, limit: u64, strict: bool) -> R<()> {
        let mut stalled = 0;
        while let Some(d) = self.sut.poll_timeout() {
            if d >= limit {
                break;
            }
            if d <= self.now {
                stalled += 1;
                if stalled > MAX_STALLED_STEPS {
                    return fail(
                        self.line,
                        format!(
                            "the SUT's timer at {} sec does not go away when it fires",
                            secs(d)
                        ),
                    );
                }
            } else {
                stalled = 0;
            }
            self.step(d)?;
            if strict {
                self.no_unexpected()?;
            }
        }
        Ok(())
    }

    /// Fails if a packet the script does not expect has been sent.
    fn no_unexpected(&mut self) -> R<()> {
        if let Some((ts, bytes)) = self.queue.front() {
            let what = self.describe(bytes);
            return fail(
                self.line,
                format!(
                    "unexpected outbound packet {what} sent at {} sec (the next event is not an outbound packet)",
                    secs(*ts)
                ),
            );
        }
        Ok(())
    }

    /// Advances the SUT to `t` for an event that is not an outbound expectation.
    fn advance_to(&mut self, t: u64) -> R<()> {
        self.after_sut()?;
        self.no_unexpected()?;
        self.run_timers_before(t, true)?;
        self.step(t)?;
        self.no_unexpected()
    }

    /// Lets the SUT's timers run (up to `limit`) until the outstanding blocking call returns.
    /// Returns whether it is still outstanding.
    fn run_until_returned(&mut self, limit: u64) -> R<bool> {
        let mut stalled = 0;
        while self.pending.is_some() {
            match self.sut.poll_timeout() {
                Some(d) if d <= limit => {
                    if d <= self.now {
                        stalled += 1;
                        if stalled > MAX_STALLED_STEPS {
                            break;
                        }
                    }
                    self.step(d)?;
                }
                _ => break,
            }
        }
        Ok(self.pending.is_some())
    }

    /// Like [`Self::run_until_returned`], failing if the call is still outstanding.
    fn wait_pending(&mut self, limit: u64) -> R<()> {
        if self.run_until_returned(limit)? {
            if let Some(p) = self.pending.take() {
                return fail(
                    p.line,
                    format!(
                        "blocking {}() did not return (expected at {} sec; the SUT has nothing scheduled up to {} sec)",
                        p.spec.name,
                        secs(p.due),
                        secs(limit)
                    ),
                );
            }
        }
        Ok(())
    }

    // ---- outbound packets

    /// Waits for the next outbound packet within `window` (`None`: any time) and checks it.
    /// Returns the time it was sent.
    fn expect_outbound(&mut self, p: &PacketSpec, window: Option<(u64, u64)>) -> R<u64> {
        let (lo, hi) = match window {
            Some((a, b)) => (a.saturating_sub(self.tol), b.saturating_add(self.tol)),
            None => (0, self.now.saturating_add(MAX_WAIT_USECS)),
        };
        self.after_sut()?;
        let mut stalled = 0;
        loop {
            if let Some((ts, bytes)) = self.queue.pop_front() {
                if ts < lo || ts > hi {
                    let what = self.describe(&bytes);
                    let (a, b) = window.unwrap_or((0, 0));
                    let expected = if a == b {
                        format!("at {} sec", secs(a))
                    } else {
                        format!("in {}...{} sec", secs(a), secs(b))
                    };
                    return fail(
                        self.line,
                        format!(
                            "timing error: expected outbound packet {expected} (tolerance {} usecs) but {what} was sent at {} sec",
                            self.tol,
                            secs(ts)
                        ),
                    );
                }
                self.check_outbound(p, &bytes)?;
                return Ok(ts);
            }
            match self.sut.poll_timeout() {
                Some(d) if d <= hi => {
                    if d <= self.now {
                        stalled += 1;
                        if stalled > MAX_STALLED_STEPS {
                            return fail(
                                self.line,
                                format!(
                                    "the SUT's timer at {} sec does not go away when it fires",
                                    secs(d)
                                ),
                            );
                        }
                    } else {
                        stalled = 0;
                    }
                    self.step(d)?;
                }
                next => {
                    let when = match window {
                        Some((a, b)) if a == b => format!("at {} sec", secs(a)),
                        Some((a, b)) => format!("in {}...{} sec", secs(a), secs(b)),
                        None => "at any time".to_string(),
                    };
                    let timer = match next {
                        Some(d) => format!("the SUT's next timer is at {} sec", secs(d)),
                        None => "the SUT has no timer pending".to_string(),
                    };
                    return fail(
                        self.line,
                        format!(
                            "expected packet not sent: {} expected {when} (tolerance {} usecs); {timer}",
                            spec_summary(p),
                            self.tol
                        ),
                    );
                }
            }
        }
    }

    /// The SUT's sequence number relative to its ISN (absolute before the ISN is known).
    fn rel_seq(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.isn.unwrap_or(0))
    }

    /// A live packet as a script line would write it.
    fn describe(&self, bytes: &[u8]) -> String {
        match packet::parse(bytes) {
            Ok(seg) => self.describe_segment(&seg),
            Err(e) => format!("<malformed packet: {e}>"),
        }
    }

    fn describe_segment(&self, seg: &Segment) -> String {
        let start = self.rel_seq(seg.seq);
        let len = seg.payload.len();
        let mut s = format!(
            "[{}] {} {}:{}({})",
            seg.ecn().name(),
            packet::flags_to_string(seg.flags),
            start,
            start.wrapping_add(len as u32),
            len
        );
        if seg.flags & packet::TH_ACK != 0 {
            s.push_str(&format!(" ack {}", seg.ack));
        }
        s.push_str(&format!(" win {}", seg.window));
        if !seg.options.is_empty() {
            match packet::decode_options(&seg.options) {
                Ok(o) => {
                    // TS val in the script's terms once the offset is known.
                    let o: Vec<TcpOpt> = o
                        .into_iter()
                        .map(|o| match (o, self.ts_offset) {
                            (TcpOpt::Timestamp { val, ecr }, Some(off)) => TcpOpt::Timestamp {
                                val: val.wrapping_sub(off),
                                ecr,
                            },
                            (o, _) => o,
                        })
                        .collect();
                    s.push(' ');
                    s.push_str(&packet::options_to_string(&o));
                }
                Err(e) => s.push_str(&format!(" <bad options: {e}>")),
            }
        }
        s
    }

    fn check_outbound(&mut self, p: &PacketSpec, bytes: &[u8]) -> R<()> {
        let line = self.line;
        let seg = match packet::parse(bytes) {
            Ok(s) => s,
            Err(e) => return fail(line, format!("the SUT sent a malformed packet: {e}")),
        };
        // Learn before describing, so the description uses the learned ISN.
        if seg.flags & packet::TH_SYN != 0 && self.isn.is_none() {
            self.isn = Some(seg.seq.wrapping_sub(p.seq.unwrap_or(0)));
        }
        let got = self.describe_segment(&seg);
        let mismatch = |what: String| -> R<()> {
            fail(
                line,
                format!(
                    "outbound packet mismatch: {what}: expected {}, got {got}",
                    spec_summary(p)
                ),
            )
        };
        if seg.src != LOCAL_ADDR || seg.dst != REMOTE_ADDR {
            return mismatch(format!(
                "addresses {} > {} (expected {LOCAL_ADDR} > {REMOTE_ADDR})",
                seg.src, seg.dst
            ));
        }
        if seg.dst_port != REMOTE_PORT {
            return mismatch(format!(
                "destination port {} (expected {REMOTE_PORT})",
                seg.dst_port
            ));
        }
        match self.local_port {
            None => self.local_port = Some(seg.src_port),
            Some(port) if port != seg.src_port => {
                return mismatch(format!("source port {} (expected {port})", seg.src_port));
            }
            Some(_) => {}
        }
        if seg.flags != p.flags {
            return mismatch(format!(
                "flags {} (expected {})",
                packet::flags_to_string(seg.flags),
                packet::flags_to_string(p.flags)
            ));
        }
        if let Some(s) = p.seq {
            let rel = self.rel_seq(seg.seq);
            if rel != s {
                return mismatch(format!("sequence number {rel} (expected {s})"));
            }
        }
        if seg.payload.len() != usize::from(p.len) {
            return mismatch(format!(
                "payload length {} (expected {})",
                seg.payload.len(),
                p.len
            ));
        }
        if let (Some(a), true) = (p.ack, p.flags & packet::TH_ACK != 0) {
            if seg.ack != a {
                return mismatch(format!("ack {} (expected {a})", seg.ack));
            }
        }
        if let Some(w) = p.win {
            if seg.window != w {
                return mismatch(format!("window {} (expected {w})", seg.window));
            }
        }
        if let Some(u) = p.urg {
            if seg.urgent != u {
                return mismatch(format!("urgent pointer {} (expected {u})", seg.urgent));
            }
        }
        let ecn_ok = match p.ecn {
            None => true,
            Some(EcnSpec::Ect01) => matches!(seg.ecn(), packet::Ecn::Ect0 | packet::Ecn::Ect1),
            Some(EcnSpec::Exactly(e)) => seg.ecn() == e,
        };
        if !ecn_ok {
            let want = match p.ecn {
                Some(EcnSpec::Exactly(e)) => e.name(),
                _ => "ect0 or ect1",
            };
            return mismatch(format!(
                "ECN codepoint {} (expected {want})",
                seg.ecn().name()
            ));
        }
        match &p.options {
            OptionsSpec::Any => {}
            OptionsSpec::None => {
                if !seg.options.is_empty() {
                    return mismatch("TCP options present (expected none)".into());
                }
            }
            OptionsSpec::List(want) => {
                let have = match packet::decode_options(&seg.options) {
                    Ok(o) => o,
                    Err(e) => return mismatch(format!("malformed TCP options ({e})")),
                };
                if have.len() != want.len() {
                    return mismatch(format!(
                        "TCP options {} (expected {})",
                        packet::options_to_string(&have),
                        packet::options_to_string(want)
                    ));
                }
                for (h, w) in have.iter().zip(want) {
                    let ok = match (h, w) {
                        (
                            TcpOpt::Timestamp { val: hv, ecr: he },
                            TcpOpt::Timestamp { val: wv, ecr: we },
                        ) => {
                            if he != we {
                                return mismatch(format!("TS ecr {he} (expected {we})"));
                            }
                            match self.ts_offset {
                                None => {
                                    self.ts_offset = Some(hv.wrapping_sub(*wv));
                                    true
                                }
                                Some(off) => {
                                    let expected = wv.wrapping_add(off);
                                    let diff =
                                        i64::from(hv.wrapping_sub(expected) as i32).unsigned_abs();
                                    let slack = self.tol / 1000 + 1;
                                    if diff > slack {
                                        return mismatch(format!(
                                            "TS val {} (expected {} within {slack} ms)",
                                            hv.wrapping_sub(off),
                                            wv
                                        ));
                                    }
                                    true
                                }
                            }
                        }
                        (h, w) => h == w,
                    };
                    if !ok {
                        return mismatch(format!(
                            "TCP option {h} (expected {w}); options {} (expected {})",
                            packet::options_to_string(&have),
                            packet::options_to_string(want)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    // ---- inbound packets

    fn build_inbound(&mut self, p: &PacketSpec) -> Vec<u8> {
        let isn = self.isn.unwrap_or(0);
        let ack = match (p.flags & packet::TH_ACK != 0, p.ack) {
            (true, a) => a.unwrap_or(0).wrapping_add(isn),
            (false, a) => a.unwrap_or(0),
        };
        let options = match &p.options {
            OptionsSpec::List(opts) => {
                let mapped: Vec<TcpOpt> = opts
                    .iter()
                    .map(|o| match (o, self.ts_offset) {
                        (TcpOpt::Timestamp { val, ecr }, Some(off)) => TcpOpt::Timestamp {
                            val: *val,
                            ecr: ecr.wrapping_add(off),
                        },
                        (o, _) => o.clone(),
                    })
                    .collect();
                packet::encode_options(&mapped)
            }
            _ => Vec::new(),
        };
        let tos = match p.ecn {
            Some(EcnSpec::Exactly(e)) => e as u8,
            _ => 0,
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        packet::build(&Segment {
            src: REMOTE_ADDR,
            dst: LOCAL_ADDR,
            tos,
            ttl: 64,
            ip_id: self.ip_id,
            dont_fragment: true,
            src_port: REMOTE_PORT,
            dst_port: self.local_port.unwrap_or(LOCAL_BIND_PORT),
            seq: p.seq.unwrap_or(0),
            ack,
            flags: p.flags,
            window: p.win.unwrap_or(0),
            urgent: p.urg.unwrap_or(0),
            options,
            payload: vec![0; usize::from(p.len)],
        })
    }

    // ---- system calls

    fn live_fd(&self, script_fd: i32) -> i32 {
        self.fds.get(&script_fd).copied().unwrap_or(script_fd)
    }

    fn syscall(&mut self, line: u32, s: &SyscallSpec, end: Option<u64>) -> R<()> {
        if let Some(p) = &self.pending {
            return fail(
                line,
                format!(
                    "{}() called while the blocking {}() of line {} has not returned",
                    s.name, p.spec.name, p.line
                ),
            );
        }
        let call = match s.op {
            SysOp::Socket => Call::Socket,
            SysOp::Bind { fd } => Call::Bind {
                fd: self.live_fd(fd),
            },
            SysOp::Listen { fd, backlog } => Call::Listen {
                fd: self.live_fd(fd),
                backlog,
            },
            SysOp::Accept { fd } => Call::Accept {
                fd: self.live_fd(fd),
            },
            SysOp::Connect { fd } => Call::Connect {
                fd: self.live_fd(fd),
            },
            SysOp::Close { fd } => Call::Close {
                fd: self.live_fd(fd),
            },
            SysOp::Shutdown { fd, how } => Call::Shutdown {
                fd: self.live_fd(fd),
                how,
            },
            SysOp::Read { fd, len } => Call::Read {
                fd: self.live_fd(fd),
                len,
            },
            SysOp::Write { fd, len } => Call::Write {
                fd: self.live_fd(fd),
                len,
            },
            SysOp::GetFl { fd } => Call::GetFl {
                fd: self.live_fd(fd),
            },
            SysOp::SetFl { fd, flags } => Call::SetFl {
                fd: self.live_fd(fd),
                flags,
            },
            SysOp::SetSockOpt {
                fd,
                level,
                name,
                value,
            } => Call::SetSockOpt {
                fd: self.live_fd(fd),
                level,
                name,
                value,
            },
            SysOp::GetSockOpt {
                fd, level, name, ..
            } => Call::GetSockOpt {
                fd: self.live_fd(fd),
                level,
                name,
            },
        };
        let now = self.now;
        let res = self.sut.syscall(now, &call);
        // Output caused by the call is drained after the result is known (the call may be
        // the one that is pending).
        match res {
            CallResult::Blocked => {
                let due = end.unwrap_or(now);
                self.pending = Some(Pending {
                    line,
                    spec: s.clone(),
                    due,
                });
                self.after_sut()?;
                if end.is_none() && self.pending.is_some() {
                    // A plain time: the call must return within the tolerance.
                    let limit = now.saturating_add(self.tol);
                    if self.run_until_returned(limit)? {
                        self.pending = None;
                        return fail(
                            line,
                            format!(
                                "{}() blocked, but the script expects it to return at once (within {} usecs)",
                                s.name, self.tol
                            ),
                        );
                    }
                }
                Ok(())
            }
            res => {
                if let Some(due) = end {
                    if now.saturating_add(self.tol) < due {
                        return fail(
                            line,
                            format!(
                                "timing error: expected blocking {}() to return at {} sec but it returned at once at {} sec ({})",
                                s.name,
                                secs(due),
                                secs(now),
                                result_text(&res)
                            ),
                        );
                    }
                }
                self.check_result(line, s, res)?;
                self.after_sut()
            }
        }
    }

    fn check_result(&mut self, line: u32, s: &SyscallSpec, res: CallResult) -> R<()> {
        let expected = match s.expect {
            Expect::Ret(v) => v.to_string(),
            Expect::Errno(e) => format!("-1 {}", e.name()),
        };
        let got = result_text(&res);
        let wrong = || -> R<()> {
            fail(
                line,
                format!("{}() returned {got}, expected {expected}", s.name),
            )
        };
        match (s.expect, res) {
            (_, CallResult::Blocked) => fail(
                line,
                format!("{}(): the SUT's poll_blocked reported Blocked", s.name),
            ),
            (Expect::Errno(e), CallResult::Err(g)) => {
                if e.code() == g.code() {
                    Ok(())
                } else {
                    wrong()
                }
            }
            (Expect::Errno(_), _) => wrong(),
            (Expect::Ret(_), CallResult::Err(_)) => wrong(),
            (Expect::Ret(v), CallResult::Value(x)) => {
                let SysOp::GetSockOpt { value, .. } = s.op else {
                    return fail(
                        line,
                        format!("{}(): the SUT answered with an option value", s.name),
                    );
                };
                if v != 0 {
                    return wrong();
                }
                match value {
                    Some(want) if want != x => fail(
                        line,
                        format!("{}() option value is {x}, expected {want}", s.name),
                    ),
                    _ => Ok(()),
                }
            }
            (Expect::Ret(v), CallResult::Ok(n)) => {
                if s.op.returns_fd() {
                    let (Ok(script_fd), Ok(live)) = (i32::try_from(v), i32::try_from(n)) else {
                        return wrong();
                    };
                    if n < 0 {
                        return wrong();
                    }
                    self.fds.insert(script_fd, live);
                    self.open.insert(script_fd);
                    self.last_fd = Some(script_fd);
                    return Ok(());
                }
                if n != v {
                    return wrong();
                }
                if let SysOp::GetSockOpt { value: Some(_), .. } = s.op {
                    return fail(
                        line,
                        format!("{}(): the SUT returned no option value", s.name),
                    );
                }
                if let SysOp::Close { fd } = s.op {
                    self.open.remove(&fd);
                }
                if let SysOp::Bind { .. } = s.op {
                    self.local_port.get_or_insert(LOCAL_BIND_PORT);
                }
                Ok(())
            }
        }
    }

    // ---- shell commands and code

    fn sockstat(&mut self, line: u32, q: &SockstatQuery) -> R<()> {
        let entries: Vec<SockStatEntry> = match self.sut.sockstat() {
            Some(v) => v,
            None if q.owned_only && q.port.is_none() => {
                // Answer from tcp_info on the script's open descriptors.
                let mut v = Vec::new();
                let fds: Vec<i32> = self.open.iter().copied().collect();
                for fd in fds {
                    let live = self.live_fd(fd);
                    if let Some(info) = self.sut.tcp_info(live) {
                        v.push(SockStatEntry {
                            local_port: 0,
                            foreign_port: 0,
                            state: info.tcpi_state,
                            owned: true,
                        });
                    }
                }
                v
            }
            None => {
                return unsupported(
                    line,
                    "sockstat listing non-descriptor sockets (the SUT does not implement Sut::sockstat)",
                )
            }
        };
        let count = entries
            .iter()
            .filter(|e| !q.owned_only || e.owned)
            .filter(|e| {
                q.port
                    .is_none_or(|p| e.local_port == p || e.foreign_port == p)
            })
            .filter(|e| e.state == q.state)
            .count() as u64;
        if count != q.count {
            return fail(
                line,
                format!(
                    "sockstat: {count} socket(s) in state {}, expected {}",
                    bsd::tcp_state_name(q.state),
                    q.count
                ),
            );
        }
        self.after_sut()
    }

    fn asserts(&mut self, line: u32, asserts: &[TcpInfoAssert]) -> R<()> {
        let Some(fd) = self.last_fd else {
            return fail(line, "tcp_info assertion before any socket was created");
        };
        let live = self.live_fd(fd);
        let Some(info) = self.sut.tcp_info(live) else {
            return fail(
                line,
                format!("tcp_info is not available for descriptor {fd}"),
            );
        };
        for a in asserts {
            let Some(v) = info.field(&a.field) else {
                return unsupported(line, format!("tcp_info field {}", a.field));
            };
            if !a.op.eval(v, a.value) {
                let shown = if a.field == "tcpi_state" {
                    format!("{v} (TCPI_{})", state_symbol(v))
                } else {
                    v.to_string()
                };
                return fail(
                    line,
                    format!(
                        "assertion failed: {} {} {} ({} is {shown})",
                        a.field,
                        a.op.as_str(),
                        a.text,
                        a.field
                    ),
                );
            }
        }
        self.after_sut()
    }
}

fn state_symbol(v: i64) -> &'static str {
    match u8::try_from(v) {
        Ok(bsd::TCPS_SYN_RECEIVED) => "SYN_RECEIVED",
        Ok(s) => bsd::tcp_state_name(s),
        Err(_) => "UNKNOWN",
    }
}

fn result_text(res: &CallResult) -> String {
    match res {
        CallResult::Ok(v) => v.to_string(),
        CallResult::Value(v) => format!("0 (value {v})"),
        CallResult::Err(e) => format!("-1 {}", e.name()),
        CallResult::Blocked => "nothing yet (blocked)".to_string(),
    }
}

/// A packet expectation as the script wrote it.
fn spec_summary(p: &PacketSpec) -> String {
    let mut s = String::new();
    if let Some(e) = p.ecn {
        match e {
            EcnSpec::Ect01 => s.push_str("[ect01] "),
            EcnSpec::Exactly(e) => s.push_str(&format!("[{}] ", e.name())),
        }
    }
    s.push_str(&packet::flags_to_string(p.flags));
    match p.seq {
        Some(a) => s.push_str(&format!(
            " {a}:{}({})",
            a.wrapping_add(u32::from(p.len)),
            p.len
        )),
        None => s.push_str(&format!(" ...({})", p.len)),
    }
    if let Some(a) = p.ack {
        s.push_str(&format!(" ack {a}"));
    }
    if let Some(w) = p.win {
        s.push_str(&format!(" win {w}"));
    }
    match &p.options {
        OptionsSpec::None => {}
        OptionsSpec::Any => s.push_str(" <...>"),
        OptionsSpec::List(o) => {
            s.push(' ');
            s.push_str(&packet::options_to_string(o));
        }
    }
    s
}
