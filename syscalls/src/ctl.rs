//! The control protocol of the HydraNet daemons: one definition for the clients ([`CtlClient`],
//! `v_host`/`setportopt`, `hydranet ctl`) and the daemons ([`CtlListener`]).
//!
//! # Transport
//!
//! A Unix stream socket. The host-server daemon listens at `$HYDRANET_CTL` ([`CTL_ENV`]) if that
//! is set and not empty, else at `/run/hydranet/host.sock` ([`DEFAULT_CTL_PATH`]); see
//! [`ctl_path`]. The socket file has mode 0600: whoever may talk to it may reconfigure the
//! daemon. A redirector daemon speaks the same protocol on a socket of its own.
//!
//! # Lines
//!
//! The client writes one request line, the daemon answers with exactly one response line, and
//! the client may send the next request on the same connection. Lines are UTF-8 and end with
//! `\n`; a line is at most [`MAX_LINE`] (4096) bytes including that `\n`. A `\r` just before the
//! `\n` is ignored. A request line that is too long is answered with `err EINVAL line too long`
//! and the connection is closed, since the daemon cannot tell where the next request starts.
//!
//! Limits of [`CtlListener`]: an answer longer than a line becomes `err ENOBUFS response too
//! long`; beyond 64 connections at once, a new client is answered `err ENOBUFS too many control
//! connections` and closed; a client that leaves 64 KiB of answers unread is disconnected.
//! [`CtlClient`] gives up on an answer after 5 s ([`CTL_TIMEOUT`]).
//!
//! # Requests
//!
//! Words are separated by spaces (runs of spaces and tabs are accepted; the canonical form,
//! [`Request`]'s `Display`, uses single spaces). Verbs and keywords are lower case.
//!
//! | Request line | Meaning |
//! |---|---|
//! | `v_host <vip>` | Make `<vip>` a virtual host of this host server (a process called `v_host`). The daemon cannot tell which process asks, so the requests below name the virtual host. |
//! | `setportopt <vip> <port> <mode> <rt> <rw> <hi> <ht>` | Put `<port>` of `<vip>` into `<mode>` (`normal`, `primary`, `backup`) with the detector parameters `retransmit_threshold`, `retransmit_window_ms`, `heartbeat_interval_ms`, `heartbeat_timeout_ms`. |
//! | `group <vip> <port> <group_id> <local_rank> <key> <members>` | The replica group of `(<vip>, <port>)`: its id, this replica's rank, the 32-byte ack-channel key as 64 hex digits, and the members as `<rank>@<addr>[,<rank>@<addr>...]` (their ack-channel addresses). |
//! | `redirector <addr>` | Accept IP-in-IP packets tunnelled from the redirector at `<addr>`. |
//! | `serve <vip> <port> <service>` | Run the built-in `<service>` on `(<vip>, <port>)`. |
//! | `route add <origin> <port> <host>[,<host>...]` | Redirector: tunnel `(<origin>, <port>)` to these host servers. |
//! | `route del <origin> <port>` | Redirector: forward `(<origin>, <port>)` normally again. |
//! | `replica add <origin> <port> <host>` | Redirector: add a host server to a route. |
//! | `replica del <origin> <port> <host>` | Redirector: remove a host server from a route. |
//! | `status` | The daemon's state, as `key=value` words in the payload. |
//! | `counters` | The daemon's counters, as `key=value` words in the payload. |
//! | `shutdown` | Stop the daemon (it answers `ok` first). |
//!
//! Field syntax, checked by [`Request::parse`] (anything else is `EINVAL`):
//!
//! * addresses are dotted-quad IPv4 (`192.0.2.80`, no leading zeros) and may not be the
//!   unspecified (`0.0.0.0`), the broadcast (`255.255.255.255`) or a multicast address;
//! * numbers are decimal without sign or leading zeros; ports are 1–65535, `group_id` and the
//!   detector parameters fit in 32 bits, ranks in 8;
//! * the detector parameters of a `primary` or `backup` port satisfy
//!   [`DetectorParams::validate`]; those of a `normal` port are carried but not checked;
//! * the hex key may use either case (the canonical form is lower case);
//! * member and host lists are not empty, separated by single commas, with no rank and no
//!   address twice; whether a `group` lists the local replica among its members is the
//!   daemon's convention;
//! * a service is printable ASCII without spaces (`echo`, `bulk:8388608`,
//!   `relay:127.0.0.1:6379`); its meaning is the daemon's.
//!
//! # Responses
//!
//! * `ok` — done, nothing to report;
//! * `ok <payload>` — done, with a payload (for `status` and `counters`, `key=value` words
//!   separated by spaces; see [`parse_kv`]);
//! * `err <ERRNAME> <text>` — refused; `<ERRNAME>` is one of [`Errno`]'s names (`EINVAL`) and
//!   `<text>` says why, for people. The text may be empty (`err ENOENT`).
//!
//! Payloads and texts contain no control characters. The errors daemons return by convention:
//! `EINVAL` for a malformed request, `EADDRNOTAVAIL` for a virtual host the daemon does not
//! have, `EEXIST`/`ENOENT` for an entry that already exists / does not exist, `EADDRINUSE` for a
//! port already served, `ENOSPC` for a full table, `ENOBUFS` for too many control connections,
//! and `ENOSYS` for a request this daemon does not serve (a `route` sent to a host server).
//!
//! # Example
//!
//! ```text
//! > v_host 192.0.2.80
//! < ok
//! > setportopt 192.0.2.80 80 primary 2 1000 10 30
//! < ok
//! > setportopt 192.0.2.80 80 primary 2 1000 30 10
//! < err EINVAL setportopt: heartbeat_timeout_ms must exceed heartbeat_interval_ms
//! > group 192.0.2.80 80 7 0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 0@198.51.100.1,1@198.51.100.2
//! < ok
//! > status
//! < ok vhosts=1 groups=1 connections=0
//! ```

