//! Parser of packetdrill scripts (the subset the FreeBSD tcp-testsuite uses).
//!
//! The text is first run through a tiny preprocessor (`#ifdef NAME` / `#ifndef` / `#else` /
//! `#endif` / `#define` / `#undef` / `#if 0|1`, the way the testsuite's scripts select between
//! `STANDARD` and `FreeBSD` behaviour), then lexed and parsed into [`Event`]s, each with the line
//! of its timestamp. Every construct is checked here: what the runner could not execute is
//! reported as [`ErrorKind::Unsupported`], what is not valid packetdrill as
//! [`ErrorKind::Syntax`]. Nothing panics on bad input.

use std::collections::HashSet;
use std::fmt;

use hydranet_core::Errno;

use crate::bsd;
use crate::packet::{self, TcpOpt};
use crate::sut::TcpInfo;

/// Why a script could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not valid packetdrill (or not consistent, e.g. `1:5(3)`).
    Syntax,
    /// Valid packetdrill that this runner does not implement.
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    pub line: u32,
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Syntax => "parse error",
            ErrorKind::Unsupported => "unsupported",
        };
        write!(f, "line {}: {kind}: {}", self.line, self.message)
    }
}

impl std::error::Error for ScriptError {}

type PResult<T> = Result<T, ScriptError>;

fn syntax<T>(line: u32, message: impl Into<String>) -> PResult<T> {
    Err(ScriptError {
        line,
        kind: ErrorKind::Syntax,
        message: message.into(),
    })
}

fn unsupported<T>(line: u32, message: impl Into<String>) -> PResult<T> {
    Err(ScriptError {
        line,
        kind: ErrorKind::Unsupported,
        message: message.into(),
    })
}

/// A parsed script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// `--name=value` header options, in order.
    pub options: Vec<HeaderOption>,
    pub events: Vec<Event>,
}

impl Script {
    /// The value of a header option (the last one given wins).
    pub fn option(&self, name: &str) -> Option<&HeaderOption> {
        self.options.iter().rev().find(|o| o.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderOption {
    pub line: u32,
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The line of the event's timestamp.
    pub line: u32,
    pub time: EventTime,
    pub action: Action,
}

/// When an event happens, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventTime {
    /// `*`: any time (outbound packets only).
    Any,
    /// `0.10` (absolute) or `+0.10` (relative to the previous event). `end_usecs` is the `...b`
    /// part (same base): for a system call, when the blocking call is expected to return; for
    /// an outbound packet, the end of the window it may be sent in.
    At {
        relative: bool,
        usecs: u64,
        end_usecs: Option<u64>,
    },
}

/// What an event does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Packet(PacketSpec),
    Syscall(SyscallSpec),
    /// `` `sysctl -w name=value` ``.
    Sysctl {
        name: String,
        value: i64,
    },
    /// `` `sockstat -4 -P tcp [-p PORT] -s | [grep packetdril |] grep -c STATE | grep N` ``.
    Sockstat(SockstatQuery),
    /// `` `tcpdrop -s STATE` ``.
    TcpDrop {
        state: u8,
    },
    /// `%{ assert tcpi_x OP value }%` (one or more).
    Asserts(Vec<TcpInfoAssert>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// The bracketed ECN codepoint of a packet line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcnSpec {
    Exactly(packet::Ecn),
    /// `[ect01]`: ECT(0) or ECT(1) (outbound only).
    Ect01,
}

/// The options part of a packet line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionsSpec {
    /// No `<...>` list: the segment carries no options.
    None,
    /// `<...>`: options are not checked (outbound only).
    Any,
    List(Vec<TcpOpt>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketSpec {
    pub direction: Direction,
    pub ecn: Option<EcnSpec>,
    /// `TH_*` bits.
    pub flags: u8,
    /// `None` for `...(len)` (sequence number not checked; inbound: 0).
    pub seq: Option<u32>,
    pub len: u16,
    pub ack: Option<u32>,
    pub win: Option<u16>,
    pub urg: Option<u16>,
    pub options: OptionsSpec,
}

/// A system call line, lowered to what the runner executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallSpec {
    pub name: String,
    /// Descriptor arguments are the script's numbers; the runner maps them to live ones.
    pub op: SysOp,
    pub expect: Expect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysOp {
    Socket,
    Bind {
        fd: i32,
    },
    Listen {
        fd: i32,
        backlog: i32,
    },
    Accept {
        fd: i32,
    },
    Connect {
        fd: i32,
    },
    Close {
        fd: i32,
    },
    Shutdown {
        fd: i32,
        how: i32,
    },
    Read {
        fd: i32,
        len: usize,
    },
    Write {
        fd: i32,
        len: usize,
    },
    GetFl {
        fd: i32,
    },
    SetFl {
        fd: i32,
        flags: i32,
    },
    SetSockOpt {
        fd: i32,
        level: i32,
        name: i32,
        value: i32,
    },
    /// `value`: the expected option value (`[65536]`, `[ECONNRESET]`), `None` for `...`.
    GetSockOpt {
        fd: i32,
        level: i32,
        name: i32,
        value: Option<i64>,
    },
}

impl SysOp {
    /// The script descriptor the call operates on.
    pub fn fd(&self) -> Option<i32> {
        match *self {
            SysOp::Socket => None,
            SysOp::Bind { fd }
            | SysOp::Listen { fd, .. }
            | SysOp::Accept { fd }
            | SysOp::Connect { fd }
            | SysOp::Close { fd }
            | SysOp::Shutdown { fd, .. }
            | SysOp::Read { fd, .. }
            | SysOp::Write { fd, .. }
            | SysOp::GetFl { fd }
            | SysOp::SetFl { fd, .. }
            | SysOp::SetSockOpt { fd, .. }
            | SysOp::GetSockOpt { fd, .. } => Some(fd),
        }
    }

    /// Whether the (non-negative) return value is a new descriptor.
    pub fn returns_fd(&self) -> bool {
        matches!(self, SysOp::Socket | SysOp::Accept { .. })
    }
}

/// The expected outcome of a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Returns this value (for `socket`/`accept`: the script's number for the new descriptor).
    Ret(i64),
    /// Returns -1 with this errno.
    Errno(Errno),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockstatQuery {
    /// `-p PORT`: lines whose local or foreign port is PORT.
    pub port: Option<u16>,
    /// `grep packetdril`: only sockets a descriptor of the script refers to.
    pub owned_only: bool,
    /// `grep -c STATE`.
    pub state: u8,
    /// `grep N`.
    pub count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn eval(self, a: i64, b: i64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpInfoAssert {
    pub field: String,
    pub op: CmpOp,
    pub value: i64,
    /// The value as written (for messages).
    pub text: String,
}

/// Parses a script with the default preprocessor definitions (`FreeBSD`: the suite's scripts
/// describe FreeBSD's behaviour in `#ifdef FreeBSD` and the RFC's in `#ifdef STANDARD`).
pub fn parse(text: &str) -> PResult<Script> {
    parse_with_defines(text, &["FreeBSD"])
}

/// Parses a script with the given names defined for `#ifdef`.
pub fn parse_with_defines(text: &str, defines: &[&str]) -> PResult<Script> {
    let text = preprocess(text, defines)?;
    let tokens = lex(&text)?;
    Parser {
        toks: tokens,
        pos: 0,
    }
    .script()
}

// ---------------------------------------------------------------------------------------------
// Preprocessor

fn preprocess(text: &str, defines: &[&str]) -> PResult<String> {
    let mut defined: HashSet<String> = defines.iter().map(|s| s.to_string()).collect();
    // Stack of (this branch active, an earlier branch was taken, parent active, line).
    let mut stack: Vec<(bool, bool, bool, u32)> = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut in_comment = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = (i + 1) as u32;
        let active = stack.last().map(|s| s.0).unwrap_or(true);
        let trimmed = raw.trim_start();
        if !in_comment && trimmed.starts_with('#') {
            let body = trimmed[1..].trim();
            let mut words = body.split_whitespace();
            let directive = words.next().unwrap_or("");
            let arg = words.next();
            let ident = |arg: Option<&str>| -> PResult<String> {
                match arg {
                    Some(a) if !a.is_empty() => Ok(a.to_string()),
                    _ => syntax(line, format!("#{directive} needs a name")),
                }
            };
            match directive {
                "ifdef" | "ifndef" => {
                    let name = ident(arg)?;
                    let cond = defined.contains(&name) == (directive == "ifdef");
                    stack.push((active && cond, cond, active, line));
                }
                "if" => {
                    let cond = match arg {
                        Some("0") => false,
                        Some("1") => true,
                        _ => return unsupported(line, format!("preprocessor condition '#{body}'")),
                    };
                    stack.push((active && cond, cond, active, line));
                }
                "else" => match stack.last_mut() {
                    Some(top) => {
                        top.0 = top.2 && !top.1;
                        top.1 = true;
                    }
                    None => return syntax(line, "#else without #if"),
                },
                "endif" => {
                    if stack.pop().is_none() {
                        return syntax(line, "#endif without #if");
                    }
                }
                "define" => {
                    if active {
                        defined.insert(ident(arg)?);
                    }
                }
                "undef" => {
                    if active {
                        defined.remove(&ident(arg)?);
                    }
                }
                _ => {
                    if active {
                        return unsupported(line, format!("preprocessor directive '#{body}'"));
                    }
                }
            }
            out.push('\n');
            continue;
        }
        if active {
            out.push_str(raw);
        }
        out.push('\n');
        // Track C comments spanning lines so a '#' inside one is not a directive.
        if active {
            in_comment = update_comment_state(raw, in_comment);
        }
    }
    if let Some(&(_, _, _, line)) = stack.last() {
        return syntax(line, "#if without #endif");
    }
    // Drop the final '\n' added for the last line so line numbers stay exact.
    out.pop();
    Ok(out)
}

fn update_comment_state(line: &str, mut in_comment: bool) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if in_comment {
            if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                in_comment = false;
                i += 2;
                continue;
            }
        } else {
            if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
                break;
            }
            if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                in_comment = true;
                i += 2;
                continue;
            }
        }
        i += 1;
    }
    in_comment
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// Value and text as written.
    Int(i64, String),
    Float(String),
    Word(String),
    Str(String),
    BackQuoted(String),
    Code(String),
    Opt(String, Option<String>),
    Ellipsis,
    Punct(char),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Int(_, s) | Tok::Float(s) | Tok::Word(s) => write!(f, "'{s}'"),
            Tok::Str(s) => write!(f, "\"{s}\""),
            Tok::BackQuoted(s) => write!(f, "`{s}`"),
            Tok::Code(_) => write!(f, "code snippet"),
            Tok::Opt(n, _) => write!(f, "option --{n}"),
            Tok::Ellipsis => write!(f, "'...'"),
            Tok::Punct(c) => write!(f, "'{c}'"),
            Tok::Eof => write!(f, "end of script"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: u32,
}

