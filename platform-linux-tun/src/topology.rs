//! The test network of design §5: a client namespace, a redirector namespace and one namespace
//! per host server, joined by veth pairs, with Linux routing between them.
//!
//! ```text
//!  <p>c                 <p>r                                   <p>h<i>
//!  <p>c0 203.0.113.10+i  <p>rc 203.0.113.1
//!   default via .1       <p>r<i> 198.51.100.(64+4i+1)/30 ---- <p>h<i> 198.51.100.(64+4i+2)/30
//!                        <p>rt (TUN): 192.0.2.0/24,             default via 198.51.100.(64+4i+1)
//!                                     198.51.100.1/32           <p>t<i> (TUN): 198.51.100.(10+i)/32
//!                        198.51.100.(10+i)/32 via .(64+4i+2)
//! ```
//!
//! The redirector's tunnel address (198.51.100.1) and each host core's address
//! (198.51.100.10+i) belong to the daemons reading the TUN devices, not to any Linux interface:
//! Linux only routes them into the TUN. Replies of virtual hosts leave a host core with source
//! 192.0.2.x and are forwarded by Linux straight to the client, which is why reverse-path
//! filtering is off everywhere.
//!
//! Every namespace name is the prefix plus one of `c`, `r`, `h<i>`, so [`down`] can remove
//! exactly one topology's namespaces even when another prefix starts with this one.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use crate::netns::{self, ip, NETNS_RUN_DIR};
use crate::tun;

/// Longest prefix that keeps every interface name (prefix + 2 characters) within 15 bytes.
pub const MAX_PREFIX_LEN: usize = 13;
pub const MAX_HOSTS: usize = 8;
pub const MAX_CLIENTS: usize = 4;
pub const DEFAULT_MTU: u32 = 1500;

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologySpec {
    /// Start of every namespace and interface name: lowercase ASCII letters and digits, first a
    /// letter, at most [`MAX_PREFIX_LEN`] bytes.
    pub prefix: String,
    /// Host-server namespaces, 1..=8.
    pub hosts: usize,
    /// Client addresses in the one client namespace, 1..=4.
    pub clients: usize,
    /// MTU of every veth and TUN device, 68..=65535.
    pub mtu: u32,
}

/// `n` in base 36, lower case, no leading zeros.
fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

impl TopologySpec {
    /// One client, MTU 1500.
    pub fn new(prefix: &str, hosts: usize) -> Self {
        TopologySpec {
            prefix: prefix.to_string(),
            hosts,
            clients: 1,
            mtu: DEFAULT_MTU,
        }
    }

    /// A prefix unique among live processes and among the calls of this one (tests in one
    /// process build networks side by side): `"hn"` + the pid in base 36 + `"n"` + a count
    /// in base 36 — at most 11 bytes, as pids stay below 36^5.
    pub fn unique_prefix() -> String {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (36 * 36 * 36);
        format!("hn{}n{}", base36(std::process::id()), base36(call))
    }

    /// Checks the prefix, counts and MTU.
    pub fn validate(&self) -> io::Result<()> {
        validate_prefix(&self.prefix)?;
        let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if !(1..=MAX_HOSTS).contains(&self.hosts) {
            return bad(format!("hosts must be 1..={MAX_HOSTS}, not {}", self.hosts));
        }
        if !(1..=MAX_CLIENTS).contains(&self.clients) {
            return bad(format!(
                "clients must be 1..={MAX_CLIENTS}, not {}",
                self.clients
            ));
        }
        if !(68..=65535).contains(&self.mtu) {
            return bad(format!("mtu must be 68..=65535, not {}", self.mtu));
        }
        Ok(())
    }
}

fn validate_prefix(prefix: &str) -> io::Result<()> {
    let ok_chars = prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("prefix {prefix:?} must be lowercase ASCII letters and digits, starting with a letter"),
        ));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "prefix {prefix:?} is {} bytes; at most {MAX_PREFIX_LEN} keep interface names within 15",
                prefix.len()
            ),
        ));
    }
    Ok(())
}