use crate::{check_host_addr, DetectorParams, Errno, PortMode};
use core::fmt;
use core::net::Ipv4Addr;
use std::ffi::OsString;
use std::path::PathBuf;

#[cfg(unix)]
mod client;
#[cfg(unix)]
mod listener;

#[cfg(unix)]
pub use client::{CtlClient, CTL_TIMEOUT};
#[cfg(unix)]
pub use listener::CtlListener;

/// The longest line, request or response, in bytes, including its `\n`.
pub const MAX_LINE: usize = 4096;

/// The environment variable that names the host-server daemon's control socket.
pub const CTL_ENV: &str = "HYDRANET_CTL";

/// Where the host-server daemon's control socket is when [`CTL_ENV`] is unset or empty.
pub const DEFAULT_CTL_PATH: &str = "/run/hydranet/host.sock";

/// The host-server daemon's control socket: `$HYDRANET_CTL` if set and not empty, else
/// [`DEFAULT_CTL_PATH`].
pub fn ctl_path() -> PathBuf {
    ctl_path_from(std::env::var_os(CTL_ENV))
}

fn ctl_path_from(var: Option<OsString>) -> PathBuf {
    match var {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CTL_PATH),
    }
}

/// One request line (see the [module documentation](self) for the syntax).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// `v_host <vip>`: create (or reuse) the virtual host `vip`.
    VHost(Ipv4Addr),
    /// `setportopt <vip> <port> <mode> <rt> <rw> <hi> <ht>`: the mode and failure detector of
    /// one port of a virtual host.
    SetPortOpt {
        /// The virtual host.
        vip: Ipv4Addr,
        /// Its port (not 0).
        port: u16,
        /// The port's role.
        mode: PortMode,
        /// The failure detector (valid unless `mode` is `Normal`).
        params: DetectorParams,
    },
    /// `group <vip> <port> <group_id> <local_rank> <key> <members>`: the replica group of a
    /// fault-tolerant port.
    Group {
        /// The virtual host.
        vip: Ipv4Addr,
        /// Its port (not 0).
        port: u16,
        /// The group's identifier on the ack channel.
        group_id: u32,
        /// This replica's rank (0 is the primary).
        local_rank: u8,
        /// The key that authenticates the group's ack-channel messages.
        key: [u8; 32],
        /// `(rank, ack-channel address)` of the members, in the order given; no rank and no
        /// address twice, at least one.
        members: Vec<(u8, Ipv4Addr)>,
    },
    /// `redirector <addr>`: accept packets tunnelled from the redirector at this address.
    AcceptRedirector(Ipv4Addr),
    /// `serve <vip> <port> <service>`: run a built-in service on a port of a virtual host.
    Serve {
        /// The virtual host.
        vip: Ipv4Addr,
        /// Its port (not 0).
        port: u16,
        /// The service, opaque to the protocol: printable ASCII, no spaces, not empty.
        service: String,
    },
    /// `route add <origin> <port> <host>[,<host>...]` (redirector).
    RouteAdd {
        /// The origin server's address.
        origin: Ipv4Addr,
        /// The service's port (not 0).
        port: u16,
        /// The host servers to tunnel to; at least one, no address twice.
        hosts: Vec<Ipv4Addr>,
    },
    /// `route del <origin> <port>` (redirector).
    RouteDel {
        /// The origin server's address.
        origin: Ipv4Addr,
        /// The service's port (not 0).
        port: u16,
    },
    /// `replica add <origin> <port> <host>` (redirector).
    ReplicaAdd {
        /// The origin server's address.
        origin: Ipv4Addr,
        /// The service's port (not 0).
        port: u16,
        /// The host server to add.
        host: Ipv4Addr,
    },
    /// `replica del <origin> <port> <host>` (redirector).
    ReplicaDel {
        /// The origin server's address.
        origin: Ipv4Addr,
        /// The service's port (not 0).
        port: u16,
        /// The host server to remove.
        host: Ipv4Addr,
    },
    /// `status`: the daemon's state (`key=value` words).
    Status,
    /// `counters`: the daemon's counters (`key=value` words).
    Counters,
    /// `shutdown`: stop the daemon.
    Shutdown,
}

