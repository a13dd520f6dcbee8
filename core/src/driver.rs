//! Binding to network devices that implement [`embassy_net_driver::Driver`].
//!
//! The core is sans-IO; [`poll_device`] is the glue that pumps packets between one device and an
//! [`IpCore`] — a plain [`Stack`] or an FT [`Host`]: every packet the device has is fed to its
//! `handle_packet`, due timers run, and its output goes to the device for as long as the
//! device offers transmit tokens.
//!
//! The device must carry raw IPv4 ([`HardwareAddress::Ip`], e.g. a `tun` interface, PPP or an
//! IP-native modem): the core has no link layer, so an Ethernet or 802.15.4 device is refused
//! with [`DriverError::UnsupportedMedium`].
//!
//! Back-pressure: the stack is asked for a packet ([`Stack::poll_transmit`]) only while a
//! transmit token is in hand, so a full device queue never makes a packet the stack produced
//! disappear. The output simply stays in the stack (in its socket buffers and reply queue) until
//! the device has room and wakes the task.
//!
//! A test device over in-memory queues, [`loopback::LoopbackDriver`], is public behind the
//! `std` feature.
//!
//! ```
//! use core::task::{Context, Waker};
//! use hydranet_core::driver::{loopback::LoopbackDriver, poll_device};
//! use hydranet_core::{stack::Stack, Instant};
//!
//! let (mut dev, _peer) = LoopbackDriver::pair(1500, 16);
//! let mut stack = Stack::new_alloc([7; 16]);
//! let mut scratch = [0u8; 1500];
//! let mut cx = Context::from_waker(Waker::noop());
//! let r = poll_device(&mut stack, &mut dev, &mut cx, Instant::ZERO, &mut scratch).unwrap();
//! assert_eq!(stack.mtu(), 1500);
//! assert!(!r.progress());
//! // A real loop now sleeps until the driver wakes the task or `r.next_deadline` passes,
//! // makes its socket calls, and polls again.
//! ```

use core::fmt;
use core::task::Context;

use embassy_net_driver::{Driver, HardwareAddress, LinkState, RxToken, TxToken};

use crate::ft::host::Host;
use crate::stack::Stack;
use crate::time::Instant;

/// What [`poll_device`] drives: anything that takes IPv4 packets in and gives packets and
/// timer deadlines out in the sans-IO shape. A plain [`Stack`] and an FT [`Host`] (its stack
/// plus the replication layer beside it) both are one, so one device binding serves a client,
/// a server and a replica alike.
pub trait IpCore {
    fn mtu(&self) -> u32;
    fn set_mtu(&mut self, mtu: u32);
    fn handle_packet(&mut self, now: Instant, packet: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize>;
}

impl IpCore for Stack<'_> {
    fn mtu(&self) -> u32 {
        Stack::mtu(self)
    }
    fn set_mtu(&mut self, mtu: u32) {
        Stack::set_mtu(self, mtu)
    }
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        Stack::handle_packet(self, now, packet)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Stack::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Stack::poll_timeout(self)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        Stack::poll_transmit(self, now, buf)
    }
}

impl IpCore for Host<'_> {
    fn mtu(&self) -> u32 {
        self.stack.mtu()
    }
    fn set_mtu(&mut self, mtu: u32) {
        self.stack.set_mtu(mtu)
    }
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        Host::handle_packet(self, now, packet)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Host::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Host::poll_timeout(self)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        Host::poll_transmit(self, now, buf)
    }
}

/// The smallest MTU IPv4 allows every link to carry (RFC 791).
pub const MIN_MTU: usize = 68;
/// The largest MTU the core works with (the IPv4 total-length field).
pub const MAX_MTU: usize = 65535;

/// The medium of a device, from its [`HardwareAddress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Medium {
    Ip,
    Ethernet,
    Ieee802154,
    /// A medium added to `embassy-net-driver` after this binding was written.
    Other,
}