/// A built (or planned) topology: every name and address in it.
#[derive(Clone, Debug)]
pub struct Topology {
    pub spec: TopologySpec,
    pub client_ns: String,
    pub redirector_ns: String,
    pub host_ns: Vec<String>,
    /// TUN device in the redirector namespace.
    pub redirector_tun: String,
    /// TUN device of host i, in `host_ns[i]`.
    pub host_tuns: Vec<String>,
    /// 203.0.113.10 + i, all on the client's veth.
    pub client_addrs: Vec<Ipv4Addr>,
    /// The redirector daemon's tunnel source, 198.51.100.1 (routed into its TUN).
    pub redirector_addr: Ipv4Addr,
    /// Host core i's address, 198.51.100.10 + i (routed into its TUN).
    pub host_addrs: Vec<Ipv4Addr>,
    /// 192.0.2.0/24, routed into the redirector's TUN.
    pub origin_prefix: (Ipv4Addr, u8),
}

/// The client's gateway, on the redirector's client-side veth.
pub const CLIENT_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

impl Topology {
    /// The client's veth in `client_ns`.
    pub fn client_if(&self) -> String {
        format!("{}c0", self.spec.prefix)
    }

    /// The redirector's veth towards the client.
    pub fn redirector_client_if(&self) -> String {
        format!("{}rc", self.spec.prefix)
    }

    /// The redirector's veth towards host `i`.
    pub fn redirector_host_if(&self, i: usize) -> String {
        format!("{}r{i}", self.spec.prefix)
    }

    /// Host `i`'s veth towards the redirector, in `host_ns[i]`.
    pub fn host_if(&self, i: usize) -> String {
        format!("{}h{i}", self.spec.prefix)
    }

    /// The redirector's end of the /30 to host `i`.
    pub fn redirector_link_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, (64 + 4 * i + 1) as u8)
    }

    /// Host `i`'s end of the /30 to the redirector.
    pub fn host_link_addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, (64 + 4 * i + 2) as u8)
    }

    /// Every namespace, client first.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut v = vec![self.client_ns.as_str(), self.redirector_ns.as_str()];
        v.extend(self.host_ns.iter().map(String::as_str));
        v
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.client_addrs.iter().map(|a| a.to_string()).collect();
        writeln!(
            f,
            "client     ns {:<10} {} {}/24 via {CLIENT_GATEWAY}",
            self.client_ns,
            self.client_if(),
            addrs.join(",")
        )?;
        writeln!(
            f,
            "redirector ns {:<10} tun {} (origin {}/{}, tunnel source {})",
            self.redirector_ns,
            self.redirector_tun,
            self.origin_prefix.0,
            self.origin_prefix.1,
            self.redirector_addr
        )?;
        for (i, ns) in self.host_ns.iter().enumerate() {
            writeln!(
                f,
                "host {i}     ns {:<10} tun {} (core {}), link {} <-> {}",
                ns,
                self.host_tuns[i],
                self.host_addrs[i],
                Self::redirector_link_addr(i),
                Self::host_link_addr(i)
            )?;
        }
        Ok(())
    }
}

/// The names and addresses `spec` gives, without creating anything.
pub fn plan(spec: &TopologySpec) -> io::Result<Topology> {
    spec.validate()?;
    let p = &spec.prefix;
    Ok(Topology {
        spec: spec.clone(),
        client_ns: format!("{p}c"),
        redirector_ns: format!("{p}r"),
        host_ns: (0..spec.hosts).map(|i| format!("{p}h{i}")).collect(),
        redirector_tun: format!("{p}rt"),
        host_tuns: (0..spec.hosts).map(|i| format!("{p}t{i}")).collect(),
        client_addrs: (0..spec.clients)
            .map(|i| Ipv4Addr::new(203, 0, 113, 10 + i as u8))
            .collect(),
        redirector_addr: Ipv4Addr::new(198, 51, 100, 1),
        host_addrs: (0..spec.hosts)
            .map(|i| Ipv4Addr::new(198, 51, 100, 10 + i as u8))
            .collect(),
        origin_prefix: (Ipv4Addr::new(192, 0, 2, 0), 24),
    })
}