impl Request {
    /// Parses one request line (with or without its `\n`). `EINVAL` for anything malformed;
    /// never panics.
    pub fn parse(line: &str) -> Result<Request, Errno> {
        Request::parse_explained(line).map_err(|_| Errno::EINVAL)
    }

    /// [`Request::parse`], with a reason for people (the text of the `err EINVAL` answer).
    pub(crate) fn parse_explained(line: &str) -> Result<Request, String> {
        let line = strip_terminator(line)?;
        let mut words = line.split_ascii_whitespace();
        let Some(verb) = words.next() else {
            return Err("empty request".into());
        };
        let mut w = Words { words, verb: "" };
        let req = match verb {
            "v_host" => {
                w.verb = "v_host";
                Request::VHost(w.host("vip")?)
            }
            "setportopt" => {
                w.verb = "setportopt";
                let vip = w.host("vip")?;
                let port = w.port()?;
                let mode = w.next("mode")?;
                let mode = PortMode::from_name(mode).map_err(|_| {
                    format!(
                        "setportopt: bad mode '{}' (normal, primary or backup)",
                        short(mode)
                    )
                })?;
                let params = DetectorParams {
                    retransmit_threshold: w.u32("retransmit_threshold")?,
                    retransmit_window_ms: w.u32("retransmit_window_ms")?,
                    heartbeat_interval_ms: w.u32("heartbeat_interval_ms")?,
                    heartbeat_timeout_ms: w.u32("heartbeat_timeout_ms")?,
                };
                if mode != PortMode::Normal {
                    explain_params(&params)?;
                }
                Request::SetPortOpt {
                    vip,
                    port,
                    mode,
                    params,
                }
            }
            "group" => {
                w.verb = "group";
                Request::Group {
                    vip: w.host("vip")?,
                    port: w.port()?,
                    group_id: w.u32("group_id")?,
                    local_rank: w.u8("local_rank")?,
                    key: w.key()?,
                    members: w.members()?,
                }
            }
            "redirector" => {
                w.verb = "redirector";
                Request::AcceptRedirector(w.host("address")?)
            }
            "serve" => {
                w.verb = "serve";
                Request::Serve {
                    vip: w.host("vip")?,
                    port: w.port()?,
                    service: w.service()?,
                }
            }
            "route" => {
                w.verb = "route";
                match w.next("add or del")? {
                    "add" => {
                        w.verb = "route add";
                        Request::RouteAdd {
                            origin: w.host("origin")?,
                            port: w.port()?,
                            hosts: w.hosts()?,
                        }
                    }
                    "del" => {
                        w.verb = "route del";
                        Request::RouteDel {
                            origin: w.host("origin")?,
                            port: w.port()?,
                        }
                    }
                    other => {
                        return Err(format!(
                            "route: expected add or del, not '{}'",
                            short(other)
                        ))
                    }
                }
            }
            "replica" => {
                w.verb = "replica";
                let add = match w.next("add or del")? {
                    "add" => true,
                    "del" => false,
                    other => {
                        return Err(format!(
                            "replica: expected add or del, not '{}'",
                            short(other)
                        ))
                    }
                };
                w.verb = if add { "replica add" } else { "replica del" };
                let (origin, port, host) = (w.host("origin")?, w.port()?, w.host("host")?);
                if add {
                    Request::ReplicaAdd { origin, port, host }
                } else {
                    Request::ReplicaDel { origin, port, host }
                }
            }
            "status" => Request::Status,
            "counters" => Request::Counters,
            "shutdown" => Request::Shutdown,
            other => return Err(format!("unknown request '{}'", short(other))),
        };
        if w.verb.is_empty() {
            w.verb = req.verb();
        }
        w.end()?;
        Ok(req)
    }

