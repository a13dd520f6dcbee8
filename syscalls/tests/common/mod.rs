//! A fake host-server daemon for the tests: a CtlListener on a thread, driven by poll(2) on
//! its fds() as a real daemon would, recording every request it is asked.
#![allow(dead_code)]

use hydranet_syscalls::{CtlListener, Request, Response};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A fresh directory for one test's sockets; removed on drop. Short, as socket paths must be.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hn-ctl-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub type Handler = Box<dyn FnMut(&Request) -> Response + Send>;

pub struct FakeDaemon {
    pub path: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl FakeDaemon {
    /// Answers `ok` to everything.
    pub fn start() -> FakeDaemon {
        FakeDaemon::with_handler(Box::new(|_| Response::ok()))
    }

    pub fn with_handler(mut handler: Handler) -> FakeDaemon {
        let dir = TempDir::new();
        let path = dir.join("host.sock");
        let mut listener = CtlListener::bind(&path).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    wait_readable(&listener.fds(), 20);
                    listener.poll(&mut |req| {
                        requests.lock().unwrap().push(req.to_string());
                        handler(&req)
                    });
                }
            })
        };
        FakeDaemon {
            path,
            requests,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The canonical lines of the requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// poll(2) for readability, as a daemon's event loop does.
pub fn wait_readable(fds: &[std::os::fd::RawFd], timeout_ms: i32) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live, exclusively borrowed array of `pfds.len()` pollfd structures.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    assert!(n >= 0 || std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted);
}