/// Whether namespace `name` belongs to the topology of `prefix`.
fn owned_by(prefix: &str, name: &str) -> bool {
    match name.strip_prefix(prefix) {
        Some("c") | Some("r") => true,
        Some(rest) => rest
            .strip_prefix('h')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

fn existing_namespaces() -> io::Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in dir {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The namespaces of `prefix` that exist now.
pub fn namespaces_of(prefix: &str) -> io::Result<Vec<String>> {
    Ok(existing_namespaces()?
        .into_iter()
        .filter(|n| owned_by(prefix, n))
        .collect())
}

fn delete_ns(name: &str) -> io::Result<()> {
    match ip(None, &["netns", "del", name]) {
        Ok(()) => Ok(()),
        // Someone else (a concurrent `down`) got there first.
        Err(_) if !Path::new(NETNS_RUN_DIR).join(name).exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes every namespace of the topology `prefix` (their veths and TUN devices die with
/// them). Idempotent, and clears the leftovers of a crashed run. Tries every namespace even if
/// one fails, and returns the first error.
///
/// A namespace stays alive, nameless, while a process still holds a descriptor in it (an open
/// [`crate::tun::Tun`], a socket); its interfaces go when that descriptor closes.
pub fn down(prefix: &str) -> io::Result<()> {
    validate_prefix(prefix)?;
    let mut first_err = None;
    for name in namespaces_of(prefix)? {
        if let Err(e) = delete_ns(&name) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Writes sysctls of the namespace `ns` from a thread inside it; `/proc/sys/net` shows the
/// writer's namespace. Keys missing from this kernel (IPv6 compiled out) are skipped.
fn sysctls(ns: &str, settings: Vec<(String, &'static str)>) -> io::Result<()> {
    let owner = ns.to_string();
    netns::run_in(ns, move || -> io::Result<()> {
        for (key, value) in &settings {
            let path = Path::new("/proc/sys/net").join(key);
            match std::fs::write(&path, value) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && key.starts_with("ipv6/") => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{owner}: {} = {value}: {e}", path.display()),
                    ))
                }
            }
        }
        Ok(())
    })?
}

fn base_sysctls(ns: &str, forward: bool) -> io::Result<()> {
    let mut s: Vec<(String, &'static str)> = vec![
        // Router solicitations and DAD would otherwise show up on every TUN reader.
        ("ipv6/conf/all/disable_ipv6".into(), "1"),
        ("ipv6/conf/default/disable_ipv6".into(), "1"),
        // Replies of virtual hosts reach the redirector from a host, while their source
        // (192.0.2.x) is routed into the redirector's TUN: strict RPF drops them (checked).
        ("ipv4/conf/all/rp_filter".into(), "0"),
        ("ipv4/conf/default/rp_filter".into(), "0"),
        ("ipv4/conf/lo/rp_filter".into(), "0"),
    ];
    if forward {
        s.push(("ipv4/ip_forward".into(), "1"));
    }
    sysctls(ns, s)
}

fn iface_sysctls(ns: &str, ifaces: &[String]) -> io::Result<()> {
    let s = ifaces
        .iter()
        .map(|i| (format!("ipv4/conf/{i}/rp_filter"), "0"))
        .collect();
    sysctls(ns, s)
}

/// Namespaces created so far; removed again unless the build completes.
struct Rollback(Vec<String>);

impl Drop for Rollback {
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            if let Err(e) = delete_ns(ns) {
                eprintln!("topology: cleaning up {ns}: {e}");
            }
        }
    }
}

/// Creates the whole topology; on any failure removes what it created and returns the error.
/// Refuses (`AlreadyExists`) when a namespace of this prefix exists already, without touching
/// it: it may belong to a live run (call [`down`] first to clear a crashed one).
pub fn up(spec: &TopologySpec) -> io::Result<Topology> {
    let topo = plan(spec)?;
    let existing = namespaces_of(&spec.prefix)?;
    if !existing.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "namespaces of prefix {} exist already: {}",
                spec.prefix,
                existing.join(" ")
            ),
        ));
    }
    let mut rollback = Rollback(Vec::new());
    for ns in topo.namespaces() {
        ip(None, &["netns", "add", ns])?;
        rollback.0.push(ns.to_string());
    }
    build(&topo)?;
    rollback.0.clear();
    Ok(topo)
}

