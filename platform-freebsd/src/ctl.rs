//! The control requests the module takes through its third system call, `hydranet_ctl`: the
//! host-server lines of the control protocol (`hydranet_syscalls::ctl`), parsed without `std`.
//!
//! Same lines, same answers (`ok`, `ok <payload>`, `err <ERRNAME> <text>`) as the Linux host
//! daemon, so the tools and the C API need no FreeBSD dialect. The module serves `v_host`,
//! `setportopt`, `group`, `redirector`, `serve <vip> <port> relay:<ip>:<port>`, `status` and
//! `counters`; a redirector's requests and `shutdown` are answered `err ENOSYS`.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::str::FromStr;

use hydranet_core::ft::host::MAX_REPLICAS;
use hydranet_core::ft::params::{DetectorParams, PortMode};

/// The longest request or response line, `\n` included (the protocol's `MAX_LINE`).
pub const MAX_LINE: usize = 4096;

/// One host-server request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    VHost(Ipv4Addr),
    SetPortOpt {
        vip: Ipv4Addr,
        port: u16,
        mode: PortMode,
        params: DetectorParams,
    },
    Group {
        vip: Ipv4Addr,
        port: u16,
        group_id: u32,
        local_rank: u8,
        key: [u8; 32],
        members: heapless::Vec<(u8, Ipv4Addr), MAX_REPLICAS>,
    },
    AcceptRedirector(Ipv4Addr),
    /// `serve <vip> <port> relay:<ip>:<port>`: where the relay finds the unmodified server.
    ServeRelay {
        vip: Ipv4Addr,
        port: u16,
        target: SocketAddrV4,
    },
    Status,
    Counters,
}

/// Why a line was refused: the error name the protocol carries and a reason for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub errname: &'static str,
    pub why: &'static str,
}

const fn einval(why: &'static str) -> Refusal {
    Refusal {
        errname: "EINVAL",
        why,
    }
}

impl Request {
    /// Parses one line (with or without its `\n` or `\r\n`).
    pub fn parse(line: &[u8]) -> Result<Request, Refusal> {
        if line.len() > MAX_LINE {
            return Err(einval("line too long"));
        }
        let line = core::str::from_utf8(line).map_err(|_| einval("not UTF-8"))?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains(['\n', '\r', '\0']) {
            return Err(einval("one request per line"));
        }
        let mut w = line.split_ascii_whitespace();
        let verb = w.next().ok_or(einval("empty request"))?;
        let req = match verb {
            "v_host" => Request::VHost(host(w.next())?),
            "setportopt" => {
                let vip = host(w.next())?;
                let port = port(w.next())?;
                let mode = match w.next() {
                    Some("normal") => PortMode::Normal,
                    Some("primary") => PortMode::Primary,
                    Some("backup") => PortMode::Backup,
                    _ => return Err(einval("setportopt: mode is normal, primary or backup")),
                };
                let params = DetectorParams {
                    retransmit_threshold: number(w.next())?,
                    retransmit_window_ms: number(w.next())?,
                    heartbeat_interval_ms: number(w.next())?,
                    heartbeat_timeout_ms: number(w.next())?,
                };
                if mode != PortMode::Normal && params.validate().is_err() {
                    return Err(einval("setportopt: invalid detector parameters"));
                }
                Request::SetPortOpt {
                    vip,
                    port,
                    mode,
                    params,
                }
            }
            "group" => Request::Group {
                vip: host(w.next())?,
                port: port(w.next())?,
                group_id: number(w.next())?,
                local_rank: u8::try_from(number(w.next())?)
                    .map_err(|_| einval("group: rank above 255"))?,
                key: key(w.next())?,
                members: members(w.next())?,
            },
            "redirector" => Request::AcceptRedirector(host(w.next())?),
            "serve" => {
                let vip = host(w.next())?;
                let port = port(w.next())?;
                let spec = w.next().ok_or(einval("serve: missing service"))?;
                let Some(target) = spec.strip_prefix("relay:") else {
                    return Err(Refusal {
                        errname: "ENOSYS",
                        why: "the kernel module serves relay:IP:PORT only",
                    });
                };
                let (ip, p) = target
                    .rsplit_once(':')
                    .ok_or(einval("serve: relay:IP:PORT"))?;
                Request::ServeRelay {
                    vip,
                    port,
                    target: SocketAddrV4::new(
                        Ipv4Addr::from_str(ip).map_err(|_| einval("serve: relay:IP:PORT"))?,
                        self::port(Some(p))?,
                    ),
                }
            }
            "status" => Request::Status,
            "counters" => Request::Counters,
            "route" | "replica" => {
                return Err(Refusal {
                    errname: "ENOSYS",
                    why: "a host server, not a redirector",
                })
            }
            "shutdown" => {
                return Err(Refusal {
                    errname: "ENOSYS",
                    why: "unload the module with kldunload",
                })
            }
            _ => return Err(einval("unknown request")),
        };
        if w.next().is_some() {
            return Err(einval("unexpected words at the end"));
        }
        Ok(req)
    }
}

