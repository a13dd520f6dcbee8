//! The in-kernel relay: each connection the core accepts on a virtual host's port is carried
//! to the unmodified server's own listening socket through a kernel socket the shim opens.
//!
//! The module never touches that socket itself (socket calls may sleep, and the module runs
//! under a mutex in pfil and callout context): it keeps the bytes for the server in a ring,
//! and the shim's task moves them with the lock dropped, through the relay entry points.

use core::net::SocketAddrV4;

use hydranet_core::netinet::tcp_seq::Seq;
use hydranet_core::stack::SocketHandle;

/// Bytes held for the server per connection: client data leaves the core's receive buffer
/// only as fast as the server takes it, so TCP's window, not this ring, absorbs bursts.
pub const RING: usize = 16 * 1024;

/// A byte ring of [`RING`] bytes.
pub struct Ring {
    buf: [u8; RING],
    head: usize,
    len: usize,
}

impl Ring {
    pub const fn new() -> Self {
        Ring {
            buf: [0; RING],
            head: 0,
            len: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn space(&self) -> usize {
        RING - self.len
    }
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
    /// The free space after the data, as one slice (the part before the wrap).
    pub fn free_slice(&mut self) -> &mut [u8] {
        let tail = (self.head + self.len) % RING;
        let end = if tail >= self.head && self.len < RING {
            RING
        } else {
            self.head
        };
        &mut self.buf[tail..end]
    }
    /// `n` bytes written into [`free_slice`](Self::free_slice) are now data.
    pub fn commit(&mut self, n: usize) {
        self.len += n;
    }
    /// Copies up to `out.len()` bytes from the front without removing them.
    pub fn peek(&self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        let first = n.min(RING - self.head);
        out[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        out[first..n].copy_from_slice(&self.buf[..n - first]);
        n
    }
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % RING;
        self.len -= n;
        if self.len == 0 {
            self.head = 0;
        }
    }
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

/// Where a relay's kernel socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayState {
    Free,
    /// `relay_open` asked; waiting for the shim's `connected` or `error`.
    Connecting,
    Open,
}

/// One connection carried to the server.
pub struct Relay {
    pub state: RelayState,
    pub handle: Option<SocketHandle>,
    /// Reads go through the group's deliveries (a fault-tolerant port).
    pub ft: bool,
    /// Fault-tolerant: readable (delivered) up to here.
    pub deliver_upto: Option<Seq>,
    /// Client bytes for the server.
    pub to_server: Ring,
    /// The client finished sending (the server gets a shutdown once the ring is empty).
    pub client_eof: bool,
    /// The server finished sending, or its socket failed.
    pub server_eof: bool,
    pub target: Option<SocketAddrV4>,
}

impl Relay {
    pub const fn new() -> Self {
        Relay {
            state: RelayState::Free,
            handle: None,
            ft: false,
            deliver_upto: None,
            to_server: Ring::new(),
            client_eof: false,
            server_eof: false,
            target: None,
        }
    }
    pub fn reset(&mut self) {
        self.state = RelayState::Free;
        self.handle = None;
        self.ft = false;
        self.deliver_upto = None;
        self.to_server.clear();
        self.client_eof = false;
        self.server_eof = false;
        self.target = None;
    }
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}