    /// The request's verb as the protocol spells it (`route add`, `status`): for logs and
    /// per-request counters.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::VHost(_) => "v_host",
            Request::SetPortOpt { .. } => "setportopt",
            Request::Group { .. } => "group",
            Request::AcceptRedirector(_) => "redirector",
            Request::Serve { .. } => "serve",
            Request::RouteAdd { .. } => "route add",
            Request::RouteDel { .. } => "route del",
            Request::ReplicaAdd { .. } => "replica add",
            Request::ReplicaDel { .. } => "replica del",
            Request::Status => "status",
            Request::Counters => "counters",
            Request::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Request {
    /// The canonical line, without its `\n`. It parses back to `self` when `self` is valid
    /// (see the field rules); [`CtlClient::call`] refuses to send one that does not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::VHost(vip) => write!(f, "v_host {vip}"),
            Request::SetPortOpt {
                vip,
                port,
                mode,
                params: p,
            } => write!(
                f,
                "setportopt {vip} {port} {mode} {} {} {} {}",
                p.retransmit_threshold,
                p.retransmit_window_ms,
                p.heartbeat_interval_ms,
                p.heartbeat_timeout_ms
            ),
            Request::Group {
                vip,
                port,
                group_id,
                local_rank,
                key,
                members,
            } => {
                write!(f, "group {vip} {port} {group_id} {local_rank} ")?;
                for b in key {
                    write!(f, "{b:02x}")?;
                }
                for (i, (rank, addr)) in members.iter().enumerate() {
                    let sep = if i == 0 { ' ' } else { ',' };
                    write!(f, "{sep}{rank}@{addr}")?;
                }
                Ok(())
            }
            Request::AcceptRedirector(addr) => write!(f, "redirector {addr}"),
            Request::Serve { vip, port, service } => write!(f, "serve {vip} {port} {service}"),
            Request::RouteAdd {
                origin,
                port,
                hosts,
            } => {
                write!(f, "route add {origin} {port}")?;
                for (i, host) in hosts.iter().enumerate() {
                    let sep = if i == 0 { ' ' } else { ',' };
                    write!(f, "{sep}{host}")?;
                }
                Ok(())
            }
            Request::RouteDel { origin, port } => write!(f, "route del {origin} {port}"),
            Request::ReplicaAdd { origin, port, host } => {
                write!(f, "replica add {origin} {port} {host}")
            }
            Request::ReplicaDel { origin, port, host } => {
                write!(f, "replica del {origin} {port} {host}")
            }
            Request::Status => f.write_str("status"),
            Request::Counters => f.write_str("counters"),
            Request::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// One response line: `ok [<payload>]` or `err <ERRNAME> [<text>]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    /// Done; the payload is empty for a bare `ok`.
    Ok(String),
    /// Refused, with the reason for people.
    Err(Errno, String),
}

impl Response {
    /// A bare `ok`.
    pub fn ok() -> Response {
        Response::Ok(String::new())
    }

    /// `err <errno> <text>`.
    pub fn err(errno: Errno, text: impl Into<String>) -> Response {
        Response::Err(errno, text.into())
    }

    /// The payload, or the error number.
    pub fn into_result(self) -> Result<String, Errno> {
        match self {
            Response::Ok(payload) => Ok(payload),
            Response::Err(errno, _) => Err(errno),
        }
    }

    /// Parses one response line (with or without its `\n`). `EINVAL` for anything malformed,
    /// including an error name this crate does not know; never panics.
    pub fn parse(line: &str) -> Result<Response, Errno> {
        let line = strip_terminator(line).map_err(|_| Errno::EINVAL)?;
        let (status, rest) = match line.split_once(' ') {
            Some((status, rest)) => (status, Some(rest)),
            None => (line, None),
        };
        let text_ok = |t: &str| !t.chars().any(char::is_control);
        match (status, rest) {
            ("ok", None) => Ok(Response::ok()),
            ("ok", Some(payload)) if text_ok(payload) => Ok(Response::Ok(payload.into())),
            ("err", Some(rest)) => {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let errno = Errno::from_name(name).ok_or(Errno::EINVAL)?;
                if !text_ok(text) {
                    return Err(Errno::EINVAL);
                }
                Ok(Response::Err(errno, text.into()))
            }
            _ => Err(Errno::EINVAL),
        }
    }
}

impl fmt::Display for Response {
    /// The line without its `\n`. Control characters in the payload or text become spaces, so
    /// that whatever a daemon puts there (an `io::Error` message, say) stays one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, text) = match self {
            Response::Ok(payload) => (String::from("ok"), payload),
            Response::Err(errno, text) => (format!("err {errno}"), text),
        };
        f.write_str(&head)?;
        if !text.is_empty() {
            f.write_str(" ")?;
            for c in text.chars() {
                let c = if c.is_control() { ' ' } else { c };
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Splits a `key=value key=value` payload (of `status`, `counters`) into pairs, in order.
/// `EINVAL` for a word without `=` or with an empty key.
pub fn parse_kv(payload: &str) -> Result<Vec<(&str, &str)>, Errno> {
    payload
        .split_ascii_whitespace()
        .map(|word| match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k, v)),
            _ => Err(Errno::EINVAL),
        })
        .collect()
}

/// The line without its `\n` (and a `\r` before it); a longer line, or a line break inside,
/// is malformed.
fn strip_terminator(line: &str) -> Result<&str, String> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.len() >= MAX_LINE {
        return Err(format!(
            "line too long (max {MAX_LINE} bytes including the newline)"
        ));
    }
    if line.contains(['\n', '\r']) {
        return Err("line break inside a line".into());
    }
    Ok(line)
}