impl Medium {
    pub fn of(addr: HardwareAddress) -> Medium {
        match addr {
            HardwareAddress::Ip => Medium::Ip,
            HardwareAddress::Ethernet(_) => Medium::Ethernet,
            HardwareAddress::Ieee802154(_) => Medium::Ieee802154,
            _ => Medium::Other,
        }
    }
}

/// Why a device cannot be used with the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DriverError {
    /// The device does not carry raw IP packets; the core has no link layer (ARP, NDP, ...).
    UnsupportedMedium(Medium),
    /// The device's `max_transmission_unit` is below IPv4's minimum of 68 bytes.
    MtuTooSmall { mtu: usize },
    /// The scratch buffer cannot hold one packet of the device's MTU.
    ScratchTooSmall { needed: usize, got: usize },
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::UnsupportedMedium(m) => write!(
                f,
                "device medium is {m:?}, but the stack sends and receives raw IPv4 packets only \
                 (the driver must report HardwareAddress::Ip)"
            ),
            DriverError::MtuTooSmall { mtu } => write!(
                f,
                "device MTU {mtu} is below the IPv4 minimum of {MIN_MTU} bytes"
            ),
            DriverError::ScratchTooSmall { needed, got } => write!(
                f,
                "scratch buffer of {got} bytes cannot hold a packet of the device MTU \
                 ({needed} bytes)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DriverError {}

/// What one [`poll_device`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PollResult {
    /// Packets taken from the device and fed to the stack.
    pub received: usize,
    /// Packets the stack produced and the device accepted.
    pub transmitted: usize,
    /// Timers were due and ran.
    pub timers_fired: bool,
    /// The device refused a transmit token: its queue is full. Whatever the stack still has
    /// to send stays in the stack; the device wakes the task when it has room again.
    pub tx_full: bool,
    /// The link state the device reported. While it is down nothing is transmitted (the output
    /// waits in the stack), though packets the device still delivers are received.
    pub link_up: bool,
    /// When the stack next needs [`Stack::handle_timeout`]: call [`poll_device`] again by then
    /// even if the device does not wake the task.
    pub next_deadline: Option<Instant>,
}

impl PollResult {
    /// Whether anything moved: a packet in either direction or a timer.
    pub fn progress(&self) -> bool {
        self.received > 0 || self.transmitted > 0 || self.timers_fired
    }
}

/// Checks that `dev` can carry the stack's packets and returns its MTU (capped at
/// [`MAX_MTU`]). `scratch_len` is the length of the buffer [`poll_device`] will be given.
pub fn check_device<D: Driver>(dev: &D, scratch_len: usize) -> Result<usize, DriverError> {
    let medium = Medium::of(dev.hardware_address());
    if medium != Medium::Ip {
        return Err(DriverError::UnsupportedMedium(medium));
    }
    let mtu = dev.capabilities().max_transmission_unit;
    if mtu < MIN_MTU {
        return Err(DriverError::MtuTooSmall { mtu });
    }
    let mtu = mtu.min(MAX_MTU);
    if scratch_len < mtu {
        return Err(DriverError::ScratchTooSmall {
            needed: mtu,
            got: scratch_len,
        });
    }
    Ok(mtu)
}

