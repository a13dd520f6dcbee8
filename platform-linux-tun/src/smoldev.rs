//! Any `embassy-net-driver` device as a smoltcp `phy::Device` of medium IP.
//!
//! `bench path` compares smoltcp and the core on the same TUN device. Driving smoltcp through
//! the very [`crate::tun::TunDriver`] the core's daemons use — rather than smoltcp's own TUN
//! back end — gives both stacks the same system calls per packet (one `read`/`write` and the
//! driver's writability `poll`), so what differs between the two rows is the stacks.
//!
//! Wakers are not used: like the daemons, the owner polls from a poll(2) loop.

use std::task::{Context, Waker};

use embassy_net_driver::Driver;
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

/// The adapter; `driver` is the wrapped device.
pub struct DriverDevice<D> {
    pub driver: D,
}

/// A received packet (the driver's token).
pub struct Rx<T>(T);

/// Room for one packet (the driver's token).
pub struct Tx<T>(T);

impl<T: embassy_net_driver::RxToken> smoltcp::phy::RxToken for Rx<T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        self.0.consume(|buf| f(buf))
    }
}

impl<T: embassy_net_driver::TxToken> smoltcp::phy::TxToken for Tx<T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.0.consume(len, f)
    }
}

impl<D: Driver> Device for DriverDevice<D> {
    type RxToken<'a>
        = Rx<D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mut cx = Context::from_waker(Waker::noop());
        let (rx, tx) = self.driver.receive(&mut cx)?;
        Some((Rx(rx), Tx(tx)))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<Self::TxToken<'_>> {
        let mut cx = Context::from_waker(Waker::noop());
        self.driver.transmit(&mut cx).map(Tx)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.driver.capabilities().max_transmission_unit;
        // Checksums stay at smoltcp's default, computed and verified in software, as the core
        // does: a TUN device hands over and takes whole, checksummed packets.
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydranet_core::driver::loopback::LoopbackDriver;
    use smoltcp::phy::{RxToken as _, TxToken as _};

    #[test]
    fn packets_cross_both_ways_and_the_mtu_is_the_drivers() {
        let (a, b) = LoopbackDriver::pair(1400, 4);
        let (mut a, mut b) = (DriverDevice { driver: a }, DriverDevice { driver: b });
        let now = SmolInstant::ZERO;
        assert_eq!(a.capabilities().max_transmission_unit, 1400);
        assert_eq!(a.capabilities().medium, Medium::Ip);
        assert!(b.receive(now).is_none(), "nothing sent yet");
        a.transmit(now)
            .expect("room")
            .consume(3, |buf| buf.copy_from_slice(b"abc"));
        let (rx, tx) = b.receive(now).expect("a packet");
        assert_eq!(rx.consume(|p| p.to_vec()), b"abc");
        tx.consume(2, |buf| buf.copy_from_slice(b"ok"));
        let (rx, _) = a.receive(now).expect("the reply");
        assert_eq!(rx.consume(|p| p.to_vec()), b"ok");
    }
}
