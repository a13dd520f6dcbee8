//! The control socket end to end: CtlClient and the `_at` calls against a CtlListener, and the
//! listener against clients that misbehave.

mod common;

use common::{FakeDaemon, TempDir};
use hydranet_syscalls::ctl::{CTL_TIMEOUT, MAX_LINE};
use hydranet_syscalls::{
    setportopt_at, v_host_at, CtlClient, CtlListener, DetectorParams, Errno, PortMode, Request,
    Response,
};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

fn params() -> DetectorParams {
    DetectorParams {
        retransmit_threshold: 2,
        retransmit_window_ms: 1000,
        heartbeat_interval_ms: 10,
        heartbeat_timeout_ms: 30,
    }
}

/// A handler that records nothing and answers `ok`, for listeners driven by hand.
fn ok(_: Request) -> Response {
    Response::ok()
}

/// Drives `listener` by hand, then returns the answer lines `client` has received. Unix
/// sockets hand data over within the sending call, so nothing is still on its way.
fn answers(listener: &mut CtlListener, client: &UnixStream) -> Vec<String> {
    for _ in 0..4 {
        listener.poll(&mut ok);
    }
    client.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match (&*client).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            // Reset: the listener hung up on input it had not read. What it sent came first.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::ConnectionReset) => {
                break
            }
            Err(e) => panic!("{e}"),
        }
    }
    client.set_nonblocking(false).unwrap();
    String::from_utf8(got)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_calls_send_canonical_requests() {
    let daemon = FakeDaemon::start();
    v_host_at(daemon.path(), VIP).unwrap();
    setportopt_at(daemon.path(), VIP, 80, PortMode::Primary, &params()).unwrap();
    setportopt_at(
        daemon.path(),
        VIP,
        81,
        PortMode::Normal,
        &DetectorParams::default(),
    )
    .unwrap();
    assert_eq!(
        daemon.requests(),
        [
            "v_host 192.0.2.80",
            "setportopt 192.0.2.80 80 primary 2 1000 10 30",
            "setportopt 192.0.2.80 81 normal 2 1000 10 30",
        ]
    );
}