/// Pumps packets between `dev` and `stack` once, at time `now`:
///
/// 1. checks the device ([`check_device`]) and sets the stack's MTU to the device's;
/// 2. feeds every packet the device has to [`Stack::handle_packet`];
/// 3. runs [`Stack::handle_timeout`] if a timer is due;
/// 4. while the link is up and the device offers a transmit token, takes one packet from
///    [`Stack::poll_transmit`] (built in `scratch`, which must hold one MTU) and hands it over.
///
/// Never drops a packet for want of device room: the stack is asked for a packet only with a
/// token in hand. Call it again when the driver wakes `cx`, after socket calls that queue
/// output, and at [`PollResult::next_deadline`].
///
/// Step 2 drains the device, so a device that is fed faster than the stack processes keeps
/// the call busy; bound the device's queue if that matters.
pub fn poll_device<C: IpCore + ?Sized, D: Driver>(
    stack: &mut C,
    dev: &mut D,
    cx: &mut Context<'_>,
    now: Instant,
    scratch: &mut [u8],
) -> Result<PollResult, DriverError> {
    let mtu = check_device(dev, scratch.len())?;
    // `check_device` bounds the MTU to 68..=65535, so it fits a u32 and the stack's clamp.
    let mtu = mtu as u32;
    if stack.mtu() != mtu {
        stack.set_mtu(mtu);
    }
    let link_up = dev.link_state(cx) == LinkState::Up;
    let mut result = PollResult {
        received: 0,
        transmitted: 0,
        timers_fired: false,
        tx_full: false,
        link_up,
        next_deadline: None,
    };

    // The transmit token that comes with each receive token is not needed: replies the input
    // produces are queued in the stack and go out in the transmit loop below.
    while let Some((rx, _tx)) = dev.receive(cx) {
        rx.consume(|packet| stack.handle_packet(now, packet));
        result.received += 1;
    }

    if stack.poll_timeout().is_some_and(|t| t <= now) {
        stack.handle_timeout(now);
        result.timers_fired = true;
    }

    if link_up {
        loop {
            let Some(token) = dev.transmit(cx) else {
                result.tx_full = true;
                break;
            };
            let Some(len) = stack.poll_transmit(now, scratch) else {
                // Nothing to send: the unused token is simply dropped.
                break;
            };
            let packet = &scratch[..len];
            token.consume(len, |buf| buf.copy_from_slice(packet));
            result.transmitted += 1;
        }
    }

    result.next_deadline = stack.poll_timeout();
    Ok(result)
}

/// An in-memory test device: [`loopback::LoopbackDriver::pair`] gives two drivers joined back
/// to back, each transmitting into the other's receive queue.
#[cfg(feature = "std")]
pub mod loopback {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::task::{Context, Waker};
    use std::vec::Vec;