fn build(t: &Topology) -> io::Result<()> {
    let mtu = t.spec.mtu.to_string();
    let (c, r) = (t.client_ns.as_str(), t.redirector_ns.as_str());
    let rt = t.redirector_tun.as_str();

    base_sysctls(c, false)?;
    base_sysctls(r, true)?;
    for h in &t.host_ns {
        base_sysctls(h, true)?;
    }
    for ns in t.namespaces() {
        ip(Some(ns), &["link", "set", "dev", "lo", "up"])?;
    }

    // Both ends are created inside namespaces, so nothing ever appears in the root namespace.
    let (cif, rcif) = (t.client_if(), t.redirector_client_if());
    ip(
        Some(c),
        &[
            "link", "add", &cif, "type", "veth", "peer", "name", &rcif, "netns", r,
        ],
    )?;
    for (i, h) in t.host_ns.iter().enumerate() {
        ip(
            Some(r),
            &[
                "link",
                "add",
                &t.redirector_host_if(i),
                "type",
                "veth",
                "peer",
                "name",
                &t.host_if(i),
                "netns",
                h,
            ],
        )?;
    }
    ip(Some(r), &["tuntap", "add", "dev", rt, "mode", "tun"])?;
    for (h, tun) in t.host_ns.iter().zip(&t.host_tuns) {
        ip(Some(h), &["tuntap", "add", "dev", tun, "mode", "tun"])?;
    }

    let mut veths: Vec<(&str, String)> = vec![(c, cif.clone()), (r, rcif.clone())];
    for (i, h) in t.host_ns.iter().enumerate() {
        veths.push((r, t.redirector_host_if(i)));
        veths.push((h, t.host_if(i)));
    }
    let mut ifaces = veths.clone();
    ifaces.push((r, rt.into()));
    for (h, tun) in t.host_ns.iter().zip(&t.host_tuns) {
        ifaces.push((h, tun.clone()));
    }
    for (ns, ifname) in &ifaces {
        ip(Some(ns), &["link", "set", "dev", ifname, "mtu", &mtu, "up"])?;
    }

    for a in &t.client_addrs {
        ip(Some(c), &["addr", "add", &format!("{a}/24"), "dev", &cif])?;
    }
    ip(
        Some(r),
        &["addr", "add", &format!("{CLIENT_GATEWAY}/24"), "dev", &rcif],
    )?;
    for (i, h) in t.host_ns.iter().enumerate() {
        let (ra, ha) = (
            Topology::redirector_link_addr(i),
            Topology::host_link_addr(i),
        );
        ip(
            Some(r),
            &[
                "addr",
                "add",
                &format!("{ra}/30"),
                "dev",
                &t.redirector_host_if(i),
            ],
        )?;
        ip(
            Some(h),
            &["addr", "add", &format!("{ha}/30"), "dev", &t.host_if(i)],
        )?;
    }

    // The veths must carry the first packet a caller sends. TUN devices are left out: they
    // only run once a daemon attaches, and `Tun::open` waits for that itself.
    for ns in t.namespaces() {
        let names: Vec<String> = veths
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, i)| i.clone())
            .collect();
        wait_running_in(ns, &names, LINK_TIMEOUT)?;
    }

    ip(
        Some(c),
        &[
            "route",
            "add",
            "default",
            "via",
            &CLIENT_GATEWAY.to_string(),
        ],
    )?;
    let origin = format!("{}/{}", t.origin_prefix.0, t.origin_prefix.1);
    ip(Some(r), &["route", "add", &origin, "dev", rt])?;
    ip(
        Some(r),
        &[
            "route",
            "add",
            &format!("{}/32", t.redirector_addr),
            "dev",
            rt,
        ],
    )?;
    for (i, h) in t.host_ns.iter().enumerate() {
        let (ra, ha) = (
            Topology::redirector_link_addr(i),
            Topology::host_link_addr(i),
        );
        let core = format!("{}/32", t.host_addrs[i]);
        ip(Some(r), &["route", "add", &core, "via", &ha.to_string()])?;
        ip(
            Some(h),
            &["route", "add", "default", "via", &ra.to_string()],
        )?;
        ip(Some(h), &["route", "add", &core, "dev", &t.host_tuns[i]])?;
    }

    for ns in t.namespaces() {
        let names: Vec<String> = ifaces
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, i)| i.clone())
            .collect();
        iface_sysctls(ns, &names)?;
    }
    Ok(())
}

/// How long a veth may take to start carrying packets before `up` gives up.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);

fn wait_running_in(ns: &str, ifaces: &[String], timeout: Duration) -> io::Result<()> {
    let ifaces = ifaces.to_vec();
    let owner = ns.to_string();
    netns::run_in(ns, move || -> io::Result<()> {
        for i in &ifaces {
            if !tun::wait_running(i, timeout)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{owner}: {i} not running after {timeout:?}"),
                ));
            }
        }
        Ok(())
    })?
}