/// Client input quoted in an error message, cut short so that the answer stays short.
fn short(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

fn explain_params(p: &DetectorParams) -> Result<(), String> {
    if p.validate().is_ok() {
        return Ok(());
    }
    Err(
        if p.retransmit_threshold == 0
            || p.retransmit_window_ms == 0
            || p.heartbeat_interval_ms == 0
            || p.heartbeat_timeout_ms == 0
        {
            "setportopt: detector parameters must not be 0".into()
        } else {
            "setportopt: heartbeat_timeout_ms must exceed heartbeat_interval_ms".into()
        },
    )
}

/// The words of a request after its verb, with the verb (set before the first word is taken)
/// for error messages.
struct Words<'a> {
    words: core::str::SplitAsciiWhitespace<'a>,
    verb: &'static str,
}

impl<'a> Words<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str, String> {
        self.words
            .next()
            .ok_or_else(|| format!("{}: missing {what}", self.verb))
    }

    fn end(&mut self) -> Result<(), String> {
        match self.words.next() {
            None => Ok(()),
            Some(extra) => Err(format!("{}: unexpected '{}'", self.verb, short(extra))),
        }
    }

    fn bad(&self, what: &str, word: &str, rule: &str) -> String {
        format!("{}: bad {what} '{}' ({rule})", self.verb, short(word))
    }

    fn host(&mut self, what: &str) -> Result<Ipv4Addr, String> {
        let word = self.next(what)?;
        parse_host(word).ok_or_else(|| self.bad(what, word, "a unicast IPv4 address"))
    }

    fn dec(&mut self, what: &str, max: u64) -> Result<u64, String> {
        let word = self.next(what)?;
        parse_dec(word, max).ok_or_else(|| self.bad(what, word, &format!("0 to {max}")))
    }

    fn port(&mut self) -> Result<u16, String> {
        let word = self.next("port")?;
        match parse_dec(word, u16::MAX.into()) {
            Some(p) if p != 0 => Ok(p as u16),
            _ => Err(self.bad("port", word, "1 to 65535")),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(self.dec(what, u32::MAX.into())? as u32)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.dec(what, u8::MAX.into())? as u8)
    }

    fn key(&mut self) -> Result<[u8; 32], String> {
        let word = self.next("key")?;
        let bytes = word.as_bytes();
        let mut key = [0u8; 32];
        if bytes.len() != 64 {
            return Err(self.bad("key", word, "64 hex digits"));
        }
        for (k, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(hi), Some(lo)) => *k = hi << 4 | lo,
                _ => return Err(self.bad("key", word, "64 hex digits")),
            }
        }
        Ok(key)
    }

    fn members(&mut self) -> Result<Vec<(u8, Ipv4Addr)>, String> {
        let word = self.next("members")?;
        let rule = "<rank>@<address>[,<rank>@<address>...], no rank or address twice";
        let mut members: Vec<(u8, Ipv4Addr)> = Vec::new();
        for member in word.split(',') {
            let parsed = member.split_once('@').and_then(|(rank, addr)| {
                Some((parse_dec(rank, u8::MAX.into())? as u8, parse_host(addr)?))
            });
            match parsed {
                Some((rank, addr)) if !members.iter().any(|&(r, a)| r == rank || a == addr) => {
                    members.push((rank, addr))
                }
                _ => return Err(self.bad("members", word, rule)),
            }
        }
        Ok(members)
    }

    fn hosts(&mut self) -> Result<Vec<Ipv4Addr>, String> {
        let word = self.next("hosts")?;
        let mut hosts: Vec<Ipv4Addr> = Vec::new();
        for host in word.split(',') {
            match parse_host(host) {
                Some(addr) if !hosts.contains(&addr) => hosts.push(addr),
                _ => {
                    return Err(self.bad(
                        "hosts",
                        word,
                        "<address>[,<address>...], no address twice",
                    ))
                }
            }
        }
        Ok(hosts)
    }

    fn service(&mut self) -> Result<String, String> {
        let word = self.next("service")?;
        if word.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(word.to_owned())
        } else {
            Err(self.bad("service", word, "printable ASCII"))
        }
    }
}

fn parse_host(word: &str) -> Option<Ipv4Addr> {
    // std's parser already refuses leading zeros and anything but four decimal octets.
    let addr: Ipv4Addr = word.parse().ok()?;
    check_host_addr(addr).ok()?;
    Some(addr)
}

