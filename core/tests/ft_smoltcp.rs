//! The FT layer against a second, independent TCP: smoltcp as the client of the simulated
//! replica group. Our own client shares the core's idea of TCP; smoltcp does not, so a
//! takeover that only works because both ends run the same code shows up here.
#![cfg(feature = "sim")]

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use hydranet_core::ft::params::DetectorParams;
use hydranet_core::sim::service::bulk_byte;
use hydranet_core::sim::{ServiceKind, Sim, SimConfig, CLIENT, ORIGIN, SERVICE_PORT};
use hydranet_core::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// smoltcp's side of the simulated link: packets the simulator delivered to the client, and
/// packets smoltcp sent, for the simulator to carry.
#[derive(Default)]
struct Link {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

fn v4(a: Ipv4Addr) -> Ipv4Address {
    let o = a.octets();
    Ipv4Address::new(o[0], o[1], o[2], o[3])
}

fn smol(t: Instant) -> SmolInstant {
    SmolInstant::from_micros(t.total_micros() as i64)
}

/// The simulator with smoltcp as its client, one TCP socket connected to the service.
struct Client {
    sim: Sim,
    link: Link,
    iface: Interface,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
}

impl Client {
    fn new(cfg: SimConfig) -> Client {
        let mut sim = Sim::new(cfg);
        sim.external_client = true;
        let mut link = Link::default();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut link, smol(sim.now));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(v4(CLIENT)), 24))
                .unwrap();
        });
        // The origin is off-link: everything goes to a gateway, which is the simulator.
        iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(203, 0, 113, 1))
            .unwrap();
        let mut sockets = SocketSet::new(Vec::new());
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        );
        s.connect(
            iface.context(),
            (IpAddress::Ipv4(v4(ORIGIN)), SERVICE_PORT),
            49_500,
        )
        .unwrap();
        let tcp = sockets.add(s);
        Client {
            sim,
            link,
            iface,
            sockets,
            tcp,
        }
    }

    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.tcp)
    }

    /// One round: smoltcp takes what arrived and sends what it has, the simulator moves to
    /// its next event. False when nothing is left to happen.
    fn step(&mut self) -> bool {
        self.link.rx.extend(self.sim.client_inbox.drain(..));
        let now = smol(self.sim.now);
        self.iface.poll(now, &mut self.link, &mut self.sockets);
        for p in self.link.tx.drain(..) {
            self.sim.inject_from_client(p);
        }
        self.sim.client_wakeup = self
            .iface
            .poll_at(now, &self.sockets)
            .map(|t| Instant::from_micros(t.total_micros().max(0) as u64 + 1));
        self.sim.step()
    }
}

/// A download to a smoltcp client with the primary crashed at each of `kills` (fractions of
/// the download), byte-exact, no reset, no invariant violated.
fn download(size: usize, kills: &[f64]) -> Duration {
    let mut c = Client::new(SimConfig {
        replicas: 3,
        seed: 11,
        service: ServiceKind::Bulk { bytes: size },
        detector: DetectorParams::default(),
        ..SimConfig::default()
    });
    let mut got: Vec<u8> = Vec::new();
    let planned = kills.len();
    let mut kills: VecDeque<f64> = kills.iter().copied().collect();
    let mut last = c.sim.now;
    let mut longest = Duration::ZERO;
    while got.len() < size {
        assert!(
            c.sim.now < Instant::from_millis(60_000),
            "stuck at {} of {size} bytes; violations {:?}",
            got.len(),
            c.sim.violations
        );
        if kills
            .front()
            .is_some_and(|f| got.len() as f64 >= f * size as f64)
        {
            kills.pop_front();
            let p = c.sim.primary().expect("a primary");
            c.sim.crash(p);
        }
        let now = c.sim.now;
        let s = c.socket();
        assert!(
            s.state() != tcp::State::Closed || got.len() == size,
            "smoltcp's connection closed (reset?) after {} bytes",
            got.len()
        );
        let before = got.len();
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        if got.len() > before {
            longest = longest.max(now - last);
            last = now;
        }
        if !c.step() {
            break;
        }
    }
    assert_eq!(got.len(), size);
    assert!(kills.is_empty(), "every planned crash happened");
    let crashed = c.sim.hosts.iter().filter(|h| !h.alive).count();
    assert_eq!(crashed, planned);
    if planned > 0 {
        assert_eq!(
            c.sim.primary(),
            Some(planned),
            "the next replica by rank serves"
        );
    }
    println!(
        "smoltcp download of {size} bytes, {planned} crashes: longest stall {} ms",
        longest.total_millis()
    );
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == bulk_byte(i)),
        "the stream differs from the service's output"
    );
    assert_eq!(c.sim.client_resets, 0, "smoltcp saw a reset");
    assert!(c.sim.violations.is_empty(), "{:?}", c.sim.violations);
    longest
}

#[test]
fn smoltcp_client_downloads_through_a_group_without_faults() {
    download(300_000, &[]);
}

#[test]
fn smoltcp_client_download_survives_two_primary_crashes() {
    let stall = download(600_000, &[0.3, 0.6]);
    assert!(
        stall < Duration::from_millis(2000),
        "stall {} ms",
        stall.total_millis()
    );
}

#[test]
fn smoltcp_client_echo_survives_a_primary_crash() {
    let mut c = Client::new(SimConfig {
        replicas: 3,
        seed: 5,
        service: ServiceKind::Echo,
        ..SimConfig::default()
    });
    let size = 200_000usize;
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::new());
    let mut crashed = false;
    while got.len() < size {
        assert!(
            c.sim.now < Instant::from_millis(60_000),
            "stuck: sent {sent}, echoed {}; violations {:?}",
            got.len(),
            c.sim.violations
        );
        if !crashed && got.len() >= size / 2 {
            crashed = true;
            let p = c.sim.primary().expect("a primary");
            c.sim.crash(p);
        }
        let s = c.socket();
        if s.may_send() && sent < size {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        if !c.step() {
            break;
        }
    }
    assert_eq!(got, data);
    assert!(
        crashed && c.sim.primary() == Some(1),
        "the crash happened and rank 1 took over"
    );
    assert_eq!(c.sim.client_resets, 0);
    assert!(c.sim.violations.is_empty(), "{:?}", c.sim.violations);
}