/// Waits until `ifname` in namespace `ns` carries packets ([`tun::wait_running`]), e.g. after
/// [`set_link`] brought it back up; `Ok(false)` on timeout or while it is down.
pub fn wait_running(ns: &str, ifname: &str, timeout: Duration) -> io::Result<bool> {
    let ifname = ifname.to_string();
    netns::run_in(ns, move || tun::wait_running(&ifname, timeout))?
}

/// Removes the topology (by prefix) when dropped, also while unwinding from a panic.
#[derive(Debug)]
pub struct TopologyGuard(pub Topology);

impl TopologyGuard {
    /// [`up`] and guard the result.
    pub fn up(spec: &TopologySpec) -> io::Result<TopologyGuard> {
        up(spec).map(TopologyGuard)
    }
}

impl Drop for TopologyGuard {
    fn drop(&mut self) {
        if let Err(e) = down(&self.0.spec.prefix) {
            eprintln!("topology {}: down failed: {e}", self.0.spec.prefix);
        }
    }
}

impl Deref for TopologyGuard {
    type Target = Topology;
    fn deref(&self) -> &Topology {
        &self.0
    }
}

/// Takes the interface `ifname` in namespace `ns` down or up (a failing link). Does not wait
/// for a link brought up to carry packets: see [`wait_running`].
pub fn set_link(ns: &str, ifname: &str, up: bool) -> io::Result<()> {
    ip(
        Some(ns),
        &["link", "set", "dev", ifname, if up { "up" } else { "down" }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_prefix_fits() {
        let p = TopologySpec::unique_prefix();
        assert!(p.starts_with("hn") && p.len() <= 11, "{p}");
        validate_prefix(&p).unwrap();
        assert_ne!(TopologySpec::unique_prefix(), p, "a second call differs");
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 - 1), "zz");
    }

    #[test]
    fn plan_addresses() {
        let mut spec = TopologySpec::new("hnx", 3);
        spec.clients = 2;
        let t = plan(&spec).unwrap();
        assert_eq!(t.namespaces(), ["hnxc", "hnxr", "hnxh0", "hnxh1", "hnxh2"]);
        assert_eq!(t.host_tuns, ["hnxt0", "hnxt1", "hnxt2"]);
        assert_eq!(t.redirector_tun, "hnxrt");
        assert_eq!(
            t.client_addrs,
            [
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 11)
            ]
        );
        assert_eq!(t.host_addrs[2], Ipv4Addr::new(198, 51, 100, 12));
        assert_eq!(
            Topology::redirector_link_addr(2),
            Ipv4Addr::new(198, 51, 100, 73)
        );
        assert_eq!(Topology::host_link_addr(2), Ipv4Addr::new(198, 51, 100, 74));
        let max = plan(&TopologySpec::new(&"a".repeat(MAX_PREFIX_LEN), MAX_HOSTS)).unwrap();
        assert!(max.host_if(MAX_HOSTS - 1).len() <= 15);
        assert!(max.client_if().len() <= 15);
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(plan(&TopologySpec::new(&"a".repeat(MAX_PREFIX_LEN + 1), 1)).is_err());
        assert!(plan(&TopologySpec::new("Hn1", 1)).is_err());
        assert!(plan(&TopologySpec::new("1hn", 1)).is_err());
        assert!(plan(&TopologySpec::new("hn-1", 1)).is_err());
        assert!(plan(&TopologySpec::new("hn1", 0)).is_err());
        assert!(plan(&TopologySpec::new("hn1", 9)).is_err());
        let mut s = TopologySpec::new("hn1", 1);
        s.clients = 5;
        assert!(plan(&s).is_err());
        s.clients = 1;
        s.mtu = 67;
        assert!(plan(&s).is_err());
    }

    #[test]
    fn ownership_is_exact() {
        assert!(owned_by("hn1", "hn1c"));
        assert!(owned_by("hn1", "hn1r"));
        assert!(owned_by("hn1", "hn1h7"));
        assert!(!owned_by("hn1", "hn1"));
        assert!(!owned_by("hn1", "hn1h"));
        // Another topology whose prefix merely starts with ours.
        assert!(!owned_by("hn1", "hn1ac"));
        assert!(!owned_by("hn1", "hn1hc"));
        assert!(!owned_by("hn1", "hn1hh0"));
        assert!(!owned_by("hn1", "xhn1c"));
    }
}
