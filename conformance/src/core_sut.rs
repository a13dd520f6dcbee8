//! The system under test over the HydraNet core: a [`Stack`] in virtual time, with a table of
//! descriptors the script's syscalls name.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use hydranet_core::netinet::tcp_fsm::TcpState;
use hydranet_core::netinet::tcp_usrreq::{OptName, OptValue, Shutdown, SockOpt};
use hydranet_core::stack::{SocketHandle, Stack};
use hydranet_core::{Errno, Instant};

use crate::bsd;
use crate::sut::{
    Call, CallResult, SockStatEntry, Sut, TcpInfo, LOCAL_ADDR, LOCAL_BIND_PORT, REMOTE_ADDR,
    REMOTE_PORT,
};

struct Fd {
    handle: SocketHandle,
    nonblocking: bool,
}

/// A blocking call waiting for its condition.
enum Pending {
    Connect(i32),
    Accept(i32),
    Read(i32, usize),
}

pub struct CoreSut {
    stack: Stack<'static>,
    fds: BTreeMap<i32, Fd>,
    pending: Option<Pending>,
    buf: Vec<u8>,
}

impl Default for CoreSut {
    fn default() -> Self {
        Self::new()
    }
}

impl CoreSut {
    pub fn new() -> Self {
        let mut stack = Stack::new_alloc(*b"conformance-seed");
        stack
            .add_address(LOCAL_ADDR)
            .expect("a fresh stack has room for one address");
        CoreSut {
            stack,
            fds: BTreeMap::new(),
            pending: None,
            buf: vec![0; 65536 + 64],
        }
    }