#[test]
fn invalid_arguments_never_reach_the_daemon() {
    let daemon = FakeDaemon::start();
    let bad = DetectorParams {
        heartbeat_timeout_ms: 10,
        ..params()
    };
    assert_eq!(
        v_host_at(daemon.path(), Ipv4Addr::BROADCAST),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        setportopt_at(daemon.path(), VIP, 80, PortMode::Backup, &bad),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        setportopt_at(daemon.path(), VIP, 0, PortMode::Normal, &params()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        setportopt_at(
            daemon.path(),
            Ipv4Addr::UNSPECIFIED,
            80,
            PortMode::Normal,
            &params()
        ),
        Err(Errno::EINVAL)
    );
    let mut client = CtlClient::connect(daemon.path()).unwrap();
    let space = Request::Serve {
        vip: VIP,
        port: 80,
        service: "echo twice".into(),
    };
    assert_eq!(client.call(&space), Err(Errno::EINVAL));
    assert_eq!(client.call_raw("status\nstatus"), Err(Errno::EINVAL));
    assert_eq!(client.call_raw(&"x".repeat(MAX_LINE)), Err(Errno::EINVAL));
    // Refusing to send does not break the connection.
    assert_eq!(client.call(&Request::Status), Ok(String::new()));
    assert_eq!(daemon.requests(), ["status"]);
}

#[test]
fn the_daemons_answers_come_back() {
    let daemon = FakeDaemon::with_handler(Box::new(|req| match req {
        Request::VHost(ip) if *ip == Ipv4Addr::new(192, 0, 2, 81) => {
            Response::err(Errno::EADDRNOTAVAIL, "not served here")
        }
        Request::Status => Response::Ok("vhosts=1 groups=0".into()),
        Request::RouteAdd { .. } => Response::err(Errno::ENOSYS, ""),
        _ => Response::ok(),
    }));
    assert_eq!(
        v_host_at(daemon.path(), Ipv4Addr::new(192, 0, 2, 81)),
        Err(Errno::EADDRNOTAVAIL)
    );
    let mut client = CtlClient::connect(daemon.path()).unwrap();
    assert_eq!(
        client.call(&Request::Status).as_deref(),
        Ok("vhosts=1 groups=0")
    );
    assert_eq!(
        client.call_raw("v_host 192.0.2.81"),
        Ok(Response::err(Errno::EADDRNOTAVAIL, "not served here"))
    );
    assert_eq!(
        client.call_raw("route add 192.0.2.80 80 198.51.100.1"),
        Ok(Response::err(Errno::ENOSYS, ""))
    );
    assert_eq!(
        client.call_raw("setportopt 192.0.2.80 80 primary 2 1000 30 10"),
        Ok(Response::err(
            Errno::EINVAL,
            "setportopt: heartbeat_timeout_ms must exceed heartbeat_interval_ms"
        ))
    );
    // Only well-formed requests reach the handler.
    assert_eq!(
        daemon.requests(),
        [
            "v_host 192.0.2.81",
            "status",
            "v_host 192.0.2.81",
            "route add 192.0.2.80 80 198.51.100.1"
        ]
    );
}

#[test]
fn many_clients_at_once() {
    const CLIENTS: usize = 40;
    const CALLS: usize = 25;
    let served = Arc::new(AtomicUsize::new(0));
    let daemon = {
        let served = served.clone();
        FakeDaemon::with_handler(Box::new(move |req| match req {
            Request::Serve { service, .. } => {
                served.fetch_add(1, Ordering::Relaxed);
                Response::Ok(format!("service={service}"))
            }
            _ => Response::ok(),
        }))
    };
    // All connected before anyone calls, so the listener juggles every connection at once.
    let clients: Vec<CtlClient> = (0..CLIENTS)
        .map(|_| CtlClient::connect(daemon.path()).unwrap())
        .collect();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            std::thread::spawn(move || {
                for j in 0..CALLS {
                    let req = Request::Serve {
                        vip: VIP,
                        port: 1 + i as u16,
                        service: format!("echo:{i}:{j}"),
                    };
                    assert_eq!(client.call(&req), Ok(format!("service=echo:{i}:{j}")));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(served.load(Ordering::Relaxed), CLIENTS * CALLS);
}

#[test]
fn lines_split_across_writes_and_several_lines_in_one() {
    let dir = TempDir::new();
    let mut listener = CtlListener::bind(&dir.join("c.sock")).unwrap();
    let mut client = UnixStream::connect(listener.path()).unwrap();
    let mut seen = Vec::new();
    for part in [
        "v_ho",
        "st 192.",
        "0.2.80",
        "\r",
        "\nstat",
        "us\ncounters\nshut",
        "down\n",
    ] {
        client.write_all(part.as_bytes()).unwrap();
        listener.poll(&mut |req| {
            seen.push(req.to_string());
            Response::ok()
        });
    }
    assert_eq!(
        seen,
        ["v_host 192.0.2.80", "status", "counters", "shutdown"]
    );
    assert_eq!(answers(&mut listener, &client), ["ok"; 4]);
}

#[test]
fn a_line_too_long_is_refused_and_the_connection_closed() {
    let dir = TempDir::new();
    let mut listener = CtlListener::bind(&dir.join("c.sock")).unwrap();

    // The longest line there may be, 4096 bytes with its newline, is fine.
    let head = "serve 192.0.2.80 80 ";
    let longest = format!("{head}{}\n", "s".repeat(MAX_LINE - head.len() - 1));
    assert_eq!(longest.len(), MAX_LINE);
    let mut client = UnixStream::connect(listener.path()).unwrap();
    client.write_all(longest.as_bytes()).unwrap();
    assert_eq!(answers(&mut listener, &client), ["ok"]);
    drop(client);

    // One byte more is not, with or without a newline at the end.
    for tail in ["s\n", "s"] {
        let mut client = UnixStream::connect(listener.path()).unwrap();
        client
            .write_all(&longest.as_bytes()[..MAX_LINE - 1])
            .unwrap();
        client.write_all(tail.as_bytes()).unwrap();
        client.write_all(b"status\n").unwrap();
        let got = answers(&mut listener, &client);
        assert_eq!(
            got,
            ["err EINVAL line too long (max 4096 bytes including the newline)"]
        );
    }
    // A client that keeps sending a line forever is cut off too.
    let mut client = UnixStream::connect(listener.path()).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut sent = 0;
    while sent < 4 * MAX_LINE {
        match client.write(&[b'x'; 512]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => listener.poll(&mut ok),
            Err(_) => break,
        }
    }
    assert!(answers(&mut listener, &client)[0].starts_with("err EINVAL line too long"));
    listener.poll(&mut ok);
    assert_eq!(listener.connections(), 0);
}

#[test]
fn garbage_is_answered_and_the_connection_survives() {
    let dir = TempDir::new();
    let mut listener = CtlListener::bind(&dir.join("c.sock")).unwrap();
    let mut client = UnixStream::connect(listener.path()).unwrap();
    client
        .write_all(b"\xff\xfe\x00\x01\n\x00\x01\x02\n\nhello world\nv_host 1.2.3\nstatus\n")
        .unwrap();
    assert_eq!(
        answers(&mut listener, &client),
        [
            "err EINVAL request is not UTF-8",
            // Control characters in an answer become spaces.
            "err EINVAL unknown request '   '",
            "err EINVAL empty request",
            "err EINVAL unknown request 'hello'",
            "err EINVAL v_host: bad vip '1.2.3' (a unicast IPv4 address)",
            "ok",
        ]
    );
}

#[test]
fn a_client_leaving_mid_line_is_forgotten() {
    let dir = TempDir::new();
    let mut listener = CtlListener::bind(&dir.join("c.sock")).unwrap();
    let mut called = 0;
    let mut client = UnixStream::connect(listener.path()).unwrap();
    client.write_all(b"status\nv_host 192.0").unwrap();
    listener.poll(&mut |_| {
        called += 1;
        Response::ok()
    });
    assert_eq!((called, listener.connections()), (1, 1));
    assert_eq!(listener.fds().len(), 2);
    drop(client);
    listener.poll(&mut |_| {
        called += 1;
        Response::ok()
    });
    assert_eq!((called, listener.connections()), (1, 0));
    assert_eq!(listener.fds(), [listener.as_raw_fd()]);

    // Half-closed: the client sent its last request and waits for the answer.
    let mut client = UnixStream::connect(listener.path()).unwrap();
    client.write_all(b"status\nstatus").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    for _ in 0..10 {
        listener.poll(&mut ok);
    }
    client.read_to_string(&mut got).unwrap();
    assert_eq!(got, "ok\n");
    assert_eq!(listener.connections(), 0);
}

#[test]
fn connections_beyond_the_limit_are_turned_away() {
    let dir = TempDir::new();
    let mut listener = CtlListener::bind(&dir.join("c.sock")).unwrap();
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(UnixStream::connect(listener.path()).unwrap());
        listener.poll(&mut ok);
    }
    assert_eq!(listener.connections(), 64);
    let extra = UnixStream::connect(listener.path()).unwrap();
    listener.poll(&mut ok);
    let mut got = String::new();
    (&extra).read_to_string(&mut got).unwrap();
    assert_eq!(got, "err ENOBUFS too many control connections\n");
    assert_eq!(listener.connections(), 64);
}

#[test]
fn a_client_that_never_reads_is_dropped() {
    let dir = TempDir::new();
    let mut listener = CtlListener::bind(&dir.join("c.sock")).unwrap();
    let mut client = UnixStream::connect(listener.path()).unwrap();
    client.set_nonblocking(true).unwrap();
    let big = "status\n".repeat(1000);
    for _ in 0..10_000 {
        let _ = client.write(big.as_bytes());
        listener.poll(&mut |_| Response::Ok("x".repeat(1000)));
        if listener.connections() == 0 {
            return;
        }
    }
    panic!("the listener buffers answers forever");
}

#[test]
fn bind_replaces_stale_sockets_only() {
    let dir = TempDir::new();
    let path = dir.join("sub/dir/c.sock");
    let listener = CtlListener::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A live daemon keeps its socket.
    let again = CtlListener::bind(&path).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AddrInUse);
    drop(listener);
    assert!(!path.exists(), "the socket file outlived its listener");

    // A socket left by a daemon that died is taken over.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = CtlListener::bind(&path).unwrap();
    assert!(CtlClient::connect(&path).is_ok());
    drop(listener);

    // Anything else is not ours to remove.
    std::fs::write(&path, "precious").unwrap();
    let err = CtlListener::bind(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn drop_leaves_a_successors_socket_alone() {
    let dir = TempDir::new();
    let path = dir.join("c.sock");
    let first = CtlListener::bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let second = CtlListener::bind(&path).unwrap();
    drop(first);
    assert!(path.exists());
    drop(second);
    assert!(!path.exists());
}

#[test]
fn client_errors() {
    let dir = TempDir::new();
    let path = dir.join("c.sock");
    assert_eq!(
        CtlClient::connect(&path).map(drop),
        Err(Errno::ENOENT),
        "no socket"
    );
    drop(UnixListener::bind(&path).unwrap());
    assert_eq!(
        CtlClient::connect(&path).map(drop),
        Err(Errno::ECONNREFUSED),
        "a stale socket"
    );
    assert_eq!(v_host_at(&path, VIP), Err(Errno::ECONNREFUSED));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        CtlClient::connect_timeout(&path, Duration::ZERO).map(drop),
        Err(Errno::EINVAL)
    );
    assert_eq!(CTL_TIMEOUT, Duration::from_secs(5));

    // Daemons that misbehave, one connection each: what they answer to the first request.
    let cases: [(&[u8], Errno); 5] = [
        (b"", Errno::EIO),                  // hangs up
        (b"ok but no newline", Errno::EIO), // hangs up mid-answer
        (b"hello\n", Errno::EIO),           // not a response
        (b"\xff\n", Errno::EIO),            // not UTF-8
        (b"ok\nok\n", Errno::EIO),          // two answers: the second call sees the stray one
    ];
    let raw = UnixListener::bind(&path).unwrap();
    for (answer, errno) in cases {
        let server = {
            let raw = raw.try_clone().unwrap();
            std::thread::spawn(move || {
                let (mut conn, _) = raw.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&conn).read_line(&mut line).unwrap();
                conn.write_all(answer).unwrap();
                if answer.starts_with(b"ok\n") {
                    // Stay for the second request, unanswered.
                    let _ = BufReader::new(&conn).read_line(&mut line);
                }
            })
        };
        let mut client = CtlClient::connect(&path).unwrap();
        let first = client.call(&Request::Status);
        if answer.starts_with(b"ok\n") {
            assert_eq!(first, Ok(String::new()));
            assert_eq!(client.call(&Request::Status), Err(errno));
        } else {
            assert_eq!(first, Err(errno), "{answer:?}");
        }
        // A connection that went wrong stays wrong.
        assert_eq!(client.call(&Request::Status), Err(Errno::EIO));
        drop(client);
        server.join().unwrap();
    }

    // A daemon that does not answer at all.
    let server = std::thread::spawn(move || {
        let (conn, _) = raw.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(conn);
    });
    let mut client = CtlClient::connect_timeout(&path, Duration::from_millis(50)).unwrap();
    assert_eq!(client.call(&Request::Status), Err(Errno::ETIMEDOUT));
    assert_eq!(client.call(&Request::Status), Err(Errno::EIO));
    server.join().unwrap();
}