fn host(word: Option<&str>) -> Result<Ipv4Addr, Refusal> {
    let a = word
        .and_then(|w| Ipv4Addr::from_str(w).ok())
        .ok_or(einval("bad or missing address"))?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(einval("not a unicast address"));
    }
    Ok(a)
}

/// Decimal, no sign, no leading zero: what the protocol's canonical form prints.
fn number(word: Option<&str>) -> Result<u32, Refusal> {
    let w = word.ok_or(einval("missing number"))?;
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) || (w.len() > 1 && w.starts_with('0'))
    {
        return Err(einval("bad number"));
    }
    w.parse().map_err(|_| einval("number out of range"))
}

fn port(word: Option<&str>) -> Result<u16, Refusal> {
    match u16::try_from(number(word)?) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(einval("port is 1-65535")),
    }
}

fn key(word: Option<&str>) -> Result<[u8; 32], Refusal> {
    let w = word.ok_or(einval("group: missing key"))?.as_bytes();
    if w.len() != 64 {
        return Err(einval("group: the key is 64 hex digits"));
    }
    let mut k = [0u8; 32];
    for (i, pair) in w.chunks(2).enumerate() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (hex(pair[0]), hex(pair[1])) {
            (Some(h), Some(l)) => k[i] = h << 4 | l,
            _ => return Err(einval("group: the key is 64 hex digits")),
        }
    }
    Ok(k)
}

fn members(word: Option<&str>) -> Result<heapless::Vec<(u8, Ipv4Addr), MAX_REPLICAS>, Refusal> {
    let w = word.ok_or(einval("group: missing members"))?;
    let mut out: heapless::Vec<(u8, Ipv4Addr), MAX_REPLICAS> = heapless::Vec::new();
    for m in w.split(',') {
        let (rank, addr) = m
            .split_once('@')
            .ok_or(einval("group: members are rank@address"))?;
        let rank = u8::try_from(number(Some(rank))?).map_err(|_| einval("group: bad rank"))?;
        let addr = host(Some(addr))?;
        if out.iter().any(|&(r, a)| r == rank || a == addr) {
            return Err(einval("group: a rank or an address twice"));
        }
        out.push((rank, addr))
            .map_err(|_| einval("group: too many members"))?;
    }
    Ok(out)
}

/// The error names the protocol knows (the client's `Errno`); anything else the core may
/// return travels as `EIO`, which every client understands.
pub fn wire_errname(e: hydranet_core::Errno) -> &'static str {
    use hydranet_core::Errno as E;
    match e {
        E::EPERM
        | E::ENOENT
        | E::EACCES
        | E::EEXIST
        | E::EINVAL
        | E::ENOSPC
        | E::EADDRINUSE
        | E::EADDRNOTAVAIL
        | E::ENOBUFS
        | E::ETIMEDOUT
        | E::ECONNREFUSED => e.name(),
        _ => "EIO",
    }
}
