//! Network namespaces: running `ip` and programs inside them, and moving threads into them.
//!
//! A namespace here is a name under `/run/netns` as `ip netns add` makes it. Only a thread is
//! ever moved ([`enter`], [`run_in`]): the process's other threads, the test harness among
//! them, stay where they were.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Where `ip netns` keeps its namespace handles.
pub const NETNS_RUN_DIR: &str = "/run/netns";

fn failure(what: &str, out: &Output) -> io::Error {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    io::Error::other(format!("{what}: {} ({})", stderr, out.status))
}

fn run(mut cmd: Command, what: &str) -> io::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failure(what, &out))
    }
}

/// Runs `ip` with `args` (inside namespace `ns` when given, as `ip -n ns ...`); `Err` carries
/// the command and its stderr when it fails.
pub fn ip(ns: Option<&str>, args: &[&str]) -> io::Result<()> {
    ip_output(ns, args).map(|_| ())
}

/// Like [`ip`] but returns stdout, for `show` commands.
pub fn ip_output(ns: Option<&str>, args: &[&str]) -> io::Result<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args);
    let what = format!(
        "ip {}{}",
        ns.map(|n| format!("-n {n} ")).unwrap_or_default(),
        args.join(" ")
    );
    let out = run(cmd, &what)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the program `argv[0]` with arguments `argv[1..]` inside namespace `ns`
/// (`ip netns exec`) and waits for it; `Err` with its stderr when it exits unsuccessfully.
pub fn exec(ns: &str, argv: &[&str]) -> io::Result<Output> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "exec: empty argv",
        ));
    };
    let mut cmd = command(ns, Path::new(program));
    cmd.args(args);
    run(cmd, &format!("ip netns exec {ns} {}", argv.join(" ")))
}

/// A `Command` that runs `program` inside namespace `ns` (`ip netns exec ns program ...`); add
/// the program's arguments to it.
///
/// `ip netns exec` replaces itself with the program (exec, no fork), so the child's pid is the
/// program's pid and killing it by pid kills the program.
pub fn command(ns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Moves the calling thread into namespace `ns` (setns(2) with `CLONE_NEWNET`). Sockets and TUN
/// devices this thread opens afterwards live in `ns`; the process's other threads are not moved.
pub fn enter(ns: &str) -> io::Result<()> {
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad namespace name {ns:?}"),
        ));
    }
    let path = Path::new(NETNS_RUN_DIR).join(ns);
    let f = std::fs::File::open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: setns(2) on a descriptor we hold open; it only changes this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(err.kind(), format!("setns {ns}: {err}")));
    }
    Ok(())
}

/// Runs `f` on a new thread that entered namespace `ns` first, and returns its result. A panic
/// in `f` becomes `Err` with the panic message.
///
/// Descriptors `f` opens (sockets, [`crate::tun::Tun`]) stay bound to `ns` when returned to
/// another thread, so this is how a test gets a socket "inside" a namespace.
pub fn run_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let name = ns.to_string();
    let handle = std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || -> io::Result<T> {
            enter(&name)?;
            Ok(f())
        })?;
    match handle.join() {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_string());
            Err(io::Error::other(format!("panic in namespace {ns}: {msg}")))
        }
    }
}

/// Whether this process can create namespaces and TUN devices: root, `/dev/net/tun` openable,
/// `ip` present. `Err` holds a reason fit for a skip message.
pub fn capable() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!("not root (euid {euid})"));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        return Err(format!("cannot open /dev/net/tun: {e}"));
    }
    match Command::new("ip")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("`ip -V` failed ({s})")),
        Err(e) => return Err(format!("iproute2 `ip` not runnable: {e}")),
    }
    if !Path::new("/proc/thread-self/ns/net").exists() {
        return Err("no /proc/thread-self/ns/net (kernel without network namespaces?)".into());
    }
    Ok(())
}

/// TCP counters of the calling thread's network namespace, from `/proc/thread-self/net/snmp`
/// and `/proc/thread-self/net/netstat`, keyed like `"Tcp.EstabResets"`,
/// `"TcpExt.TCPAbortOnData"`. Fields whose value is not a u64 (`Tcp.MaxConn` is -1) are left
/// out.
pub fn tcp_counters() -> io::Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for file in [
        "/proc/thread-self/net/snmp",
        "/proc/thread-self/net/netstat",
    ] {
        let text = std::fs::read_to_string(file)
            .map_err(|e| io::Error::new(e.kind(), format!("{file}: {e}")))?;
        parse_proc_counters(&text, &["Tcp", "TcpExt"], &mut map);
    }
    Ok(map)
}

/// Parses the `Group: Name Name ...` / `Group: value value ...` line pairs of
/// `/proc/net/snmp` and `/proc/net/netstat`, keeping the groups in `groups`.
pub fn parse_proc_counters(text: &str, groups: &[&str], out: &mut BTreeMap<String, u64>) {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((g1, names)), Some((g2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if g1 != g2 || !groups.contains(&g1) {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                out.insert(format!("{g1}.{n}"), v);
            }
        }
    }
}

/// Whether a socket error means the peer reset (or aborted) the connection.
pub fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

/// Connections of the calling thread's namespace that ended in a reset (the kernel's own
/// `Tcp.EstabResets`, so a reset nobody read an error for still shows); 0 if unreadable.
pub fn kernel_resets() -> u64 {
    tcp_counters()
        .ok()
        .and_then(|c| c.get("Tcp.EstabResets").copied())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snmp_pairs() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm MaxConn EstabResets OutRsts\nTcp: 1 -1 3 7\n\
                    TcpExt: SyncookiesSent TCPAbortOnData\nTcpExt: 0 5\n";
        let mut m = BTreeMap::new();
        parse_proc_counters(text, &["Tcp", "TcpExt"], &mut m);
        assert_eq!(m.get("Tcp.EstabResets"), Some(&3));
        assert_eq!(m.get("Tcp.OutRsts"), Some(&7));
        assert_eq!(m.get("TcpExt.TCPAbortOnData"), Some(&5));
        assert!(!m.contains_key("Tcp.MaxConn"));
        assert!(!m.contains_key("Ip.Forwarding"));
    }

    #[test]
    fn own_namespace_counters_are_readable() {
        let m = tcp_counters().unwrap();
        assert!(m.contains_key("Tcp.EstabResets"), "{m:?}");
        assert!(m.contains_key("TcpExt.TCPAbortOnData"), "{m:?}");
    }

    #[test]
    fn enter_rejects_paths() {
        assert!(enter("../etc").is_err());
        assert!(enter("").is_err());
    }
}
