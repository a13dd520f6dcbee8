//! Deterministic services the simulated replicas run, and the runtime that feeds them the
//! client data the group delivered, in the group's order.

use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

use crate::ft::host::Host;
use crate::netinet::tcp_usrreq::Shutdown;
use crate::stack::SocketHandle;
use crate::time::Instant;
use crate::Errno;

/// Which service a replica runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Returns every byte it receives.
    Echo,
    /// Sends `bytes` bytes of [`bulk_byte`] as soon as a client connects, then closes (a
    /// download: the client only receives).
    Bulk { bytes: usize },
    /// A line protocol: `SET key value` answers `OK`, `GET key` answers the value or `NIL`.
    KeyValue,
    /// Answers every line with `<n> <line>` where `n` counts lines across all connections:
    /// its state depends on the order deliveries arrive in across connections.
    Sequencer,
    /// Reads and discards: an upload whose client hears nothing but ACKs (as a digest or
    /// discard service on the namespace network).
    Sink,
}

/// The byte at offset `i` of a bulk download.
pub fn bulk_byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 11) as u8
}

struct Conn {
    handle: SocketHandle,
    port: u16,
    out: VecDeque<u8>,
    line: Vec<u8>,
    eof: bool,
    closed: bool,
}

/// A service instance with its connections.
pub struct Service {
    pub kind: ServiceKind,
    conns: Vec<Conn>,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    counter: u64,
    /// The client data the service read, in the order it read it, as runs of one
    /// connection's bytes (invariant 3 compares replicas' histories; how the bytes were cut
    /// into reads does not matter, their order across connections does).
    pub history: Vec<HistEntry>,
}

/// One run of a service's input history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistEntry {
    /// Bytes of the connection from client port `.0`.
    Data(u16, Vec<u8>),
    /// End of stream of the connection from client port `.0`.
    Eof(u16),
}

/// Whether one of two histories is a prefix of the other, looking only at the connections
/// both have seen (a replica that missed a handshake never has that connection).
pub fn histories_agree(a: &[HistEntry], b: &[HistEntry]) -> bool {
    let port = |e: &HistEntry| match e {
        HistEntry::Data(p, _) | HistEntry::Eof(p) => *p,
    };
    let pa: std::collections::BTreeSet<u16> = a.iter().map(port).collect();
    let pb: std::collections::BTreeSet<u16> = b.iter().map(port).collect();
    let flat = |h: &[HistEntry], other: &std::collections::BTreeSet<u16>| {
        let mut out: Vec<HistEntry> = Vec::new();
        for e in h.iter().filter(|e| other.contains(&port(e))) {
            match (out.last_mut(), e) {
                (Some(HistEntry::Data(p, v)), HistEntry::Data(q, w)) if p == q => {
                    v.extend_from_slice(w)
                }
                _ => out.push(e.clone()),
            }
        }
        out
    };
    let fa = flat(a, &pb);
    let fb = flat(b, &pa);
    let (s, l) = if fa.len() <= fb.len() {
        (fa, fb)
    } else {
        (fb, fa)
    };
    for (i, e) in s.iter().enumerate() {
        let last = i + 1 == s.len();
        match (e, &l[i]) {
            (x, y) if x == y => {}
            (HistEntry::Data(p, v), HistEntry::Data(q, w)) if last && p == q => {
                if !w.starts_with(v) && !v.starts_with(w) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

impl Service {
    pub fn new(kind: ServiceKind) -> Self {
        Service {
            kind,
            conns: Vec::new(),
            kv: BTreeMap::new(),
            counter: 0,
            history: Vec::new(),
        }
    }

    /// One scheduling round: accept, process deliveries in order, push output.
    pub fn run(&mut self, now: Instant, host: &mut Host<'_>, listener: SocketHandle) {
        while let Ok((h, peer)) = host.stack.accept(listener) {
            let mut c = Conn {
                handle: h,
                port: peer.port(),
                out: VecDeque::new(),
                line: Vec::new(),
                eof: false,
                closed: false,
            };
            if let ServiceKind::Bulk { bytes } = self.kind {
                c.out.extend((0..bytes).map(bulk_byte));
                c.eof = true;
            }
            self.conns.push(c);
        }
        let mut buf = vec![0u8; 16384];
        while let Some(d) = host.poll_delivery() {
            let Some(ci) = self.conns.iter().position(|c| c.handle == d.handle) else {
                continue;
            };
            loop {
                match host.recv_delivered(now, d.handle, d.upto, &mut buf) {
                    Ok(0) => {
                        self.conns[ci].eof = true;
                        let port = self.conns[ci].port;
                        self.history.push(HistEntry::Eof(port));
                        break;
                    }
                    Ok(n) => {
                        let chunk = buf[..n].to_vec();
                        self.process(ci, &chunk);
                    }
                    Err(_) => break,
                }
            }
        }
        for c in self.conns.iter_mut().filter(|c| !c.closed) {
            while !c.out.is_empty() {
                let (a, _) = c.out.as_slices();
                match host.stack.send(now, c.handle, a, 0) {
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(Errno::EWOULDBLOCK) => break,
                    Err(_) => {
                        c.out.clear();
                        c.closed = true;
                        break;
                    }
                }
            }
            if c.eof && c.out.is_empty() && !c.closed {
                let _ = host.stack.shutdown(now, c.handle, Shutdown::Write);
                let _ = host.stack.close(now, c.handle);
                c.closed = true;
            }
        }
        self.conns.retain(|c| !c.closed || !c.out.is_empty());
    }

    fn process(&mut self, ci: usize, chunk: &[u8]) {
        let port = self.conns[ci].port;
        match self.history.last_mut() {
            Some(HistEntry::Data(p, v)) if *p == port => v.extend_from_slice(chunk),
            _ => self.history.push(HistEntry::Data(port, chunk.to_vec())),
        }
        match self.kind {
            ServiceKind::Echo => self.conns[ci].out.extend(chunk.iter().copied()),
            ServiceKind::Bulk { .. } | ServiceKind::Sink => {}
            ServiceKind::KeyValue | ServiceKind::Sequencer => {
                for &b in chunk {
                    if b != b'\n' {
                        self.conns[ci].line.push(b);
                        continue;
                    }
                    let line = core::mem::take(&mut self.conns[ci].line);
                    let reply = self.answer(&line);
                    self.conns[ci].out.extend(reply);
                }
            }
        }
    }

    fn answer(&mut self, line: &[u8]) -> Vec<u8> {
        match self.kind {
            ServiceKind::Sequencer => {
                self.counter += 1;
                let mut r = format!("{} ", self.counter).into_bytes();
                r.extend_from_slice(line);
                r.push(b'\n');
                r
            }
            _ => {
                let mut parts = line.splitn(3, |&b| b == b' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(b"SET"), Some(k), Some(v)) => {
                        self.kv.insert(k.to_vec(), v.to_vec());
                        b"OK\n".to_vec()
                    }
                    (Some(b"GET"), Some(k), None) => match self.kv.get(k) {
                        Some(v) => {
                            let mut r = v.clone();
                            r.push(b'\n');
                            r
                        }
                        None => b"NIL\n".to_vec(),
                    },
                    _ => b"ERR\n".to_vec(),
                }
            }
        }
    }
}