    fn now(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    fn handle(&self, fd: i32) -> Result<SocketHandle, Errno> {
        self.fds.get(&fd).map(|f| f.handle).ok_or(Errno::EBADF)
    }

    fn new_fd(&mut self, handle: SocketHandle) -> i32 {
        // Unix hands out the lowest free descriptor; 0-2 are stdio.
        let mut fd = 3;
        while self.fds.contains_key(&fd) {
            fd += 1;
        }
        self.fds.insert(
            fd,
            Fd {
                handle,
                nonblocking: false,
            },
        );
        fd
    }

    fn blocking(&self, fd: i32) -> bool {
        self.fds.get(&fd).is_some_and(|f| !f.nonblocking)
    }

    fn res(r: Result<i64, Errno>) -> CallResult {
        match r {
            Ok(v) => CallResult::Ok(v),
            Err(e) => CallResult::Err(e),
        }
    }

    fn try_pending(&mut self, now: u64, p: &Pending) -> Option<CallResult> {
        match *p {
            Pending::Connect(fd) => {
                let h = self.handle(fd).ok()?;
                match self.stack.connect_result(h) {
                    Ok(None) => None,
                    Ok(Some(Ok(()))) => Some(CallResult::Ok(0)),
                    Ok(Some(Err(e))) => Some(CallResult::Err(e)),
                    Err(e) => Some(CallResult::Err(e)),
                }
            }
            Pending::Accept(fd) => {
                let h = self.handle(fd).ok()?;
                match self.stack.accept(h) {
                    Ok((c, _)) => Some(CallResult::Ok(self.new_fd(c) as i64)),
                    Err(Errno::EWOULDBLOCK) => None,
                    Err(e) => Some(CallResult::Err(e)),
                }
            }
            Pending::Read(fd, len) => {
                let h = self.handle(fd).ok()?;
                let mut b = vec![0u8; len];
                match self.stack.recv(Self::now(now), h, &mut b, 0) {
                    Ok(n) => Some(CallResult::Ok(n as i64)),
                    Err(Errno::EWOULDBLOCK) => None,
                    Err(e) => Some(CallResult::Err(e)),
                }
            }
        }
    }

    fn do_call(&mut self, now_us: u64, call: &Call) -> CallResult {
        let now = Self::now(now_us);
        match *call {
            Call::Socket => Self::res(self.stack.socket().map(|h| self.new_fd(h) as i64)),
            Call::Bind { fd } => Self::res(self.handle(fd).and_then(|h| {
                self.stack
                    .bind(h, SocketAddrV4::new(LOCAL_ADDR, LOCAL_BIND_PORT))
                    .map(|_| 0)
            })),
            Call::Listen { fd, backlog } => Self::res(
                self.handle(fd)
                    .and_then(|h| self.stack.listen(h, backlog).map(|_| 0)),
            ),
            Call::Accept { fd } => {
                let h = match self.handle(fd) {
                    Ok(h) => h,
                    Err(e) => return CallResult::Err(e),
                };
                match self.stack.accept(h) {
                    Ok((c, _)) => CallResult::Ok(self.new_fd(c) as i64),
                    Err(Errno::EWOULDBLOCK) if self.blocking(fd) => {
                        self.pending = Some(Pending::Accept(fd));
                        CallResult::Blocked
                    }
                    Err(e) => CallResult::Err(e),
                }
            }
            Call::Connect { fd } => {
                let h = match self.handle(fd) {
                    Ok(h) => h,
                    Err(e) => return CallResult::Err(e),
                };
                match self
                    .stack
                    .connect(now, h, SocketAddrV4::new(REMOTE_ADDR, REMOTE_PORT))
                {
                    Err(Errno::EINPROGRESS) if self.blocking(fd) => {
                        self.pending = Some(Pending::Connect(fd));
                        CallResult::Blocked
                    }
                    r => Self::res(r.map(|_| 0)),
                }
            }
            Call::Close { fd } => {
                let r = self.handle(fd).and_then(|h| self.stack.close(now, h));
                if r.is_ok() {
                    self.fds.remove(&fd);
                }
                Self::res(r.map(|_| 0))
            }
            Call::Shutdown { fd, how } => {
                let how = match how {
                    0 => Shutdown::Read,
                    1 => Shutdown::Write,
                    2 => Shutdown::Both,
                    _ => return CallResult::Err(Errno::EINVAL),
                };
                Self::res(
                    self.handle(fd)
                        .and_then(|h| self.stack.shutdown(now, h, how).map(|_| 0)),
                )
            }
            Call::Read { fd, len } => {
                let h = match self.handle(fd) {
                    Ok(h) => h,
                    Err(e) => return CallResult::Err(e),
                };
                let mut b = vec![0u8; len];
                match self.stack.recv(now, h, &mut b, 0) {
                    Ok(n) => CallResult::Ok(n as i64),
                    Err(Errno::EWOULDBLOCK) if self.blocking(fd) => {
                        self.pending = Some(Pending::Read(fd, len));
                        CallResult::Blocked
                    }
                    Err(e) => CallResult::Err(e),
                }
            }
            Call::Write { fd, len } => {
                let data = vec![0u8; len];
                Self::res(
                    self.handle(fd)
                        .and_then(|h| self.stack.send(now, h, &data, 0).map(|n| n as i64)),
                )
            }
            Call::GetFl { fd } => match self.fds.get(&fd) {
                Some(f) => CallResult::Ok(
                    (bsd::O_RDWR | if f.nonblocking { bsd::O_NONBLOCK } else { 0 }) as i64,
                ),
                None => CallResult::Err(Errno::EBADF),
            },
            Call::SetFl { fd, flags } => match self.fds.get_mut(&fd) {
                Some(f) => {
                    f.nonblocking = flags & bsd::O_NONBLOCK != 0;
                    CallResult::Ok(0)
                }
                None => CallResult::Err(Errno::EBADF),
            },
            Call::SetSockOpt {
                fd,
                level,
                name,
                value,
            } => Self::res(self.handle(fd).and_then(|h| {
                let opt = SockOpt::from_raw(level, name, value)?;
                self.stack.setsockopt(h, opt).map(|_| 0)
            })),
            Call::GetSockOpt { fd, level, name } => {
                let r = self.handle(fd).and_then(|h| {
                    let n = OptName::from_raw(level, name)?;
                    self.stack.getsockopt(h, n)
                });
                match r {
                    Ok(OptValue::Int(v)) => CallResult::Value(v),
                    Ok(OptValue::Error(e)) => CallResult::Value(e.map_or(0, |e| e.code() as i64)),
                    Ok(OptValue::Linger(l)) => CallResult::Value(l.is_some() as i64),
                    Err(e) => CallResult::Err(e),
                }
            }
        }
    }
}

impl Sut for CoreSut {
    fn sysctl(&mut self, name: &str, value: i64) -> Result<(), ()> {
        self.stack.sysctl.set(name, value).map_err(|_| ())
    }

