//! An in-memory network of fake FreeBSD hosts running the module, a redirector (the core's
//! `Redirector`) and a client (the core's `Stack` as a plain TCP client).
//!
//! Packets the modules `ip_output` go to the client or to another host by destination;
//! the client's packets go through the redirector, which tunnels them to every replica. Every
//! packet into a module arrives through the pfil hook as an mbuf chain cut in varying places.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use hydranet_core::ft::redirector::Redirector;
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::wire::ipv4::Ipv4Header;
use hydranet_core::Instant;
use hydranet_platform_freebsd::{Caller, Storage, Verdict};

use super::{
    ctl, ip_be, load_with, params_bytes, pfil, relay_task, segments, FakeKernel, FakeModule, PID,
};

pub const ORIGIN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
pub const PORT: u16 = 80;
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const REDIR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// Where the setportopt parameters live in each fake process.
pub const PARAMS_AT: u64 = 0x6000_0000;

pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + i as u8)
}

pub struct Node {
    pub m: Option<FakeModule>,
    pub k: FakeKernel,
    pub addr: Ipv4Addr,
    pub alive: bool,
    fired_at: Option<u64>,
}

enum Dest {
    Client,
    Node(usize),
}

pub struct Net {
    pub now: u64,
    pub nodes: Vec<Node>,
    pub client: Stack<'static>,
    pub redirector: Redirector,
    queue: VecDeque<(Dest, Vec<u8>)>,
    cut: usize,
    /// Verdicts of the pfil hooks on every packet delivered.
    pub verdicts: [u64; 3],
    /// Resets the client received.
    pub rst_to_client: u64,
    pub packets: u64,
    /// Callouts the module re-armed for the instant they fired in.
    pub same_instant_rearms: u64,
}

impl Net {
    /// `n` hosts serving ORIGIN:PORT; fault-tolerant (rank i on host i, the primary on 0)
    /// or plain. Configured the way a FreeBSD host would be: `hydranet_ctl` for the
    /// redirector and the group, `v_host` and `setportopt` by the server process.
    pub fn new(n: usize, ft: bool) -> Net {
        Net::with_storage(n, ft, &mut || Box::leak(Box::default()))
    }

    /// [`Net::new`], each module over the storage `storage` gives.
    pub fn with_storage(
        n: usize,
        ft: bool,
        storage: &mut dyn FnMut() -> &'static mut Storage,
    ) -> Net {
        let mut nodes = Vec::new();
        let members: Vec<String> = (0..n).map(|i| format!("{i}@{}", host_addr(i))).collect();
        let members = members.join(",");
        for i in 0..n {
            let addr = host_addr(i);
            let (mut m, k) = load_with(addr, storage());
            k.st().privileged.insert(PID);
            k.st().map(PARAMS_AT, &params_bytes(2, 1000, 10, 30));
            assert_eq!(
                ctl(&mut m, &k, PID, &format!("redirector {REDIR}")).unwrap(),
                "ok"
            );
            let caller = Caller { pid: PID };
            m.sys_v_host(&caller, ip_be(ORIGIN)).unwrap();
            if ft {
                let line = format!("group {ORIGIN} {PORT} 7 {i} {KEY} {members}");
                assert_eq!(ctl(&mut m, &k, PID, &line).unwrap(), "ok");
                let mode = if i == 0 { 1 } else { 2 };
                m.sys_setportopt(&caller, u64::from(PORT), mode, PARAMS_AT)
                    .unwrap();
            } else {
                m.sys_setportopt(&caller, u64::from(PORT), 0, 0).unwrap();
            }
            nodes.push(Node {
                m: Some(m),
                k,
                addr,
                alive: true,
                fired_at: None,
            });
        }
        let mut redirector = Redirector::new(REDIR, 1500);
        let hosts: Vec<Ipv4Addr> = (0..n).map(host_addr).collect();
        redirector.add_route(ORIGIN, PORT, &hosts).unwrap();
        let mut client = Stack::new_alloc([9; 16]);
        client.add_address(CLIENT).unwrap();
        let mut net = Net {
            now: 1_000_000,
            nodes,
            client,
            redirector,
            queue: VecDeque::new(),
            cut: 0,
            verdicts: [0; 3],
            rst_to_client: 0,
            packets: 0,
            same_instant_rearms: 0,
        };
        net.set_now(net.now);
        net
    }

    fn set_now(&mut self, t: u64) {
        self.now = t;
        for n in &self.nodes {
            n.k.st().now_us = t;
        }
    }