    use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};

    /// One direction of the link.
    struct Queue {
        packets: VecDeque<Vec<u8>>,
        /// Packets the queue holds at most; the sender gets no transmit token beyond it.
        capacity: usize,
        /// The receiving driver's task, woken when a packet arrives.
        rx_waker: Option<Waker>,
        /// The sending driver's task, woken when room is made.
        tx_waker: Option<Waker>,
    }

    impl Queue {
        fn has_room(&self) -> bool {
            self.packets.len() < self.capacity
        }
    }

    type Shared = Arc<Mutex<Queue>>;

    fn lock(q: &Shared) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while the lock was held leaves the queue usable: recover it.
        q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One end of an in-memory link, implementing [`Driver`] like a real device would: a
    /// receive token only while a packet is waiting *and* there is transmit room (the rule of
    /// `embassy-net-driver-channel`), a transmit token only while there is room, and the task
    /// woken when either changes.
    pub struct LoopbackDriver {
        tx: Shared,
        rx: Shared,
        mtu: usize,
        hardware_address: HardwareAddress,
        link: LinkState,
        transmitted: u64,
        received: u64,
    }

    /// A receive token: owns the packet taken off the queue.
    pub struct LoopbackRx {
        packet: Vec<u8>,
    }

    /// A transmit token: room for one packet was checked when it was handed out.
    pub struct LoopbackTx<'a> {
        queue: &'a Shared,
        transmitted: &'a mut u64,
    }

    impl embassy_net_driver::RxToken for LoopbackRx {
        fn consume<R, F>(mut self, f: F) -> R
        where
            F: FnOnce(&mut [u8]) -> R,
        {
            f(&mut self.packet)
        }
    }

    impl embassy_net_driver::TxToken for LoopbackTx<'_> {
        fn consume<R, F>(self, len: usize, f: F) -> R
        where
            F: FnOnce(&mut [u8]) -> R,
        {
            let mut packet = std::vec![0u8; len];
            let r = f(&mut packet);
            let mut q = lock(self.queue);
            q.packets.push_back(packet);
            if let Some(w) = q.rx_waker.take() {
                w.wake();
            }
            *self.transmitted += 1;
            r
        }
    }

    impl LoopbackDriver {
        /// Two IP-medium drivers of MTU `mtu` joined back to back, each direction holding at
        /// most `capacity` packets.
        pub fn pair(mtu: usize, capacity: usize) -> (LoopbackDriver, LoopbackDriver) {
            let new_queue = || {
                Arc::new(Mutex::new(Queue {
                    packets: VecDeque::new(),
                    capacity,
                    rx_waker: None,
                    tx_waker: None,
                }))
            };
            let (ab, ba) = (new_queue(), new_queue());
            let end = |tx: &Shared, rx: &Shared| LoopbackDriver {
                tx: tx.clone(),
                rx: rx.clone(),
                mtu,
                hardware_address: HardwareAddress::Ip,
                link: LinkState::Up,
                transmitted: 0,
                received: 0,
            };
            (end(&ab, &ba), end(&ba, &ab))
        }

        /// Pretends to be another kind of device (e.g. Ethernet, to see it refused).
        pub fn set_hardware_address(&mut self, addr: HardwareAddress) {
            self.hardware_address = addr;
        }

        pub fn set_link_state(&mut self, link: LinkState) {
            self.link = link;
        }

        /// Changes how many packets the direction this driver transmits into may hold, waking
        /// the transmitting task when that makes room.
        pub fn set_tx_capacity(&mut self, capacity: usize) {
            let mut q = lock(&self.tx);
            q.capacity = capacity;
            if q.has_room() {
                if let Some(w) = q.tx_waker.take() {
                    w.wake();
                }
            }
        }

        /// Packets waiting in the direction this driver transmits into.
        pub fn tx_queued(&self) -> usize {
            lock(&self.tx).packets.len()
        }

        /// Packets waiting for this driver to receive.
        pub fn rx_queued(&self) -> usize {
            lock(&self.rx).packets.len()
        }

        /// Takes the oldest packet this driver transmitted that the peer has not received,
        /// as a wire tap or lossy link would.
        pub fn take_tx(&mut self) -> Option<Vec<u8>> {
            let mut q = lock(&self.tx);
            let p = q.packets.pop_front();
            if p.is_some() {
                if let Some(w) = q.tx_waker.take() {
                    w.wake();
                }
            }
            p
        }

        /// Puts a packet in this driver's receive queue, ignoring its capacity.
        pub fn inject_rx(&mut self, packet: &[u8]) {
            let mut q = lock(&self.rx);
            q.packets.push_back(packet.to_vec());
            if let Some(w) = q.rx_waker.take() {
                w.wake();
            }
        }

        /// Packets transmitted (tokens consumed) so far.
        pub fn transmitted(&self) -> u64 {
            self.transmitted
        }

        /// Packets received (tokens handed out) so far.
        pub fn received(&self) -> u64 {
            self.received
        }
    }

    impl Driver for LoopbackDriver {
        type RxToken<'a>
            = LoopbackRx
        where
            Self: 'a;
        type TxToken<'a>
            = LoopbackTx<'a>
        where
            Self: 'a;

        fn receive(&mut self, cx: &mut Context<'_>) -> Option<(LoopbackRx, LoopbackTx<'_>)> {
            // Each driver is the only sender into its tx queue and the only receiver from its
            // rx queue, so room and waiting packets seen here stay until the tokens are used.
            // The two locks are never held together (the peer takes them in the other order).
            {
                let mut tx = lock(&self.tx);
                if !tx.has_room() {
                    tx.tx_waker = Some(cx.waker().clone());
                    return None;
                }
            }
            let packet = {
                let mut rx = lock(&self.rx);
                let Some(packet) = rx.packets.pop_front() else {
                    rx.rx_waker = Some(cx.waker().clone());
                    return None;
                };
                if let Some(w) = rx.tx_waker.take() {
                    w.wake();
                }
                packet
            };
            self.received += 1;
            Some((
                LoopbackRx { packet },
                LoopbackTx {
                    queue: &self.tx,
                    transmitted: &mut self.transmitted,
                },
            ))
        }

        fn transmit(&mut self, cx: &mut Context<'_>) -> Option<LoopbackTx<'_>> {
            let mut tx = lock(&self.tx);
            if !tx.has_room() {
                tx.tx_waker = Some(cx.waker().clone());
                return None;
            }
            drop(tx);
            Some(LoopbackTx {
                queue: &self.tx,
                transmitted: &mut self.transmitted,
            })
        }

        fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
            self.link
        }

        fn capabilities(&self) -> Capabilities {
            let mut caps = Capabilities::default();
            caps.max_transmission_unit = self.mtu;
            caps
        }

        fn hardware_address(&self) -> HardwareAddress {
            self.hardware_address
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    extern crate std;

    use core::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::vec;
    use std::vec::Vec;

    use embassy_net_driver::{HardwareAddress, LinkState};

    use super::loopback::LoopbackDriver;
    use super::*;
    use crate::netinet::tcp_usrreq::Shutdown;
    use crate::stack::SocketHandle;
    use crate::time::Duration;
    use crate::Errno;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn pattern(i: usize) -> u8 {
        (i.wrapping_mul(2_654_435_761) >> 9) as u8
    }

    /// Two stacks, each behind its own end of a loopback pair, in virtual time.
    struct Net {
        a: Stack<'static>,
        b: Stack<'static>,
        da: LoopbackDriver,
        db: LoopbackDriver,
        now: Instant,
        scratch_a: Vec<u8>,
        scratch_b: Vec<u8>,
        waker: Waker,
    }

    impl Net {
        fn new(mtu: usize, capacity: usize) -> Net {
            let mut a = Stack::new_alloc([1; 16]);
            let mut b = Stack::new_alloc([2; 16]);
            a.add_address(A).unwrap();
            b.add_address(B).unwrap();
            let (da, db) = LoopbackDriver::pair(mtu, capacity);
            Net {
                a,
                b,
                da,
                db,
                now: Instant::ZERO,
                scratch_a: vec![0; mtu],
                scratch_b: vec![0; mtu],
                waker: Waker::noop().clone(),
            }
        }

        /// Polls both sides once; true if anything moved.
        fn poll(&mut self) -> bool {
            let mut cx = Context::from_waker(&self.waker);
            let ra = poll_device(
                &mut self.a,
                &mut self.da,
                &mut cx,
                self.now,
                &mut self.scratch_a,
            )
            .unwrap();
            let rb = poll_device(
                &mut self.b,
                &mut self.db,
                &mut cx,
                self.now,
                &mut self.scratch_b,
            )
            .unwrap();
            ra.progress() || rb.progress()
        }

        /// Polls until quiet; if nothing moved at all, jumps to the next timer.
        fn step(&mut self) {
            let mut moved = false;
            for _ in 0..10_000 {
                if !self.poll() {
                    break;
                }
                moved = true;
            }
            if !moved {
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                self.now = match next {
                    Some(t) if t > self.now => t,
                    _ => self.now + Duration::from_millis(1),
                };
            }
        }

        /// Connects A to a listener on B and returns (client, server) handles.
        fn connect(&mut self) -> (SocketHandle, SocketHandle) {
            let l = self.b.socket().unwrap();
            self.b.bind(l, SocketAddrV4::new(B, 80)).unwrap();
            self.b.listen(l, 4).unwrap();
            let c = self.a.socket().unwrap();
            assert_eq!(
                self.a.connect(self.now, c, SocketAddrV4::new(B, 80)),
                Err(Errno::EINPROGRESS)
            );
            for _ in 0..1000 {
                self.step();
                if let Ok((s, peer)) = self.b.accept(l) {
                    assert_eq!(*peer.ip(), A);
                    assert!(self.a.state(c).unwrap().have_established());
                    return (c, s);
                }
            }
            panic!("handshake did not complete");
        }

        /// Sends `size` bytes from A to B and `size / 2` back, checking every byte.
        fn exchange(&mut self, c: SocketHandle, s: SocketHandle, size: usize) {
            let back = size / 2;
            let (mut sent_ab, mut got_ab) = (0, Vec::new());
            let (mut sent_ba, mut got_ba) = (0, Vec::new());
            let mut buf = vec![0u8; 4096];
            for _ in 0..1_000_000 {
                if got_ab.len() == size && got_ba.len() == back {
                    break;
                }
                while sent_ab < size {
                    let data: Vec<u8> = (sent_ab..size.min(sent_ab + 3000)).map(pattern).collect();
                    match self.a.send(self.now, c, &data, 0) {
                        Ok(n) => sent_ab += n,
                        Err(Errno::EWOULDBLOCK) => break,
                        Err(e) => panic!("send a: {e}"),
                    }
                }
                while sent_ba < back {
                    let data: Vec<u8> = (sent_ba..back.min(sent_ba + 3000))
                        .map(|i| !pattern(i))
                        .collect();
                    match self.b.send(self.now, s, &data, 0) {
                        Ok(n) => sent_ba += n,
                        Err(Errno::EWOULDBLOCK) => break,
                        Err(e) => panic!("send b: {e}"),
                    }
                }
                while let Ok(n) = self.b.recv(self.now, s, &mut buf, 0) {
                    assert!(n > 0, "early end of stream");
                    got_ab.extend_from_slice(&buf[..n]);
                }
                while let Ok(n) = self.a.recv(self.now, c, &mut buf, 0) {
                    assert!(n > 0, "early end of stream");
                    got_ba.extend_from_slice(&buf[..n]);
                }
                self.step();
            }
            assert_eq!(got_ab.len(), size, "A to B incomplete");
            assert_eq!(got_ba.len(), back, "B to A incomplete");
            assert!(got_ab.iter().enumerate().all(|(i, &x)| x == pattern(i)));
            assert!(got_ba.iter().enumerate().all(|(i, &x)| x == !pattern(i)));
        }

        /// Every packet a stack produced went through the driver and reached the other stack.
        fn assert_nothing_lost(&self) {
            assert_eq!(self.da.tx_queued() + self.db.tx_queued(), 0);
            assert_eq!(self.a.tcpstat.sndtotal, self.da.transmitted());
            assert_eq!(self.b.tcpstat.sndtotal, self.db.transmitted());
            assert_eq!(self.da.transmitted(), self.db.received());
            assert_eq!(self.db.transmitted(), self.da.received());
            assert_eq!(self.b.ipstat.total, self.db.received());
            assert_eq!(self.a.ipstat.total, self.da.received());
            // A lossless link: nothing was ever retransmitted.
            assert_eq!(self.a.tcpstat.sndrexmitpack, 0);
            assert_eq!(self.b.tcpstat.sndrexmitpack, 0);
        }
    }

    #[test]
    fn handshake_and_data_through_two_drivers() {
        let mut net = Net::new(1280, 64);
        let (c, s) = net.connect();
        // The device MTU reached the stacks and the MSS they negotiated.
        assert_eq!(net.a.mtu(), 1280);
        assert_eq!(net.b.mtu(), 1280);
        assert!(net.a.tcp_info(c).unwrap().tcpi_snd_mss <= 1240);
        net.exchange(c, s, 300_000);
        // Orderly close both ways.
        net.a.shutdown(net.now, c, Shutdown::Write).unwrap();
        net.b.shutdown(net.now, s, Shutdown::Write).unwrap();
        let mut buf = [0u8; 16];
        let (mut eof_a, mut eof_b) = (false, false);
        for _ in 0..1000 {
            net.step();
            eof_a |= net.a.recv(net.now, c, &mut buf, 0) == Ok(0);
            eof_b |= net.b.recv(net.now, s, &mut buf, 0) == Ok(0);
            if eof_a && eof_b {
                break;
            }
        }
        assert!(eof_a && eof_b, "FINs did not get through");
        net.assert_nothing_lost();
    }

    #[test]
    fn full_tx_queue_holds_packets_in_the_stack() {
        let mut net = Net::new(1500, 0);
        let (counter, waker) = counting_waker();
        let l = net.b.socket().unwrap();
        net.b.bind(l, SocketAddrV4::new(B, 80)).unwrap();
        net.b.listen(l, 4).unwrap();
        let c = net.a.socket().unwrap();
        assert_eq!(
            net.a.connect(net.now, c, SocketAddrV4::new(B, 80)),
            Err(Errno::EINPROGRESS)
        );

        // No room at all: nothing leaves the stack, the SYN is not lost, the task will be woken.
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            let r = poll_device(
                &mut net.a,
                &mut net.da,
                &mut cx,
                net.now,
                &mut net.scratch_a,
            )
            .unwrap();
            assert_eq!(r.transmitted, 0);
            assert!(r.tx_full);
            assert!(!r.progress());
        }
        assert_eq!(net.a.tcpstat.sndtotal, 0);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);

        // Room for one packet: the driver wakes the task, and exactly the SYN goes out.
        net.da.set_tx_capacity(1);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        let r = poll_device(
            &mut net.a,
            &mut net.da,
            &mut cx,
            net.now,
            &mut net.scratch_a,
        )
        .unwrap();
        assert_eq!(r.transmitted, 1);
        assert_eq!(net.a.tcpstat.sndtotal, 1);
        assert_eq!(net.da.tx_queued(), 1);

        // Queues of one packet each way for the whole connection: slow, but nothing is lost
        // and nothing needs retransmitting.
        net.db.set_tx_capacity(1);
        for _ in 0..1000 {
            net.step();
            if let Ok((s, _)) = net.b.accept(l) {
                net.exchange(c, s, 200_000);
                net.assert_nothing_lost();
                return;
            }
        }
        panic!("handshake did not complete");
    }

    #[test]
    fn receive_stalls_while_tx_is_full_and_nothing_is_lost() {
        // A driver that follows the channel-driver rule hands out no receive token while its
        // transmit queue is full. The stack must cope: packets wait in the device, output waits
        // in the stack, and everything arrives once there is room.
        let mut net = Net::new(1500, 4);
        let (c, s) = net.connect();
        let ab: Vec<u8> = (0..60_000).map(pattern).collect();
        let ba: Vec<u8> = (0..20_000).map(|i| !pattern(i)).collect();
        let mut sent_ab = net.a.send(net.now, c, &ab, 0).unwrap();
        let mut sent_ba = net.b.send(net.now, s, &ba, 0).unwrap();

        net.da.set_tx_capacity(0);
        let mut cx = Context::from_waker(Waker::noop());
        let rb = poll_device(
            &mut net.b,
            &mut net.db,
            &mut cx,
            net.now,
            &mut net.scratch_b,
        )
        .unwrap();
        assert_eq!(rb.transmitted, 4);
        assert!(rb.tx_full);
        let before = net.a.tcpstat.sndtotal;
        let ra = poll_device(
            &mut net.a,
            &mut net.da,
            &mut cx,
            net.now,
            &mut net.scratch_a,
        )
        .unwrap();
        assert_eq!((ra.received, ra.transmitted), (0, 0));
        assert!(ra.tx_full);
        assert_eq!(net.da.rx_queued(), 4);
        assert_eq!(net.a.tcpstat.sndtotal, before);

        net.da.set_tx_capacity(4);
        let (mut got_ab, mut got_ba) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 8192];
        for _ in 0..100_000 {
            if got_ab.len() == ab.len() && got_ba.len() == ba.len() {
                break;
            }
            if sent_ab < ab.len() {
                sent_ab += net.a.send(net.now, c, &ab[sent_ab..], 0).unwrap_or(0);
            }
            if sent_ba < ba.len() {
                sent_ba += net.b.send(net.now, s, &ba[sent_ba..], 0).unwrap_or(0);
            }
            while let Ok(n) = net.b.recv(net.now, s, &mut buf, 0) {
                got_ab.extend_from_slice(&buf[..n]);
            }
            while let Ok(n) = net.a.recv(net.now, c, &mut buf, 0) {
                got_ba.extend_from_slice(&buf[..n]);
            }
            net.step();
        }
        assert_eq!(got_ab, ab);
        assert_eq!(got_ba, ba);
        net.assert_nothing_lost();
    }

    #[test]
    fn ethernet_device_is_refused() {
        let mut stack = Stack::new_alloc([3; 16]);
        stack.add_address(A).unwrap();
        let (mut dev, _peer) = LoopbackDriver::pair(1500, 8);
        dev.set_hardware_address(HardwareAddress::Ethernet([2, 0, 0, 0, 0, 1]));
        dev.inject_rx(&[0x45; 40]);
        let mut scratch = [0u8; 1500];
        let mut cx = Context::from_waker(Waker::noop());
        let err =
            poll_device(&mut stack, &mut dev, &mut cx, Instant::ZERO, &mut scratch).unwrap_err();
        assert_eq!(err, DriverError::UnsupportedMedium(Medium::Ethernet));
        let msg = std::format!("{err}");
        assert!(
            msg.contains("Ethernet") && msg.contains("HardwareAddress::Ip"),
            "{msg}"
        );
        // The device was left alone.
        assert_eq!(dev.rx_queued(), 1);
        assert_eq!(stack.ipstat.total, 0);
        assert_eq!(check_device(&dev, 1500), Err(err));

        dev.set_hardware_address(HardwareAddress::Ieee802154([0; 8]));
        assert_eq!(
            check_device(&dev, 1500),
            Err(DriverError::UnsupportedMedium(Medium::Ieee802154))
        );
        dev.set_hardware_address(HardwareAddress::Ip);
        assert_eq!(check_device(&dev, 1500), Ok(1500));
    }

    #[test]
    fn mtu_and_scratch_are_checked() {
        let (dev, _peer) = LoopbackDriver::pair(1500, 8);
        assert_eq!(
            check_device(&dev, 1400),
            Err(DriverError::ScratchTooSmall {
                needed: 1500,
                got: 1400
            })
        );
        let (tiny, _peer) = LoopbackDriver::pair(40, 8);
        assert_eq!(
            check_device(&tiny, 1500),
            Err(DriverError::MtuTooSmall { mtu: 40 })
        );
        let (huge, _peer) = LoopbackDriver::pair(100_000, 8);
        assert_eq!(check_device(&huge, 65535), Ok(65535));

        let mut stack = Stack::new_alloc([4; 16]);
        let (mut dev, _peer) = LoopbackDriver::pair(9000, 8);
        let mut scratch = vec![0u8; 9000];
        let mut cx = Context::from_waker(Waker::noop());
        let r = poll_device(&mut stack, &mut dev, &mut cx, Instant::ZERO, &mut scratch).unwrap();
        assert_eq!(stack.mtu(), 9000);
        assert!(!r.progress());
        assert_eq!(r.next_deadline, None);
    }

    #[test]
    fn link_down_defers_transmission() {
        let mut net = Net::new(1500, 8);
        let _l = {
            let l = net.b.socket().unwrap();
            net.b.bind(l, SocketAddrV4::new(B, 80)).unwrap();
            net.b.listen(l, 4).unwrap();
            l
        };
        let c = net.a.socket().unwrap();
        let _ = net.a.connect(net.now, c, SocketAddrV4::new(B, 80));
        net.da.set_link_state(LinkState::Down);
        let mut cx = Context::from_waker(Waker::noop());
        let r = poll_device(
            &mut net.a,
            &mut net.da,
            &mut cx,
            net.now,
            &mut net.scratch_a,
        )
        .unwrap();
        assert!(!r.link_up);
        assert_eq!(r.transmitted, 0);
        // The connection timer is armed and reported.
        assert!(r.next_deadline.is_some());
        net.da.set_link_state(LinkState::Up);
        let r = poll_device(
            &mut net.a,
            &mut net.da,
            &mut cx,
            net.now,
            &mut net.scratch_a,
        )
        .unwrap();
        assert!(r.link_up);
        assert_eq!(r.transmitted, 1);
    }
}
