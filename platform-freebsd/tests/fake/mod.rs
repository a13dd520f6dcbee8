//! A fake FreeBSD kernel for the module: it records what the module asks of the kernel
//! (packets to `ip_output`, the callout, relay sockets, log lines), holds user memory for
//! `copyin`/`copyout`, a set of privileged processes, and a clock the test moves.
#![allow(dead_code)]

pub mod net;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use hydranet_core::stack::Stack;
use hydranet_core::Errno;
use hydranet_platform_freebsd::{
    Caller, Chain, KernelOps, Level, Module, Privilege, RelayEvent, Storage, Verdict,
};

/// A relay socket as the fake kernel sees it: where it connects, and an echo server behind it.
#[derive(Debug, Default)]
pub struct FakeRelay {
    pub dst: Option<SocketAddrV4>,
    pub connected: bool,
    pub closed: bool,
    /// Bytes the server received.
    pub received: Vec<u8>,
    /// Bytes the server still has to send back (an echo server).
    pub pending: VecDeque<u8>,
    /// The module shut the server's socket for writing (the client's end of stream).
    pub shut: bool,
    pub eof_sent: bool,
    pub kicks: usize,
}

#[derive(Default)]
pub struct State {
    pub now_us: u64,
    pub wall_secs: u64,
    pub out: VecDeque<Vec<u8>>,
    pub output_fails: bool,
    /// The callout's deadline (absolute microseconds), if armed.
    pub callout: Option<u64>,
    pub callout_resets: usize,
    pub callout_stops: usize,
    /// User memory: base address -> bytes.
    pub mem: BTreeMap<u64, Vec<u8>>,
    pub privileged: HashSet<i32>,
    pub checked: Vec<(i32, Privilege)>,
    pub relays: BTreeMap<usize, FakeRelay>,
    /// Relay ids opened, in order (ids are reused after close).
    pub opened: Vec<(usize, SocketAddrV4)>,
    pub refuse_relays: bool,
    pub logs: Vec<(Level, String)>,
}

impl State {
    /// Maps `bytes` at user address `base`.
    pub fn map(&mut self, base: u64, bytes: &[u8]) {
        self.mem.insert(base, bytes.to_vec());
    }
    /// `len` bytes at `addr`, if all mapped in one region.
    fn region(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let (&base, v) = self.mem.range_mut(..=addr).next_back()?;
        let off = usize::try_from(addr - base).ok()?;
        v.get_mut(off..off.checked_add(len)?)
    }
    pub fn read(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        self.region(addr, len).map(|r| r.to_vec())
    }
}

/// The fake kernel: a handle on shared state, so the test can look while the module runs.
#[derive(Clone, Default)]
pub struct FakeKernel(pub Rc<RefCell<State>>);

impl FakeKernel {
    pub fn new() -> FakeKernel {
        let k = FakeKernel::default();
        k.0.borrow_mut().wall_secs = 1_750_000_000;
        k.0.borrow_mut().now_us = 1_000_000;
        k
    }
    pub fn st(&self) -> std::cell::RefMut<'_, State> {
        self.0.borrow_mut()
    }
}

impl KernelOps for FakeKernel {
    fn now_us(&self) -> u64 {
        self.0.borrow().now_us
    }
    fn wall_secs(&self) -> u64 {
        self.0.borrow().wall_secs
    }
    fn random(&mut self, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
    }
    fn ip_output(&mut self, packet: &[u8]) -> Result<(), Errno> {
        let mut s = self.0.borrow_mut();
        if s.output_fails {
            return Err(Errno::ENOBUFS);
        }
        s.out.push_back(packet.to_vec());
        Ok(())
    }
    fn callout_reset(&mut self, delay_us: u64) {
        let mut s = self.0.borrow_mut();
        s.callout = Some(s.now_us + delay_us);
        s.callout_resets += 1;
    }
    fn callout_stop(&mut self) {
        let mut s = self.0.borrow_mut();
        s.callout = None;
        s.callout_stops += 1;
    }
    fn copyin(&self, uaddr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        let mut s = self.0.borrow_mut();
        let r = s.region(uaddr, dst.len()).ok_or(Errno::EFAULT)?;
        dst.copy_from_slice(r);
        Ok(())
    }
    fn copyout(&mut self, src: &[u8], uaddr: u64) -> Result<(), Errno> {
        let mut s = self.0.borrow_mut();
        let r = s.region(uaddr, src.len()).ok_or(Errno::EFAULT)?;
        r.copy_from_slice(src);
        Ok(())
    }
    fn priv_check(&self, caller: &Caller, what: Privilege) -> Result<(), Errno> {
        let mut s = self.0.borrow_mut();
        s.checked.push((caller.pid, what));
        if s.privileged.contains(&caller.pid) {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    }
    fn relay_open(&mut self, id: usize, dst: SocketAddrV4) -> Result<(), Errno> {
        let mut s = self.0.borrow_mut();
        if s.refuse_relays {
            return Err(Errno::ENOBUFS);
        }
        assert!(
            s.relays.get(&id).is_none_or(|r| r.closed),
            "relay {id} reopened while open"
        );
        s.relays.insert(
            id,
            FakeRelay {
                dst: Some(dst),
                ..Default::default()
            },
        );
        s.opened.push((id, dst));
        Ok(())
    }
    fn relay_kick(&mut self, id: usize) {
        if let Some(r) = self.0.borrow_mut().relays.get_mut(&id) {
            r.kicks += 1;
        }
    }
    fn relay_close(&mut self, id: usize) {
        if let Some(r) = self.0.borrow_mut().relays.get_mut(&id) {
            r.closed = true;
        }
    }
    fn log(&mut self, level: Level, args: fmt::Arguments<'_>) {
        self.0.borrow_mut().logs.push((level, args.to_string()));
    }
}

/// A loaded module on the fake kernel, with its storage leaked for the test's lifetime.
pub type FakeModule = Module<'static, FakeKernel>;

pub fn load(addr: Ipv4Addr) -> (FakeModule, FakeKernel) {
    load_with(addr, Box::leak(Box::default()))
}

/// [`load`] over the given storage (the kernel keeps it in a static; a test on a small stack
/// makes it beforehand, elsewhere).
pub fn load_with(addr: Ipv4Addr, storage: &'static mut Storage) -> (FakeModule, FakeKernel) {
    let k = FakeKernel::new();
    let mut seed_k = k.clone();
    let seed = FakeModule::seed(&mut seed_k);
    let m = Module::load(k.clone(), Stack::new_alloc(seed), addr, storage).expect("load");
    (m, k)
}

/// Splits `pkt` into mbuf-like segments at the given offsets (a short first mbuf, headers
/// across mbufs), dropping empty ones.
pub fn segments(pkt: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let c = c.min(pkt.len());
        if c > at {
            out.push(pkt[at..c].to_vec());
            at = c;
        }
    }
    if at < pkt.len() {
        out.push(pkt[at..].to_vec());
    }
    out
}