    pub fn instant(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    pub fn connect(&mut self) -> SocketHandle {
        let now = self.instant();
        let h = self.client.socket().unwrap();
        let _ = self.client.connect(now, h, SocketAddrV4::new(ORIGIN, PORT));
        h
    }

    fn node_of(&self, addr: Ipv4Addr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    /// Carries everything ready now; `true` if anything moved.
    pub fn step(&mut self) -> bool {
        let now = self.instant();
        let mut progress = false;
        for i in 0..self.nodes.len() {
            let out: Vec<Vec<u8>> = self.nodes[i].k.st().out.drain(..).collect();
            if !self.nodes[i].alive {
                continue;
            }
            for p in out {
                let Ok((ip, _)) = Ipv4Header::parse(&p) else {
                    panic!("module sent a malformed packet");
                };
                if ip.dst == CLIENT {
                    self.queue.push_back((Dest::Client, p));
                } else if let Some(j) = self.node_of(ip.dst) {
                    self.queue.push_back((Dest::Node(j), p));
                }
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        let mut buf = vec![0u8; 65536];
        let mut scratch = vec![0u8; 65536];
        while let Some(n) = self.client.poll_transmit(now, &mut buf) {
            let mut copies = Vec::new();
            self.redirector.route(&buf[..n], &mut scratch, |to, bytes| {
                copies.push((to, bytes.to_vec()))
            });
            for (to, bytes) in copies {
                if let Some(j) = self.node_of(to) {
                    self.queue.push_back((Dest::Node(j), bytes));
                }
            }
        }
        while let Some((d, p)) = self.queue.pop_front() {
            progress = true;
            self.packets += 1;
            match d {
                Dest::Client => {
                    let (_, seg) = Ipv4Header::parse(&p).unwrap();
                    if seg.len() > 13 && seg[13] & 0x04 != 0 {
                        self.rst_to_client += 1;
                    }
                    self.client.handle_packet(now, &p);
                }
                Dest::Node(j) => {
                    if !self.nodes[j].alive {
                        continue;
                    }
                    self.cut += 1;
                    let c = self.cut;
                    let segs = segments(&p, &[c % 23 + 1, 24 + c % 17, 60 + c % 5]);
                    let m = self.nodes[j].m.as_mut().unwrap();
                    let v = pfil(m, &segs);
                    self.verdicts[v as usize] += 1;
                    assert_ne!(v, Verdict::Pass, "a packet for the module was passed");
                }
            }
        }
        for n in self.nodes.iter_mut().filter(|n| n.alive) {
            let m = n.m.as_mut().unwrap();
            while relay_task(m, &n.k) {
                progress = true;
            }
            // A callout fires once per instant: one re-armed for "now" waits for the next
            // tick, as a callout(9) does.
            let due = n.k.st().callout.is_some_and(|t| t <= self.now);
            if due && n.fired_at != Some(self.now) {
                n.fired_at = Some(self.now);
                n.k.st().callout = None;
                m.callout_fire();
                progress = true;
            } else if due {
                self.same_instant_rearms += 1;
            }
        }
        progress
    }

    /// Runs until `done` holds, moving time to the next deadline whenever nothing moves.
    pub fn run_until(&mut self, limit_us: u64, mut done: impl FnMut(&mut Net) -> bool) {
        let deadline = self.now + limit_us;
        loop {
            let mut rounds = 0;
            while self.step() {
                rounds += 1;
                assert!(rounds < 100_000, "no quiescence");
                if done(self) {
                    return;
                }
            }
            if done(self) {
                return;
            }
            let mut next = self.client.poll_timeout().map(|t| t.total_micros());
            for n in self.nodes.iter().filter(|n| n.alive) {
                if let Some(t) = n.k.st().callout {
                    // A callout already fired now comes back a tick (1 ms, hz=1000) later.
                    let t = if n.fired_at == Some(self.now) {
                        t.max(self.now + 1000)
                    } else {
                        t
                    };
                    next = Some(next.map_or(t, |x: u64| x.min(t)));
                }
            }
            let t = next.unwrap_or(self.now + 1000).max(self.now + 1);
            assert!(self.now < deadline, "not done within {limit_us} us");
            let t = t.min(deadline);
            self.set_now(t);
        }
    }

    /// Stops delivering to node `i`'s module and unloads it, as `kldunload -f` would: the
    /// host is gone without a goodbye. Returns the unload report.
    pub fn unload(&mut self, i: usize) -> hydranet_platform_freebsd::UnloadReport {
        let n = &mut self.nodes[i];
        n.alive = false;
        let m = n.m.take().unwrap();
        assert_eq!(m.quiesce().is_err(), m.live_connections() > 0);
        n.k.st().out.clear();
        let (_, report) = m.unload();
        report
    }
}

/// The byte pattern the echo tests send.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Echo through the group: the client sends `total` bytes of [`pattern`], shuts its side and
/// reads everything back until EOF; `each` is called on every round with the bytes so far
/// (a test kills a host from it). Returns what came back.
pub fn echo(net: &mut Net, total: usize, each: &mut dyn FnMut(&mut Net, usize)) -> Vec<u8> {
    use hydranet_core::netinet::tcp_usrreq::Shutdown;
    use hydranet_core::Errno;
    let data = pattern(total);
    let h = net.connect();
    let (mut sent, mut shut, mut eof) = (0, false, false);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    net.run_until(120_000_000, |net| {
        let now = net.instant();
        while sent < total {
            match net
                .client
                .send(now, h, &data[sent..(sent + 8192).min(total)], 0)
            {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        if sent == total && !shut {
            shut = net.client.shutdown(now, h, Shutdown::Write).is_ok();
        }
        loop {
            match net.client.recv(now, h, &mut buf, 0) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(Errno::EWOULDBLOCK) => break,
                Err(e) => panic!("client socket error {e:?} after {} bytes", got.len()),
            }
        }
        each(net, got.len());
        eof
    });
    assert_eq!(net.client.peek_error(h).unwrap(), None);
    got
}