fn lex(text: &str) -> PResult<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line: u32 = 1;
    let n = chars.len();
    let at = |j: usize| -> char { chars.get(j).copied().unwrap_or('\0') };
    while i < n {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // Comments.
        if c == '/' && at(i + 1) == '/' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && at(i + 1) == '*' {
            i += 2;
            loop {
                if i >= n {
                    return syntax(start_line, "unterminated /* comment");
                }
                if chars[i] == '*' && at(i + 1) == '/' {
                    i += 2;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            continue;
        }
        // Code snippet %{ ... }%.
        if c == '%' && at(i + 1) == '{' {
            i += 2;
            let mut s = String::new();
            loop {
                if i >= n {
                    return syntax(start_line, "unterminated %{ code snippet");
                }
                if chars[i] == '}' && at(i + 1) == '%' {
                    i += 2;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            toks.push(Token {
                tok: Tok::Code(s.trim().to_string()),
                line: start_line,
            });
            continue;
        }
        if c == '`' || c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                if i >= n {
                    return syntax(start_line, format!("unterminated {c}"));
                }
                if chars[i] == '\\' && i + 1 < n {
                    s.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if chars[i] == c {
                    i += 1;
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            let tok = if c == '`' {
                Tok::BackQuoted(s)
            } else {
                Tok::Str(s)
            };
            toks.push(Token {
                tok,
                line: start_line,
            });
            continue;
        }
        // --option[=value]
        if c == '-' && at(i + 1) == '-' && (at(i + 2).is_ascii_alphanumeric() || at(i + 2) == '_') {
            i += 2;
            let mut name = String::new();
            while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                name.push(chars[i]);
                i += 1;
            }
            let mut value = None;
            if at(i) == '=' {
                i += 1;
                let mut v = String::new();
                while i < n && !chars[i].is_whitespace() {
                    v.push(chars[i]);
                    i += 1;
                }
                value = Some(v);
            }
            toks.push(Token {
                tok: Tok::Opt(name, value),
                line: start_line,
            });
            continue;
        }
        if c == '.' && at(i + 1) == '.' && at(i + 2) == '.' {
            i += 3;
            toks.push(Token {
                tok: Tok::Ellipsis,
                line: start_line,
            });
            continue;
        }
        // Numbers: 0x1f, 12, -1, 0.25, .5
        let neg = c == '-' && at(i + 1).is_ascii_digit();
        if c.is_ascii_digit() || neg || (c == '.' && at(i + 1).is_ascii_digit()) {
            let begin = i;
            if neg {
                i += 1;
            }
            if chars[i] == '0'
                && (at(i + 1) == 'x' || at(i + 1) == 'X')
                && at(i + 2).is_ascii_hexdigit()
            {
                i += 2;
                let hs = i;
                while i < n && chars[i].is_ascii_hexdigit() {
                    i += 1;
                }
                let hex: String = chars[hs..i].iter().collect();
                let text: String = chars[begin..i].iter().collect();
                let Ok(mut v) = i64::from_str_radix(&hex, 16) else {
                    return syntax(start_line, format!("number {text} out of range"));
                };
                if neg {
                    v = -v;
                }
                toks.push(Token {
                    tok: Tok::Int(v, text),
                    line: start_line,
                });
                continue;
            }
            while i < n && chars[i].is_ascii_digit() {
                i += 1;
            }
            let is_float = at(i) == '.' && at(i + 1).is_ascii_digit();
            if is_float {
                i += 1;
                while i < n && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let text: String = chars[begin..i].iter().collect();
                toks.push(Token {
                    tok: Tok::Float(text),
                    line: start_line,
                });
            } else {
                let text: String = chars[begin..i].iter().collect();
                let Ok(v) = text.parse::<i64>() else {
                    return syntax(start_line, format!("number {text} out of range"));
                };
                toks.push(Token {
                    tok: Tok::Int(v, text),
                    line: start_line,
                });
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let begin = i;
            while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Token {
                tok: Tok::Word(chars[begin..i].iter().collect()),
                line: start_line,
            });
            continue;
        }
        toks.push(Token {
            tok: Tok::Punct(c),
            line: start_line,
        });
        i += 1;
    }
    toks.push(Token {
        tok: Tok::Eof,
        line,
    });
    Ok(toks)
}

// ---------------------------------------------------------------------------------------------
// Parser

/// A system call argument.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Ellipsis,
    Int(i64),
    Word(String),
    Str(String),
    List(Vec<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }
    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }
    fn line(&self) -> u32 {
        self.toks[self.pos.min(self.toks.len() - 1)].line
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn is_punct(&self, c: char) -> bool {
        *self.peek() == Tok::Punct(c)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }
    fn expect_punct(&mut self, c: char, what: &str) -> PResult<()> {
        if self.is_punct(c) {
            self.next();
            Ok(())
        } else {
            syntax(
                self.line(),
                format!("expected '{c}' {what}, found {}", self.peek()),
            )
        }
    }
    fn integer(&mut self, what: &str) -> PResult<i64> {
        match self.peek().clone() {
            Tok::Int(v, _) => {
                self.next();
                Ok(v)
            }
            t => syntax(self.line(), format!("expected {what}, found {t}")),
        }
    }
    fn u32_value(&mut self, what: &str) -> PResult<u32> {
        let line = self.line();
        let v = self.integer(what)?;
        u32::try_from(v).or_else(|_| syntax(line, format!("{what} {v} out of range")))
    }
    fn u16_value(&mut self, what: &str) -> PResult<u16> {
        let line = self.line();
        let v = self.integer(what)?;
        u16::try_from(v).or_else(|_| syntax(line, format!("{what} {v} out of range")))
    }

    fn script(mut self) -> PResult<Script> {
        let mut options = Vec::new();
        while let Tok::Opt(name, value) = self.peek().clone() {
            options.push(HeaderOption {
                line: self.line(),
                name,
                value,
            });
            self.next();
        }
        let mut events = Vec::new();
        while *self.peek() != Tok::Eof {
            events.push(self.event()?);
        }
        Ok(Script { options, events })
    }

    /// A time in seconds (`0.10`, `2`) as microseconds.
    fn time_value(&mut self) -> PResult<u64> {
        let line = self.line();
        let text = match self.next() {
            Tok::Int(v, t) if v >= 0 => t,
            Tok::Float(t) if !t.starts_with('-') => t,
            t => return syntax(line, format!("expected a time, found {t}")),
        };
        usecs_from_decimal(&text).ok_or_else(|| ScriptError {
            line,
            kind: ErrorKind::Syntax,
            message: format!("bad time '{text}'"),
        })
    }

    fn event_time(&mut self) -> PResult<EventTime> {
        if self.is_punct('*') {
            self.next();
            return Ok(EventTime::Any);
        }
        let relative = self.is_punct('+');
        if relative {
            self.next();
        }
        let usecs = self.time_value()?;
        let mut end_usecs = None;
        if *self.peek() == Tok::Ellipsis
            && matches!(
                self.peek_at(1),
                Tok::Int(..) | Tok::Float(_) | Tok::Punct('+')
            )
        {
            self.next();
            if self.is_punct('+') {
                if !relative {
                    return syntax(self.line(), "absolute start time with a relative end time");
                }
                self.next();
            }
            let line = self.line();
            let end = self.time_value()?;
            if end < usecs {
                return syntax(line, "time range is backwards");
            }
            end_usecs = Some(end);
        }
        Ok(EventTime::At {
            relative,
            usecs,
            end_usecs,
        })
    }

    fn event(&mut self) -> PResult<Event> {
        let line = self.line();
        let time = self.event_time()?;
        let action_line = self.line();
        let action = match self.peek().clone() {
            Tok::Punct('<') | Tok::Punct('>') => Action::Packet(self.packet()?),
            Tok::Word(_) if *self.peek_at(1) == Tok::Punct('(') => Action::Syscall(self.syscall()?),
            Tok::BackQuoted(cmd) => {
                self.next();
                command(action_line, &cmd)?
            }
            Tok::Code(code) => {
                self.next();
                Action::Asserts(code_snippet(action_line, &code)?)
            }
            t => return syntax(action_line, format!("expected an event, found {t}")),
        };
        match (&time, &action) {
            (EventTime::Any, Action::Packet(p)) if p.direction == Direction::Outbound => {}
            (EventTime::Any, _) => {
                return syntax(line, "event time * can only be used with outbound packets")
            }
            (
                EventTime::At {
                    end_usecs: Some(_), ..
                },
                Action::Packet(p),
            ) if p.direction == Direction::Outbound => {}
            (
                EventTime::At {
                    end_usecs: Some(_), ..
                },
                Action::Syscall(_),
            ) => {}
            (
                EventTime::At {
                    end_usecs: Some(_), ..
                },
                _,
            ) => {
                return syntax(
                    line,
                    "a time range can only be used with outbound packets and system calls",
                )
            }
            _ => {}
        }
        Ok(Event { line, time, action })
    }

    // ---- packets

    fn packet(&mut self) -> PResult<PacketSpec> {
        let direction = match self.next() {
            Tok::Punct('<') => Direction::Inbound,
            _ => Direction::Outbound,
        };
        let ecn = if self.is_punct('[') || self.is_punct('(') {
            let close = if self.is_punct('[') { ']' } else { ')' };
            self.next();
            let line = self.line();
            let e = match self.next() {
                Tok::Word(w) => match w.as_str() {
                    "noecn" => EcnSpec::Exactly(packet::Ecn::NotEct),
                    "ect0" => EcnSpec::Exactly(packet::Ecn::Ect0),
                    "ect1" => EcnSpec::Exactly(packet::Ecn::Ect1),
                    "ce" => EcnSpec::Exactly(packet::Ecn::Ce),
                    "ect01" => EcnSpec::Ect01,
                    "tos" | "ttl" | "flowlabel" => {
                        return unsupported(line, format!("IP field '{w}' in a packet line"))
                    }
                    _ => return syntax(line, format!("unknown IP info '{w}'")),
                },
                t => return syntax(line, format!("expected an ECN codepoint, found {t}")),
            };
            if e == EcnSpec::Ect01 && direction == Direction::Inbound {
                return syntax(line, "[ect01] can only be used with outbound packets");
            }
            if self.is_punct(',') {
                return unsupported(self.line(), "IP info beyond the ECN codepoint");
            }
            self.expect_punct(close, "after the ECN codepoint")?;
            Some(e)
        } else {
            None
        };
        let flags = self.flags()?;
        // Sequence: start:end(len) or ...(len)
        let line = self.line();
        let seq = if *self.peek() == Tok::Ellipsis {
            self.next();
            None
        } else {
            let start = self.u32_value("TCP start sequence number")?;
            self.expect_punct(':', "in the sequence range")?;
            let end = self.u32_value("TCP end sequence number")?;
            Some((start, end))
        };
        self.expect_punct('(', "before the payload length")?;
        let len = self.u16_value("TCP payload size")?;
        self.expect_punct(')', "after the payload length")?;
        if let Some((start, end)) = seq {
            if start.wrapping_add(u32::from(len)) != end {
                return syntax(line, "inconsistent TCP sequence numbers and payload size");
            }
        }
        if seq.is_none() && direction == Direction::Inbound {
            return syntax(
                line,
                "'...' for the sequence number can only be used with outbound packets",
            );
        }
        let mut ack = None;
        let mut win = None;
        let mut urg = None;
        if self.is_word("ack") {
            self.next();
            ack = Some(self.u32_value("TCP ack sequence number")?);
        }
        if self.is_word("win") {
            self.next();
            win = Some(self.u16_value("TCP window value")?);
        }
        if self.is_word("urg") {
            self.next();
            urg = Some(self.u16_value("urg_ptr value")?);
        }
        let options = if self.is_punct('<') {
            self.tcp_options(direction)?
        } else {
            OptionsSpec::None
        };
        if self.is_punct('{') {
            return unsupported(self.line(), "packet fuzzing directives");
        }
        if direction == Direction::Inbound {
            let opt_bytes = match &options {
                OptionsSpec::List(o) => packet::encode_options(o).len(),
                _ => 0,
            };
            if 40 + opt_bytes + usize::from(len) > 65535 {
                return syntax(
                    line,
                    format!("payload of {len} bytes does not fit an IPv4 packet"),
                );
            }
        }
        if direction == Direction::Inbound && win.is_none() {
            return unsupported(line, "inbound packet without 'win'");
        }
        Ok(PacketSpec {
            direction,
            ecn,
            flags,
            seq: seq.map(|(s, _)| s),
            len,
            ack,
            win,
            urg,
            options,
        })
    }

    fn flags(&mut self) -> PResult<u8> {
        let line = self.line();
        let mut flags = 0u8;
        match self.peek().clone() {
            Tok::Punct('.') => {
                self.next();
                return Ok(packet::TH_ACK);
            }
            Tok::Punct('-') => {
                self.next();
                return Ok(0);
            }
            Tok::Word(w) => {
                if matches!(
                    w.as_str(),
                    "udp" | "icmp" | "sctp" | "udplite" | "gre" | "mpls" | "ipv4" | "ipv6"
                ) {
                    return unsupported(line, format!("'{w}' packets"));
                }
                self.next();
                for ch in w.chars() {
                    let bit = match ch {
                        'S' => packet::TH_SYN,
                        'F' => packet::TH_FIN,
                        'R' => packet::TH_RST,
                        'P' => packet::TH_PUSH,
                        'E' => packet::TH_ECE,
                        'W' => packet::TH_CWR,
                        'U' => packet::TH_URG,
                        _ => return syntax(line, format!("unknown TCP flag '{ch}' in '{w}'")),
                    };
                    if flags & bit != 0 {
                        return syntax(line, format!("TCP flag '{ch}' repeated in '{w}'"));
                    }
                    flags |= bit;
                }
                if self.is_punct('.') {
                    self.next();
                    flags |= packet::TH_ACK;
                }
            }
            t => return syntax(line, format!("expected TCP flags, found {t}")),
        }
        Ok(flags)
    }

    fn tcp_options(&mut self, direction: Direction) -> PResult<OptionsSpec> {
        let line = self.line();
        self.expect_punct('<', "to open the TCP options")?;
        if *self.peek() == Tok::Ellipsis {
            self.next();
            self.expect_punct('>', "after '<...'")?;
            if direction == Direction::Inbound {
                return syntax(
                    line,
                    "<...> for TCP options can only be used with outbound packets",
                );
            }
            return Ok(OptionsSpec::Any);
        }
        let mut opts = Vec::new();
        loop {
            let oline = self.line();
            let word = match self.next() {
                Tok::Word(w) => w,
                t => return syntax(oline, format!("expected a TCP option, found {t}")),
            };
            let opt = match word.as_str() {
                "nop" => TcpOpt::Nop,
                "eol" => TcpOpt::Eol,
                "mss" => TcpOpt::Mss(self.u16_value("mss value")?),
                "wscale" => {
                    let v = self.integer("window scale shift count")?;
                    TcpOpt::WScale(u8::try_from(v).or_else(|_| {
                        syntax(oline, format!("window scale shift count {v} out of range"))
                    })?)
                }
                "sackOK" => TcpOpt::SackOk,
                "sack" => {
                    let mut blocks = Vec::new();
                    while matches!(self.peek(), Tok::Int(..)) {
                        let l = self.u32_value("SACK left edge")?;
                        self.expect_punct(':', "in a SACK block")?;
                        let r = self.u32_value("SACK right edge")?;
                        blocks.push((l, r));
                    }
                    if blocks.is_empty() {
                        return syntax(oline, "sack option without blocks");
                    }
                    if blocks.len() > 4 {
                        return syntax(oline, "more than 4 SACK blocks");
                    }
                    TcpOpt::Sack(blocks)
                }
                "TS" => {
                    if !self.is_word("val") {
                        return syntax(oline, "expected 'val' after 'TS'");
                    }
                    self.next();
                    let val = self.u32_value("ts val")?;
                    if !self.is_word("ecr") {
                        return syntax(oline, "expected 'ecr' in the TS option");
                    }
                    self.next();
                    let ecr = self.u32_value("ecr val")?;
                    TcpOpt::Timestamp { val, ecr }
                }
                "FO" | "FOEXP" | "md5" => {
                    return unsupported(oline, format!("TCP option '{word}'"))
                }
                _ => return syntax(oline, format!("unknown TCP option '{word}'")),
            };
            opts.push(opt);
            if self.is_punct(',') {
                self.next();
                continue;
            }
            self.expect_punct('>', "to close the TCP options")?;
            break;
        }
        let bytes = packet::encode_options(&opts).len();
        if bytes > 40 {
            return syntax(
                line,
                format!("TCP options take {bytes} bytes (more than 40)"),
            );
        }
        if direction == Direction::Inbound && bytes % 4 != 0 {
            return syntax(
                line,
                format!("TCP options take {bytes} bytes, not a multiple of 4"),
            );
        }
        Ok(OptionsSpec::List(opts))
    }

    // ---- system calls

    fn expression(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        while self.is_punct('|') {
            self.next();
            let rhs = self.primary()?;
            e = Expr::Or(Box::new(e), Box::new(rhs));
        }
        Ok(e)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let line = self.line();
        match self.next() {
            Tok::Ellipsis => Ok(Expr::Ellipsis),
            Tok::Int(v, _) => Ok(Expr::Int(v)),
            Tok::Word(w) => {
                if self.is_punct('=') || self.is_punct('(') {
                    return unsupported(line, format!("structured argument '{w}...'"));
                }
                Ok(Expr::Word(w))
            }
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Punct('[') => {
                let mut items = Vec::new();
                if self.is_punct(']') {
                    self.next();
                    return Ok(Expr::List(items));
                }
                loop {
                    items.push(self.expression()?);
                    if self.is_punct(',') {
                        self.next();
                        continue;
                    }
                    self.expect_punct(']', "to close the list")?;
                    return Ok(Expr::List(items));
                }
            }
            Tok::Punct('{') => unsupported(line, "structured ({...}) system call arguments"),
            t => syntax(line, format!("expected an expression, found {t}")),
        }
    }

    fn syscall(&mut self) -> PResult<SyscallSpec> {
        let line = self.line();
        let Tok::Word(name) = self.next() else {
            return syntax(line, "expected a system call name");
        };
        self.expect_punct('(', "after the system call name")?;
        let mut args = Vec::new();
        if !self.is_punct(')') {
            loop {
                args.push(self.expression()?);
                if self.is_punct(',') {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect_punct(')', "to close the system call arguments")?;
        self.expect_punct('=', "before the expected return value")?;
        let rline = self.line();
        let result = self.expression()?;
        let mut errno = None;
        if let Tok::Word(w) = self.peek().clone() {
            self.next();
            errno = Some(w);
        }
        if self.is_punct('(') {
            // The strace-style note: `(Operation now in progress)`, `(flags O_RDWR)`.
            self.next();
            let mut depth = 1;
            while depth > 0 {
                match self.next() {
                    Tok::Punct('(') => depth += 1,
                    Tok::Punct(')') => depth -= 1,
                    Tok::Eof => return syntax(rline, "unterminated note after the return value"),
                    _ => {}
                }
            }
        }
        let ret = match result {
            Expr::Int(v) => v,
            Expr::Word(ref w) => match bsd::symbol(w) {
                Some(v) => v,
                None => return unsupported(rline, format!("unknown symbol '{w}' as return value")),
            },
            _ => return unsupported(rline, "non-integer system call return value"),
        };
        let expect = match (ret, errno) {
            (-1, Some(e)) => match bsd::errno(&e) {
                Some(err) => Expect::Errno(err),
                None => return unsupported(rline, format!("unknown errno '{e}'")),
            },
            (-1, None) => return syntax(rline, "return value -1 without an errno"),
            (v, Some(e)) => return syntax(rline, format!("errno {e} with return value {v}")),
            (v, None) if v < 0 => return syntax(rline, format!("negative return value {v}")),
            (v, None) => Expect::Ret(v),
        };
        let op = lower_syscall(line, &name, &args)?;
        if op.returns_fd() {
            if let Expect::Ret(v) = expect {
                if v > i64::from(i32::MAX) {
                    return syntax(rline, format!("descriptor {v} out of range"));
                }
            }
        }
        Ok(SyscallSpec { name, op, expect })
    }
}

/// `"1.25"` seconds as microseconds, exactly.
fn usecs_from_decimal(text: &str) -> Option<u64> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut f: u64 = 0;
    for ch in frac.chars().chain(std::iter::repeat('0')).take(6) {
        f = f * 10 + u64::from(ch.to_digit(10)?);
    }
    int.checked_mul(1_000_000)?.checked_add(f)
}

fn eval_int(line: u32, e: &Expr, what: &str) -> PResult<i64> {
    match e {
        Expr::Int(v) => Ok(*v),
        Expr::Word(w) => match bsd::symbol(w) {
            Some(v) => Ok(v),
            None => unsupported(line, format!("unknown symbol '{w}' for {what}")),
        },
        Expr::Or(a, b) => Ok(eval_int(line, a, what)? | eval_int(line, b, what)?),
        Expr::List(items) if items.len() == 1 => eval_int(line, &items[0], what),
        Expr::Ellipsis => unsupported(line, format!("'...' for {what}")),
        _ => unsupported(line, format!("unsupported expression for {what}")),
    }
}

fn eval_i32(line: u32, e: &Expr, what: &str) -> PResult<i32> {
    let v = eval_int(line, e, what)?;
    i32::try_from(v).or_else(|_| syntax(line, format!("{what} {v} out of range")))
}

fn fd_arg(line: u32, e: &Expr) -> PResult<i32> {
    match e {
        Expr::Int(v) => {
            i32::try_from(*v).or_else(|_| syntax(line, format!("descriptor {v} out of range")))
        }
        _ => unsupported(line, "a descriptor argument that is not a number"),
    }
}

fn lower_syscall(line: u32, name: &str, args: &[Expr]) -> PResult<SysOp> {
    let arity = |n: usize| -> PResult<()> {
        if args.len() == n {
            Ok(())
        } else {
            syntax(
                line,
                format!("{name}() takes {n} arguments, {} given", args.len()),
            )
        }
    };
    let defaults_only = |from: usize| -> PResult<()> {
        if args[from..].iter().all(|a| *a == Expr::Ellipsis) {
            Ok(())
        } else {
            unsupported(
                line,
                format!("{name}() with explicit addresses (only '...' is supported)"),
            )
        }
    };
    let op = match name {
        "socket" => {
            arity(3)?;
            match &args[0] {
                Expr::Ellipsis => {}
                e if eval_int(line, e, "the domain")? == bsd::AF_INET => {}
                _ => return unsupported(line, "socket() domain other than AF_INET"),
            }
            if eval_int(line, &args[1], "the socket type")? != bsd::SOCK_STREAM {
                return unsupported(line, "socket() type other than SOCK_STREAM");
            }
            let proto = eval_int(line, &args[2], "the protocol")?;
            if proto != i64::from(bsd::IPPROTO_TCP) && proto != 0 {
                return unsupported(line, "socket() protocol other than IPPROTO_TCP");
            }
            SysOp::Socket
        }
        "bind" => {
            arity(3)?;
            defaults_only(1)?;
            SysOp::Bind {
                fd: fd_arg(line, &args[0])?,
            }
        }
        "connect" => {
            arity(3)?;
            defaults_only(1)?;
            SysOp::Connect {
                fd: fd_arg(line, &args[0])?,
            }
        }
        "accept" => {
            arity(3)?;
            defaults_only(1)?;
            SysOp::Accept {
                fd: fd_arg(line, &args[0])?,
            }
        }
        "listen" => {
            arity(2)?;
            SysOp::Listen {
                fd: fd_arg(line, &args[0])?,
                backlog: eval_i32(line, &args[1], "the backlog")?,
            }
        }
        "close" => {
            arity(1)?;
            SysOp::Close {
                fd: fd_arg(line, &args[0])?,
            }
        }
        "shutdown" => {
            arity(2)?;
            let how = eval_i32(line, &args[1], "shutdown's how")?;
            if !(0..=2).contains(&how) {
                return unsupported(line, format!("shutdown how {how}"));
            }
            SysOp::Shutdown {
                fd: fd_arg(line, &args[0])?,
                how,
            }
        }
        "read" | "write" | "recv" | "send" => {
            let n = if name == "recv" || name == "send" {
                4
            } else {
                3
            };
            arity(n)?;
            if args[1] != Expr::Ellipsis {
                return unsupported(line, format!("{name}() with an explicit buffer"));
            }
            if n == 4 && eval_int(line, &args[3], "the flags")? != 0 {
                return unsupported(line, format!("{name}() with flags"));
            }
            let fd = fd_arg(line, &args[0])?;
            let len = eval_int(line, &args[2], "the length")?;
            let Ok(len) = usize::try_from(len) else {
                return syntax(line, format!("negative length {len}"));
            };
            if name == "read" || name == "recv" {
                SysOp::Read { fd, len }
            } else {
                SysOp::Write { fd, len }
            }
        }
        "fcntl" => {
            if args.len() < 2 {
                return syntax(line, "fcntl() needs a descriptor and a command");
            }
            let fd = fd_arg(line, &args[0])?;
            let cmd = eval_i32(line, &args[1], "the fcntl command")?;
            match cmd {
                bsd::F_GETFL => {
                    arity(2)?;
                    SysOp::GetFl { fd }
                }
                bsd::F_SETFL => {
                    arity(3)?;
                    SysOp::SetFl {
                        fd,
                        flags: eval_i32(line, &args[2], "the file status flags")?,
                    }
                }
                _ => return unsupported(line, format!("fcntl command {cmd}")),
            }
        }
        "setsockopt" => {
            arity(5)?;
            let fd = fd_arg(line, &args[0])?;
            let level = eval_i32(line, &args[1], "the option level")?;
            let name_ = eval_i32(line, &args[2], "the option name")?;
            let value = match &args[3] {
                Expr::List(items) if items.len() == 1 => {
                    eval_i32(line, &items[0], "the option value")?
                }
                e @ (Expr::Int(_) | Expr::Word(_)) => eval_i32(line, e, "the option value")?,
                _ => return unsupported(line, "setsockopt() with a non-integer value"),
            };
            SysOp::SetSockOpt {
                fd,
                level,
                name: name_,
                value,
            }
        }
        "getsockopt" => {
            arity(5)?;
            let fd = fd_arg(line, &args[0])?;
            let level = eval_i32(line, &args[1], "the option level")?;
            let name_ = eval_i32(line, &args[2], "the option name")?;
            let value = match &args[3] {
                Expr::Ellipsis => None,
                Expr::List(items) if items.len() == 1 && items[0] == Expr::Ellipsis => None,
                Expr::List(items) if items.len() == 1 => {
                    Some(eval_int(line, &items[0], "the option value")?)
                }
                e @ (Expr::Int(_) | Expr::Word(_)) => Some(eval_int(line, e, "the option value")?),
                _ => return unsupported(line, "getsockopt() with a non-integer value"),
            };
            match &args[4] {
                Expr::Ellipsis | Expr::Int(_) => {}
                Expr::List(items) if items.len() == 1 => {}
                _ => return syntax(line, "bad getsockopt() option length"),
            }
            SysOp::GetSockOpt {
                fd,
                level,
                name: name_,
                value,
            }
        }
        _ => return unsupported(line, format!("system call {name}()")),
    };
    Ok(op)
}

// ---------------------------------------------------------------------------------------------
// Shell commands and code snippets

fn command(line: u32, cmd: &str) -> PResult<Action> {
    let stages: Vec<Vec<&str>> = cmd
        .split('|')
        .map(|s| s.split_whitespace().collect())
        .collect();
    let first = &stages[0];
    match first.first().copied() {
        Some("sysctl") if stages.len() == 1 => {
            let [_, "-w", assignment] = first.as_slice() else {
                return unsupported(line, format!("shell command `{cmd}`"));
            };
            let Some((name, value)) = assignment.split_once('=') else {
                return unsupported(line, format!("shell command `{cmd}`"));
            };
            let Ok(value) = value.parse::<i64>() else {
                return unsupported(line, format!("non-integer sysctl value in `{cmd}`"));
            };
            if name.is_empty() {
                return syntax(line, format!("empty sysctl name in `{cmd}`"));
            }
            Ok(Action::Sysctl {
                name: name.to_string(),
                value,
            })
        }
        Some("tcpdrop") if stages.len() == 1 => match first.as_slice() {
            [_, "-s", state] => match bsd::tcp_state_from_name(state) {
                Some(state) => Ok(Action::TcpDrop { state }),
                None => unsupported(line, format!("shell command `{cmd}`")),
            },
            _ => unsupported(line, format!("shell command `{cmd}`")),
        },
        Some("sockstat") => sockstat(line, cmd, &stages).map(Action::Sockstat),
        _ => unsupported(line, format!("shell command `{cmd}`")),
    }
}

fn sockstat(line: u32, cmd: &str, stages: &[Vec<&str>]) -> PResult<SockstatQuery> {
    let bad = || unsupported(line, format!("shell command `{cmd}`"));
    let mut port = None;
    let mut ipv4 = false;
    let mut tcp = false;
    let mut states = false;
    let mut args = stages[0][1..].iter();
    while let Some(a) = args.next() {
        match *a {
            "-4" => ipv4 = true,
            "-s" => states = true,
            "-P" => tcp = args.next() == Some(&"tcp"),
            "-p" => match args.next().and_then(|p| p.parse::<u16>().ok()) {
                Some(p) => port = Some(p),
                None => return bad(),
            },
            _ => return bad(),
        }
    }
    if !(ipv4 && tcp && states) {
        return bad();
    }
    let mut owned_only = false;
    let mut state = None;
    let mut count = None;
    for st in &stages[1..] {
        match (st.as_slice(), state) {
            (["grep", "packetdril"], None) => owned_only = true,
            (["grep", "-c", s], None) => match bsd::tcp_state_from_name(s) {
                Some(s) => state = Some(s),
                None => return bad(),
            },
            (["grep", n], Some(_)) if count.is_none() => match n.parse::<u64>() {
                Ok(n) => count = Some(n),
                Err(_) => return bad(),
            },
            _ => return bad(),
        }
    }
    match (state, count) {
        (Some(state), Some(count)) => Ok(SockstatQuery {
            port,
            owned_only,
            state,
            count,
        }),
        _ => bad(),
    }
}

fn code_snippet(line: u32, code: &str) -> PResult<Vec<TcpInfoAssert>> {
    let mut out = Vec::new();
    for stmt in code
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let bad = || unsupported(line, format!("code snippet `{stmt}`"));
        let Some(rest) = stmt.strip_prefix("assert") else {
            return bad();
        };
        if !rest.starts_with(char::is_whitespace) {
            return bad();
        }
        let rest = rest.trim();
        let ops = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ];
        let Some((pos, op_text, op)) = ops
            .iter()
            .filter_map(|(t, o)| rest.find(t).map(|p| (p, *t, *o)))
            .min_by_key(|(p, t, _)| (*p, usize::MAX - t.len()))
        else {
            return bad();
        };
        let field = rest[..pos].trim();
        let value_text = rest[pos + op_text.len()..].trim();
        if !TcpInfo::FIELDS.contains(&field) {
            return unsupported(line, format!("tcp_info field '{field}' in `{stmt}`"));
        }
        let value = if let Ok(v) = value_text.parse::<i64>() {
            v
        } else if let Some(h) = value_text
            .strip_prefix("0x")
            .and_then(|h| i64::from_str_radix(h, 16).ok())
        {
            h
        } else if let Some(s) = bsd::tcp_state_symbol(value_text) {
            i64::from(s)
        } else {
            match value_text {
                "TCPI_OPT_TIMESTAMPS" => i64::from(bsd::TCPI_OPT_TIMESTAMPS),
                "TCPI_OPT_SACK" => i64::from(bsd::TCPI_OPT_SACK),
                "TCPI_OPT_WSCALE" => i64::from(bsd::TCPI_OPT_WSCALE),
                "TCPI_OPT_ECN" => i64::from(bsd::TCPI_OPT_ECN),
                _ => return bad(),
            }
        };
        out.push(TcpInfoAssert {
            field: field.to_string(),
            op,
            value,
            text: value_text.to_string(),
        });
    }
    if out.is_empty() {
        return unsupported(line, "empty code snippet");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Event {
        let s = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.events.len(), 1, "{s:?}");
        s.events.into_iter().next().unwrap()
    }

    #[test]
    fn decimal_times_are_exact() {
        assert_eq!(usecs_from_decimal("0.10"), Some(100_000));
        assert_eq!(usecs_from_decimal("2.20"), Some(2_200_000));
        assert_eq!(usecs_from_decimal("65"), Some(65_000_000));
        assert_eq!(usecs_from_decimal(".5"), Some(500_000));
        assert_eq!(usecs_from_decimal("0.0000019"), Some(1));
    }

    #[test]
    fn packet_lines() {
        let e = one(
            "+0.00 > S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>",
        );
        assert_eq!(
            e.time,
            EventTime::At {
                relative: true,
                usecs: 0,
                end_usecs: None
            }
        );
        let Action::Packet(p) = e.action else {
            panic!()
        };
        assert_eq!(p.direction, Direction::Outbound);
        assert_eq!(p.flags, packet::TH_SYN | packet::TH_ACK);
        assert_eq!(
            (p.seq, p.len, p.ack, p.win),
            (Some(0), 0, Some(1), Some(65535))
        );
        assert_eq!(
            p.options,
            OptionsSpec::List(vec![
                TcpOpt::Mss(1460),
                TcpOpt::Nop,
                TcpOpt::WScale(6),
                TcpOpt::SackOk,
                TcpOpt::Timestamp { val: 100, ecr: 0 }
            ])
        );

        let Action::Packet(p) = one("0.1 <[noecn] SEW 17:20(3) win 32767").action else {
            panic!()
        };
        assert_eq!(p.ecn, Some(EcnSpec::Exactly(packet::Ecn::NotEct)));
        assert_eq!(p.flags, packet::TH_SYN | packet::TH_ECE | packet::TH_CWR);
        assert_eq!((p.seq, p.len, p.options), (Some(17), 3, OptionsSpec::None));

        let e = one("*  > S.  ...(0) ack 65537 win 65535 <...>");
        assert_eq!(e.time, EventTime::Any);
        let Action::Packet(p) = e.action else {
            panic!()
        };
        assert_eq!((p.seq, p.options), (None, OptionsSpec::Any));

        let Action::Packet(p) = one("+0 > [ect01] P. 1:11(10) ack 1").action else {
            panic!()
        };
        assert_eq!(p.ecn, Some(EcnSpec::Ect01));
        assert_eq!(p.flags, packet::TH_PUSH | packet::TH_ACK);
    }

    #[test]
    fn syscalls() {
        let e = one(" 1.00...6.00 connect(3, ..., ...) = -1 ETIMEDOUT (Operation timed out)");
        assert_eq!(
            e.time,
            EventTime::At {
                relative: false,
                usecs: 1_000_000,
                end_usecs: Some(6_000_000)
            }
        );
        let Action::Syscall(s) = e.action else {
            panic!()
        };
        assert_eq!(s.op, SysOp::Connect { fd: 3 });
        assert_eq!(s.expect, Expect::Errno(Errno::ETIMEDOUT));

        let Action::Syscall(s) = one("+0.00 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)").action else {
            panic!()
        };
        assert_eq!((s.op, s.expect), (SysOp::GetFl { fd: 3 }, Expect::Ret(2)));
        let Action::Syscall(s) = one("+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0").action
        else {
            panic!()
        };
        assert_eq!(s.op, SysOp::SetFl { fd: 3, flags: 6 });
        let Action::Syscall(s) =
            one("+0.00 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNRESET], [4]) = 0").action
        else {
            panic!()
        };
        assert_eq!(
            s.op,
            SysOp::GetSockOpt {
                fd: 3,
                level: 0xffff,
                name: 0x1007,
                value: Some(54)
            }
        );
        let Action::Syscall(s) = one("+0.00 write (3, ..., 10) = 10").action else {
            panic!()
        };
        assert_eq!(s.op, SysOp::Write { fd: 3, len: 10 });
        let Action::Syscall(s) = one("+0.00 close(3) = 0// comment").action else {
            panic!()
        };
        assert_eq!(s.op, SysOp::Close { fd: 3 });
    }

    #[test]
    fn commands_and_code() {
        assert_eq!(
            one("0 `sysctl -w net.inet.tcp.rfc1323=1`").action,
            Action::Sysctl {
                name: "net.inet.tcp.rfc1323".into(),
                value: 1
            }
        );
        assert_eq!(
            one("+0.10 `sockstat -4 -P tcp -s | grep packetdril | grep -c TIME_WAIT | grep 1`")
                .action,
            Action::Sockstat(SockstatQuery {
                port: None,
                owned_only: true,
                state: bsd::TCPS_TIME_WAIT,
                count: 1
            })
        );
        assert_eq!(
            one("+0 `sockstat -4 -P tcp -s -p 8080 | grep -c SYN_RCVD | grep 0`").action,
            Action::Sockstat(SockstatQuery {
                port: Some(8080),
                owned_only: false,
                state: bsd::TCPS_SYN_RECEIVED,
                count: 0
            })
        );
        assert_eq!(
            one("+0 `tcpdrop -s TIME_WAIT`").action,
            Action::TcpDrop {
                state: bsd::TCPS_TIME_WAIT
            }
        );
        let Action::Asserts(a) = one("+0 %{ assert tcpi_options == 0}%").action else {
            panic!()
        };
        assert_eq!(
            (a[0].field.as_str(), a[0].op, a[0].value),
            ("tcpi_options", CmpOp::Eq, 0)
        );
        let Action::Asserts(a) = one("+0 %{ assert tcpi_state == TCPI_FIN_WAIT_2 }%").action else {
            panic!()
        };
        assert_eq!(a[0].value, 9);
    }

    #[test]
    fn preprocessor_selects_freebsd_branch() {
        let text = "0 `sysctl -w a=1`\n#ifdef STANDARD\n+0 `sysctl -w b=1`\n#endif\n#ifdef FreeBSD\n+0 `sysctl -w c=1`\n#else\n+0 `sysctl -w d=1`\n#endif\n";
        let s = parse(text).unwrap();
        let names: Vec<(u32, String)> = s
            .events
            .iter()
            .map(|e| match &e.action {
                Action::Sysctl { name, .. } => (e.line, name.clone()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(names, vec![(1, "a".into()), (6, "c".into())]);
        let s = parse_with_defines(text, &["STANDARD"]).unwrap();
        assert_eq!(s.events.len(), 3);
        assert_eq!(parse("#ifdef X\n").unwrap_err().kind, ErrorKind::Syntax);
        assert_eq!(
            parse("#include <x>\n").unwrap_err().kind,
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn errors_are_reported_not_panicking() {
        let cases: &[(&str, ErrorKind)] = &[
            ("0 > S 0:1(0)", ErrorKind::Syntax),
            ("0 > S 0:0(0) <mss>", ErrorKind::Syntax),
            ("0 < S 0:0(0) <sackOK>", ErrorKind::Syntax),
            ("0 > X 0:0(0)", ErrorKind::Syntax),
            ("0 foo(3) = 0", ErrorKind::Unsupported),
            ("0 `ls`", ErrorKind::Unsupported),
            ("0 %{ print(1) }%", ErrorKind::Unsupported),
            ("0 %{ assert tcpi_bogus == 1 }%", ErrorKind::Unsupported),
            ("0 close(3) = -1", ErrorKind::Syntax),
            ("0 close(3) = -1 EBOGUS", ErrorKind::Unsupported),
            ("* close(3) = 0", ErrorKind::Syntax),
            ("0 /* unterminated", ErrorKind::Syntax),
            ("0 > S 0:0(0) win 70000", ErrorKind::Syntax),
            ("0 > udp (10)", ErrorKind::Unsupported),
            (
                "0 bind(3, {sa_family=AF_INET}, 16) = 0",
                ErrorKind::Unsupported,
            ),
            ("+", ErrorKind::Syntax),
            ("0 > S 0:0(0) <TS val 1>", ErrorKind::Syntax),
        ];
        for (text, kind) in cases {
            match parse(text) {
                Err(e) => assert_eq!(e.kind, *kind, "{text}: {e}"),
                Ok(s) => panic!("{text} parsed: {s:?}"),
            }
        }
        // Fuzz-ish: every prefix of a realistic script either parses or errors.
        let text = "--tolerance_usecs=1000\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>\n+0 %{ assert tcpi_state == TCPI_LISTEN }%\n";
        for n in 0..text.len() {
            let _ = parse(&text[..n]);
        }
    }
}