    fn advance(&mut self, now_us: u64) {
        // Fire each timer at its own deadline, in order, so nothing happens late.
        while let Some(t) = self.stack.poll_timeout() {
            if t.total_micros() > now_us {
                break;
            }
            self.stack.handle_timeout(t);
        }
    }

    fn inject(&mut self, now_us: u64, packet: &[u8]) {
        self.stack.handle_packet(Self::now(now_us), packet);
    }

    fn poll_transmit(&mut self, now_us: u64) -> Option<Vec<u8>> {
        let n = self.stack.poll_transmit(Self::now(now_us), &mut self.buf)?;
        Some(self.buf[..n].to_vec())
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.stack.poll_timeout().map(|t| t.total_micros())
    }

    fn syscall(&mut self, now_us: u64, call: &Call) -> CallResult {
        self.do_call(now_us, call)
    }

    fn poll_blocked(&mut self, now_us: u64) -> Option<CallResult> {
        let p = self.pending.take()?;
        match self.try_pending(now_us, &p) {
            Some(r) => Some(r),
            None => {
                self.pending = Some(p);
                None
            }
        }
    }

    fn tcp_info(&mut self, fd: i32) -> Option<TcpInfo> {
        let h = self.handle(fd).ok()?;
        let i = self.stack.tcp_info(h).ok()?;
        Some(TcpInfo {
            tcpi_state: i.tcpi_state,
            tcpi_options: i.tcpi_options,
            tcpi_snd_wscale: i.tcpi_snd_wscale,
            tcpi_rcv_wscale: i.tcpi_rcv_wscale,
            tcpi_snd_mss: i.tcpi_snd_mss,
            tcpi_rcv_mss: i.tcpi_rcv_mss,
            tcpi_rto: i.tcpi_rto,
            tcpi_rtt: i.tcpi_rtt,
            tcpi_rttvar: i.tcpi_rttvar,
            tcpi_snd_ssthresh: i.tcpi_snd_ssthresh,
            tcpi_snd_cwnd: i.tcpi_snd_cwnd,
            tcpi_snd_wnd: i.tcpi_snd_wnd,
            tcpi_rcv_space: i.tcpi_rcv_space,
            tcpi_snd_nxt: i.tcpi_snd_nxt,
            tcpi_rcv_nxt: i.tcpi_rcv_nxt,
        })
    }

    fn sockstat(&mut self) -> Option<Vec<SockStatEntry>> {
        let owned: Vec<SocketHandle> = self.fds.values().map(|f| f.handle).collect();
        Some(
            self.stack
                .pcblist()
                .map(|p| SockStatEntry {
                    local_port: p.lport,
                    foreign_port: p.fport,
                    state: p.state as u8,
                    owned: p.handle.is_some_and(|h| owned.contains(&h)),
                })
                .collect(),
        )
    }

    fn tcpdrop_state(&mut self, now_us: u64, state: u8) -> Option<()> {
        let st = TcpState::from_number(state)?;
        self.stack.drop_state(Self::now(now_us), st);
        Some(())
    }

    fn set_mtu(&mut self, mtu: u32) -> Result<(), ()> {
        self.stack.set_mtu(mtu);
        Ok(())
    }
}