/// Delivers a chain of segments through the pfil hook.
pub fn pfil(m: &mut FakeModule, segs: &[Vec<u8>]) -> Verdict {
    let views: Vec<&[u8]> = segs.iter().map(|s| s.as_slice()).collect();
    m.pfil_in(Chain::new(&views))
}

/// Runs the shim's relay task against echo servers: connects what was opened, moves the
/// module's bytes to the servers and the servers' echo back, closes what the module shut.
/// Returns whether anything happened.
pub fn relay_task(m: &mut FakeModule, k: &FakeKernel) -> bool {
    let mut worked = false;
    let ids: Vec<usize> = k.st().relays.keys().copied().collect();
    for id in ids {
        let (connected, closed) = {
            let s = k.st();
            let r = &s.relays[&id];
            (r.connected, r.closed)
        };
        if closed {
            continue;
        }
        if !connected {
            k.st().relays.get_mut(&id).unwrap().connected = true;
            m.relay_event(id, RelayEvent::Connected);
            worked = true;
            continue;
        }
        // Module -> server.
        let mut buf = [0u8; 4096];
        let (n, eof) = m.relay_pull(id, &mut buf);
        if n > 0 {
            {
                let mut s = k.st();
                let r = s.relays.get_mut(&id).unwrap();
                r.received.extend_from_slice(&buf[..n]);
                r.pending.extend(&buf[..n]);
            }
            m.relay_consumed(id, n);
            worked = true;
        } else if eof && !k.st().relays[&id].shut {
            k.st().relays.get_mut(&id).unwrap().shut = true;
            worked = true;
        }
        if k.st().relays[&id].closed {
            continue;
        }
        // Server -> module, as much as fits.
        let room = m.relay_room(id);
        let chunk: Vec<u8> = {
            let mut s = k.st();
            let r = s.relays.get_mut(&id).unwrap();
            let n = room.min(r.pending.len()).min(8192);
            r.pending.drain(..n).collect()
        };
        if !chunk.is_empty() {
            let took = m.relay_push(id, &chunk);
            assert_eq!(took, chunk.len(), "room promised");
            worked = true;
        }
        let done = {
            let s = k.st();
            let r = &s.relays[&id];
            r.shut && r.pending.is_empty() && !r.eof_sent && !r.closed
        };
        if done {
            k.st().relays.get_mut(&id).unwrap().eof_sent = true;
            m.relay_event(id, RelayEvent::Eof);
            worked = true;
        }
    }
    worked
}

/// Syscall helpers: a privileged process with mapped user memory.
pub const PID: i32 = 100;

pub fn params_bytes(t: u32, w: u32, i: u32, o: u32) -> Vec<u8> {
    [t, w, i, o].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// `hydranet_ctl(line)` by `pid`, with user buffers at fixed addresses; the answer line.
pub fn ctl(m: &mut FakeModule, k: &FakeKernel, pid: i32, line: &str) -> Result<String, Errno> {
    const REQ: u64 = 0x7000_0000;
    const RESP: u64 = 0x7100_0000;
    k.st().map(REQ, line.as_bytes());
    k.st().map(RESP, &[0xAA; 4096]);
    let mut scratch = vec![0u8; 2 * 4096 + 1];
    let caller = Caller { pid };
    let n = m.sys_ctl(&caller, REQ, line.len() as u64, RESP, 4096, &mut scratch)?;
    let out = k.st().read(RESP, n + 1).unwrap();
    assert_eq!(out[n], 0, "NUL-terminated");
    Ok(String::from_utf8(out[..n].to_vec()).unwrap())
}

pub fn ip_be(a: Ipv4Addr) -> u64 {
    u64::from(u32::from(a).to_be())
}
