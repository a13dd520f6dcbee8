//! What the two daemons share: their clock, their stop signal, the pcap tap and the formatting
//! of counters for `status`/`counters` answers.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::pcap::PcapWriter;

/// The core's clock: microseconds since the daemon started, from the monotonic clock (wall
/// time can jump; TCP timers must not).
pub struct Clock(std::time::Instant);

impl Clock {
    pub fn start() -> Self {
        Clock(std::time::Instant::now())
    }
    pub fn now(&self) -> hydranet_core::Instant {
        hydranet_core::Instant::from_micros(self.0.elapsed().as_micros() as u64)
    }
    /// How long until the core's `deadline`, never negative, capped so the loop looks at its
    /// stop flag and control socket regularly even when the core is idle.
    pub fn until(&self, deadline: Option<hydranet_core::Instant>, cap: Duration) -> Duration {
        let Some(d) = deadline else {
            return cap;
        };
        let now = self.now().total_micros();
        Duration::from_micros(d.total_micros().saturating_sub(now)).min(cap)
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT ask the loop to stop (so the control socket and captures are
/// cleaned up); SIGKILL — the demo's way of crashing a host — cannot be caught, as intended.
pub fn install_stop_handler() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; sigaction
        // with a zeroed mask and no SA_RESTART makes poll(2) return EINTR so the loop notices.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// How often a daemon's capture reaches the disk.
const PCAP_FLUSH: Duration = Duration::from_millis(50);

/// A capture file shared between the device tap (which writes) and the loop (which calls
/// [`Capture::tick`], so a daemon killed with SIGKILL leaves a capture that ends at most one
/// flush interval early).
#[derive(Clone)]
pub struct Capture(Arc<Mutex<CaptureFile>>);

struct CaptureFile {
    writer: PcapWriter<io::BufWriter<std::fs::File>>,
    flushed: std::time::Instant,
}

impl Capture {
    pub fn create(dir: &Path, name: &str) -> io::Result<Capture> {
        std::fs::create_dir_all(dir)?;
        let writer = crate::pcap::create(&dir.join(format!("{name}.pcap")))?;
        Ok(Capture(Arc::new(Mutex::new(CaptureFile {
            writer,
            flushed: std::time::Instant::now(),
        }))))
    }
    pub fn write(&self, pkt: &[u8]) {
        if let Ok(mut f) = self.0.lock() {
            let _ = f.writer.write_packet(SystemTime::now(), pkt);
        }
    }
    /// Flushes if the last flush is [`PCAP_FLUSH`] old; the loops call it every turn.
    pub fn tick(&self) {
        if let Ok(mut f) = self.0.lock() {
            if f.flushed.elapsed() >= PCAP_FLUSH {
                let _ = f.writer.flush();
                f.flushed = std::time::Instant::now();
            }
        }
    }
    pub fn flush(&self) {
        if let Ok(mut f) = self.0.lock() {
            let _ = f.writer.flush();
        }
    }
}

/// A control-socket error answer for an error of the core (same FreeBSD numbering; `EIO`
/// for one the protocol cannot name).
pub fn errno_answer(e: hydranet_core::Errno, what: &str) -> hydranet_syscalls::ctl::Response {
    hydranet_syscalls::ctl::Response::Err(
        hydranet_syscalls::Errno::from_code(e.code()).unwrap_or(hydranet_syscalls::Errno::EIO),
        what.to_string(),
    )
}

/// A daemon's TOML configuration file; errors name the file.
pub fn load_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `field=value` pairs of a `Debug`-formatted counters struct (`Name { a: 1, b: 2 }`), each
/// key prefixed: the core's counter structs all derive `Debug`, so this keeps the daemons'
/// `counters` answer complete as fields are added.
pub fn debug_fields(prefix: &str, debug: &str) -> Vec<String> {
    let inner = match (debug.find('{'), debug.rfind('}')) {
        (Some(a), Some(b)) if a < b => &debug[a + 1..b],
        _ => return Vec::new(),
    };
    inner
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some(format!("{prefix}{}={}", k.trim(), v.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    #[allow(dead_code)] // read through Debug, which the lint does not count
    struct Counters {
        a: u64,
        bb: u64,
    }

    #[test]
    fn debug_fields_lists_every_field() {
        let c = Counters { a: 1, bb: 22 };
        assert_eq!(
            debug_fields("x.", &format!("{c:?}")),
            vec!["x.a=1".to_string(), "x.bb=22".to_string()]
        );
        assert!(debug_fields("x.", "nothing").is_empty());
    }

    #[test]
    fn clock_until_is_capped_and_never_negative() {
        let c = Clock::start();
        let cap = Duration::from_millis(100);
        assert_eq!(c.until(None, cap), cap);
        assert_eq!(
            c.until(Some(hydranet_core::Instant::from_micros(0)), cap),
            Duration::ZERO
        );
        assert_eq!(
            c.until(Some(hydranet_core::Instant::from_micros(u64::MAX / 2)), cap),
            cap
        );
    }
}