/// A decimal number no larger than `max`: digits only (no sign), no leading zero, so that each
/// value has one spelling.
fn parse_dec(word: &str, max: u64) -> Option<u64> {
    let b = word.as_bytes();
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 1 && b[0] == b'0' {
        return None;
    }
    word.parse::<u64>().ok().filter(|&v| v <= max)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn key() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    /// One example of every request, with its canonical line.
    fn examples() -> Vec<(Request, &'static str)> {
        vec![
            (Request::VHost(ip("192.0.2.80")), "v_host 192.0.2.80"),
            (
                Request::SetPortOpt {
                    vip: ip("192.0.2.80"),
                    port: 80,
                    mode: PortMode::Primary,
                    params: DetectorParams {
                        retransmit_threshold: 2,
                        retransmit_window_ms: 1000,
                        heartbeat_interval_ms: 10,
                        heartbeat_timeout_ms: 30,
                    },
                },
                "setportopt 192.0.2.80 80 primary 2 1000 10 30",
            ),
            (
                Request::Group {
                    vip: ip("192.0.2.80"),
                    port: 80,
                    group_id: 7,
                    local_rank: 1,
                    key: key(),
                    members: vec![(0, ip("198.51.100.1")), (1, ip("198.51.100.2"))],
                },
                "group 192.0.2.80 80 7 1 \
                 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
                 0@198.51.100.1,1@198.51.100.2",
            ),
            (
                Request::AcceptRedirector(ip("203.0.113.1")),
                "redirector 203.0.113.1",
            ),
            (
                Request::Serve {
                    vip: ip("192.0.2.80"),
                    port: 6379,
                    service: "relay:127.0.0.1:6379".into(),
                },
                "serve 192.0.2.80 6379 relay:127.0.0.1:6379",
            ),
            (
                Request::RouteAdd {
                    origin: ip("192.0.2.80"),
                    port: 80,
                    hosts: vec![ip("198.51.100.1"), ip("198.51.100.2")],
                },
                "route add 192.0.2.80 80 198.51.100.1,198.51.100.2",
            ),
            (
                Request::RouteDel {
                    origin: ip("192.0.2.80"),
                    port: 80,
                },
                "route del 192.0.2.80 80",
            ),
            (
                Request::ReplicaAdd {
                    origin: ip("192.0.2.80"),
                    port: 80,
                    host: ip("198.51.100.3"),
                },
                "replica add 192.0.2.80 80 198.51.100.3",
            ),
            (
                Request::ReplicaDel {
                    origin: ip("192.0.2.80"),
                    port: 80,
                    host: ip("198.51.100.3"),
                },
                "replica del 192.0.2.80 80 198.51.100.3",
            ),
            (Request::Status, "status"),
            (Request::Counters, "counters"),
            (Request::Shutdown, "shutdown"),
        ]
    }

    #[test]
    fn every_request_has_its_canonical_line() {
        for (req, line) in examples() {
            assert_eq!(req.to_string(), line);
            assert_eq!(Request::parse(line), Ok(req.clone()), "{line}");
            assert_eq!(Request::parse(&format!("{line}\n")), Ok(req.clone()));
            assert_eq!(Request::parse(&format!("{line}\r\n")), Ok(req.clone()));
            assert!(line.starts_with(req.verb()));
        }
    }

    #[test]
    fn requests_tolerate_extra_blanks() {
        assert_eq!(
            Request::parse("  v_host\t192.0.2.80   \n"),
            Ok(Request::VHost(ip("192.0.2.80")))
        );
        let upper = "group 192.0.2.80 80 7 1 \
                     000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F 0@198.51.100.1";
        assert!(matches!(Request::parse(upper), Ok(Request::Group { key: k, .. }) if k == key()));
    }

    #[test]
    fn malformed_requests_are_einval() {
        let bad = [
            "",
            "   ",
            "V_HOST 192.0.2.80",
            "v_host",
            "v_host 192.0.2.80 extra",
            "v_host 0.0.0.0",
            "v_host 255.255.255.255",
            "v_host 224.0.0.1",
            "v_host 192.0.2.080",
            "v_host 192.0.2",
            "v_host 192.0.2.80\nstatus",
            "setportopt 192.0.2.80 0 primary 2 1000 10 30",
            "setportopt 192.0.2.80 65536 primary 2 1000 10 30",
            "setportopt 192.0.2.80 +80 primary 2 1000 10 30",
            "setportopt 192.0.2.80 080 primary 2 1000 10 30",
            "setportopt 192.0.2.80 80 Primary 2 1000 10 30",
            "setportopt 192.0.2.80 80 primary 2 1000 30 10",
            "setportopt 192.0.2.80 80 backup 0 1000 0 30",
            "setportopt 192.0.2.80 80 primary 2 1000 10",
            "setportopt 192.0.2.80 80 primary 2 1000 10 4294967296",
            "setportopt 192.0.2.80 80 primary 2 1000 10 -30",
            "group 192.0.2.80 80 7 256 00 0@198.51.100.1",
            "group 192.0.2.80 80 7 1 0001 0@198.51.100.1",
            "group 192.0.2.80 80 7 1 \
             g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 0@198.51.100.1",
            "group 192.0.2.80 80 7 1 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "group 192.0.2.80 80 7 1 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 0@198.51.100.1,",
            "group 192.0.2.80 80 7 1 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 0@198.51.100.1,0@198.51.100.2",
            "group 192.0.2.80 80 7 1 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 0@198.51.100.1,1@198.51.100.1",
            "group 192.0.2.80 80 7 1 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 198.51.100.1",
            "serve 192.0.2.80 80",
            "serve 192.0.2.80 80 échо",
            "serve 192.0.2.80 80 echo extra",
            "route",
            "route list",
            "route add 192.0.2.80 80",
            "route add 192.0.2.80 80 198.51.100.1,,198.51.100.2",
            "route add 192.0.2.80 80 198.51.100.1,198.51.100.1",
            "route del 192.0.2.80",
            "replica add 192.0.2.80 80",
            "replica move 192.0.2.80 80 198.51.100.1",
            "status now",
            "shutdown -f",
        ];
        for line in bad {
            assert_eq!(Request::parse(line), Err(Errno::EINVAL), "{line:?}");
            assert!(Request::parse_explained(line).is_err());
        }
        let long = format!("serve 192.0.2.80 80 {}", "x".repeat(MAX_LINE));
        assert_eq!(Request::parse(&long), Err(Errno::EINVAL));
    }

    #[test]
    fn normal_ports_carry_but_do_not_check_params() {
        let line = "setportopt 192.0.2.80 80 normal 0 0 0 0";
        let req = Request::parse(line).unwrap();
        assert_eq!(req.to_string(), line);
    }

    #[test]
    fn reasons_name_the_field() {
        let why = |l: &str| Request::parse_explained(l).unwrap_err();
        assert_eq!(
            why("setportopt 192.0.2.80 80 primary 2 1000 30 10"),
            "setportopt: heartbeat_timeout_ms must exceed heartbeat_interval_ms"
        );
        assert_eq!(
            why("v_host 300.1.1.1"),
            "v_host: bad vip '300.1.1.1' (a unicast IPv4 address)"
        );
        assert_eq!(why("route add 192.0.2.80"), "route add: missing port");
        assert_eq!(why("status x"), "status: unexpected 'x'");
        assert_eq!(why("frobnicate"), "unknown request 'frobnicate'");
        assert!(why(&"y".repeat(100)).len() < 80);
    }

    #[test]
    fn responses() {
        let cases = [
            (Response::ok(), "ok"),
            (
                Response::Ok("vhosts=1 groups=2".into()),
                "ok vhosts=1 groups=2",
            ),
            (Response::err(Errno::ENOENT, ""), "err ENOENT"),
            (
                Response::err(Errno::EINVAL, "line too long"),
                "err EINVAL line too long",
            ),
        ];
        for (resp, line) in cases {
            assert_eq!(resp.to_string(), line);
            assert_eq!(Response::parse(line), Ok(resp.clone()));
            assert_eq!(Response::parse(&format!("{line}\n")), Ok(resp));
        }
        for bad in [
            "",
            "OK",
            "okay",
            "err",
            "err EAGAIN x",
            "err  EINVAL x",
            "err einval",
            "ok a\tb",
            "ok a\nb",
            "yes",
        ] {
            assert_eq!(Response::parse(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        // Whatever a daemon puts in the text, the answer stays one line.
        let multi = Response::err(Errno::EIO, "read failed:\nbroken pipe\r");
        assert_eq!(multi.to_string(), "err EIO read failed: broken pipe ");
        assert_eq!(Response::ok().into_result(), Ok(String::new()));
        assert_eq!(multi.into_result(), Err(Errno::EIO));
    }

    #[test]
    fn kv_payloads() {
        assert_eq!(
            parse_kv("vhosts=1 groups= name=a=b"),
            Ok(vec![("vhosts", "1"), ("groups", ""), ("name", "a=b")])
        );
        assert_eq!(parse_kv(""), Ok(vec![]));
        assert_eq!(parse_kv("x"), Err(Errno::EINVAL));
        assert_eq!(parse_kv("=1"), Err(Errno::EINVAL));
    }

    #[test]
    fn ctl_path_prefers_a_non_empty_environment() {
        assert_eq!(ctl_path_from(None), PathBuf::from(DEFAULT_CTL_PATH));
        assert_eq!(
            ctl_path_from(Some(OsString::new())),
            PathBuf::from(DEFAULT_CTL_PATH)
        );
        assert_eq!(
            ctl_path_from(Some("/tmp/h.sock".into())),
            PathBuf::from("/tmp/h.sock")
        );
    }

    fn host_addr() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>()
            .prop_map(Ipv4Addr::from)
            .prop_filter("a host address", |a| check_host_addr(*a).is_ok())
    }

    fn port() -> impl Strategy<Value = u16> {
        1..=u16::MAX
    }

    /// Valid detector parameters: both inputs on, every value within the hour the
    /// validation allows.
    fn params() -> impl Strategy<Value = DetectorParams> {
        const HOUR_MS: u32 = 3_600_000;
        (1..=u32::MAX, 1..=HOUR_MS, 1..HOUR_MS).prop_flat_map(|(t, w, i)| {
            (i + 1..=HOUR_MS).prop_map(move |o| DetectorParams {
                retransmit_threshold: t,
                retransmit_window_ms: w,
                heartbeat_interval_ms: i,
                heartbeat_timeout_ms: o,
            })
        })
    }

    fn any_params() -> impl Strategy<Value = DetectorParams> {
        any::<[u32; 4]>().prop_map(|[t, w, i, o]| DetectorParams {
            retransmit_threshold: t,
            retransmit_window_ms: w,
            heartbeat_interval_ms: i,
            heartbeat_timeout_ms: o,
        })
    }

    fn set_port_opt() -> impl Strategy<Value = Request> {
        prop_oneof![
            (host_addr(), port(), any_params()).prop_map(|(vip, port, params)| {
                Request::SetPortOpt {
                    vip,
                    port,
                    mode: PortMode::Normal,
                    params,
                }
            }),
            (
                host_addr(),
                port(),
                prop_oneof![Just(PortMode::Primary), Just(PortMode::Backup)],
                params()
            )
                .prop_map(|(vip, port, mode, params)| Request::SetPortOpt {
                    vip,
                    port,
                    mode,
                    params
                }),
        ]
    }

    fn group() -> impl Strategy<Value = Request> {
        let members = proptest::collection::btree_map(any::<u8>(), host_addr(), 1..16)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>())
            .prop_filter("distinct addresses", |m| {
                m.iter()
                    .enumerate()
                    .all(|(i, (_, a))| m[..i].iter().all(|(_, b)| a != b))
            })
            .prop_shuffle();
        (
            host_addr(),
            port(),
            any::<u32>(),
            any::<u8>(),
            any::<[u8; 32]>(),
            members,
        )
            .prop_map(
                |(vip, port, group_id, local_rank, key, members)| Request::Group {
                    vip,
                    port,
                    group_id,
                    local_rank,
                    key,
                    members,
                },
            )
    }

    fn request() -> impl Strategy<Value = Request> {
        let hosts = proptest::collection::btree_set(host_addr(), 1..16)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle();
        prop_oneof![
            host_addr().prop_map(Request::VHost),
            set_port_opt(),
            group(),
            host_addr().prop_map(Request::AcceptRedirector),
            (host_addr(), port(), "[!-~]{1,64}")
                .prop_map(|(vip, port, service)| { Request::Serve { vip, port, service } }),
            (host_addr(), port(), hosts).prop_map(|(origin, port, hosts)| Request::RouteAdd {
                origin,
                port,
                hosts
            }),
            (host_addr(), port()).prop_map(|(origin, port)| Request::RouteDel { origin, port }),
            (host_addr(), port(), host_addr())
                .prop_map(|(origin, port, host)| Request::ReplicaAdd { origin, port, host }),
            (host_addr(), port(), host_addr())
                .prop_map(|(origin, port, host)| Request::ReplicaDel { origin, port, host }),
            Just(Request::Status),
            Just(Request::Counters),
            Just(Request::Shutdown),
        ]
    }

    fn response() -> impl Strategy<Value = Response> {
        let text = "[^\\p{Cc}]{0,200}";
        prop_oneof![
            text.prop_map(Response::Ok),
            (proptest::sample::select(Errno::ALL.to_vec()), text)
                .prop_map(|(e, t)| Response::Err(e, t)),
        ]
    }

    /// Lines near valid ones: a valid line with a few bytes changed, cut or repeated.
    fn near_miss() -> impl Strategy<Value = String> {
        (request(), any::<u16>(), any::<char>(), 0..4u8).prop_map(|(req, at, c, how)| {
            let mut s = req.to_string();
            let mut i = at as usize % (s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            match how {
                0 => s.insert(i, c),
                1 => s.truncate(i),
                2 => s = format!("{} {}", &s[..i], &s[i..]),
                _ => s = format!("{}{}", &s[..i], &s[i / 2..]),
            }
            s
        })
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in request()) {
            let line = req.to_string();
            prop_assert!(line.len() < MAX_LINE);
            prop_assert_eq!(Request::parse(&line), Ok(req));
        }

        #[test]
        fn responses_round_trip(resp in response()) {
            prop_assert_eq!(Response::parse(&resp.to_string()), Ok(resp));
        }

        #[test]
        fn parsing_never_panics(line in any::<String>()) {
            let _ = Request::parse(&line);
            let _ = Response::parse(&line);
            let _ = parse_kv(&line);
        }

        #[test]
        fn near_misses_parse_canonically_or_not_at_all(line in near_miss()) {
            // Whatever parses must print as a line that parses to the same request.
            if let Ok(req) = Request::parse(&line) {
                prop_assert_eq!(Request::parse(&req.to_string()), Ok(req));
            }
            if let Ok(resp) = Response::parse(&line) {
                prop_assert_eq!(Response::parse(&resp.to_string()), Ok(resp));
            }
        }
    }
}
