//! Packet captures in the classic libpcap format (what `tcpdump -w` writes), so that traces of
//! the harness open in tcpdump and Wireshark.
//!
//! Records are raw IP packets (`LINKTYPE_RAW`), which is exactly what a TUN device carries, with
//! microsecond timestamps. Everything is written little-endian; readers tell the byte order
//! from the magic number.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns;

/// Magic of the microsecond-timestamp format.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
pub const VERSION_MAJOR: u16 = 2;
pub const VERSION_MINOR: u16 = 4;
/// Records are IPv4 or IPv6 packets, told apart by the version nibble.
pub const LINKTYPE_RAW: u32 = 101;
pub const SNAPLEN: u32 = 65535;
/// Bytes of the file header and of each record header.
pub const FILE_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;

/// Writes a pcap stream to `W`.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
}

/// Creates (truncates) `path` and writes the file header.
pub fn create(path: &Path) -> io::Result<PcapWriter<BufWriter<File>>> {
    let f = File::create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    PcapWriter::new(BufWriter::new(f))
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `w`.
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut h = [0u8; FILE_HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        h[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // thiszone (GMT offset) and sigfigs stay 0, as every modern writer leaves them.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w })
    }

    /// Appends one packet stamped `ts`; packets longer than the snap length are cut, with the
    /// original length kept in the record header. Times before 1970 are written as 0.
    pub fn write_packet(&mut self, ts: SystemTime, pkt: &[u8]) -> io::Result<()> {
        let since = ts.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        // The format's seconds field is 32 bits; it wraps in 2106.
        let secs = since.as_secs() as u32;
        let usecs = since.subsec_micros();
        let incl = pkt.len().min(SNAPLEN as usize);
        let orig = u32::try_from(pkt.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&usecs.to_le_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(&pkt[..incl])
    }

    /// Pushes buffered records to the file, so that a reader sees them while the capture goes
    /// on (and a process killed with SIGKILL leaves them behind).
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Finds an executable by name in `$PATH` and the sbin folders (which root's `$PATH` may lack
/// under some launchers).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Starts `tcpdump` on interface `ifname` of namespace `ns`, writing to `path` packet by packet
/// (`-U`), and returns once it is capturing. `NotFound` when tcpdump is not installed. The
/// caller ends it by pid (SIGINT or SIGTERM lets it finish the file) and waits for it. A packet
/// that crossed the interface just before the signal may not be in the file yet: tcpdump only
/// writes what it has handled, so stop it a moment after the last packet that matters.
///
/// tcpdump keeps root (`-Z root`): dropping to its own user before opening `path` would fail
/// for files in root-only folders. `--immediate-mode` hands each packet over as it comes:
/// otherwise the kernel passes packets in blocks, up to a second late, and those still in the
/// ring when tcpdump is stopped never reach the file ("N received by filter, 0 captured").
pub fn capture_iface(ns: &str, ifname: &str, path: &Path) -> io::Result<Child> {
    let Some(tcpdump) = find_program("tcpdump") else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "tcpdump is not installed",
        ));
    };
    let mut child = netns::command(ns, &tcpdump)
        .args([
            "-i",
            ifname,
            "-U",
            "--immediate-mode",
            "-n",
            "-Z",
            "root",
            "-w",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    match wait_listening(&mut child) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::new(
                e.kind(),
                format!("tcpdump -i {ifname} in {ns}: {e}"),
            ))
        }
    }
}

/// Reads tcpdump's stderr until it says it is listening: packets sent before that are not
/// captured. The pipe is handed back to the child afterwards; tcpdump writes only a few lines
/// more (its exit summary), which the pipe buffer holds.
fn wait_listening(child: &mut Child) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let result = loop {
        let now = Instant::now();
        if now >= deadline {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "not listening after 10 s: {}",
                    String::from_utf8_lossy(&seen)
                ),
            ));
        }
        let ready = crate::tun::wait_readable(&[stderr.as_raw_fd()], Some(deadline - now))?;
        if !ready[0] {
            continue;
        }
        let mut chunk = [0u8; 512];
        let n = stderr.read(&mut chunk)?;
        if n == 0 {
            let status = child.wait()?;
            break Err(io::Error::other(format!(
                "exited ({status}): {}",
                String::from_utf8_lossy(&seen).trim()
            )));
        }
        seen.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&seen).contains("listening on") {
            break Ok(());
        }
    };
    child.stderr = Some(stderr);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }

    /// A 28-byte IPv4/UDP packet with no payload (checksums zero; tcpdump prints it anyway).
    fn udp_packet(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[203, 0, 113, 10]);
        p[16..20].copy_from_slice(&[192, 0, 2, 80]);
        p[20..22].copy_from_slice(&4000u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
        p
    }

    #[test]
    fn writes_header_and_records() {
        struct TempDir(PathBuf);
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = TempDir(std::env::temp_dir().join(format!("hn-pcap-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("two.pcap");
        let t0 = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let mut w = create(&path).unwrap();
        w.write_packet(t0, &udp_packet(28)).unwrap();
        w.write_packet(t0 + Duration::from_millis(1), &udp_packet(100))
            .unwrap();
        w.flush().unwrap();
        w.finish().unwrap();

        let b = std::fs::read(&path).unwrap();
        assert_eq!(b.len(), FILE_HEADER_LEN + 2 * RECORD_HEADER_LEN + 28 + 100);
        assert_eq!(u32_at(&b, 0), MAGIC_MICROS);
        assert_eq!((u16_at(&b, 4), u16_at(&b, 6)), (2, 4));
        assert_eq!(u32_at(&b, 8), 0);
        assert_eq!(u32_at(&b, 12), 0);
        assert_eq!(u32_at(&b, 16), 65535);
        assert_eq!(u32_at(&b, 20), 101);
        let r1 = FILE_HEADER_LEN;
        assert_eq!(u32_at(&b, r1), 1_700_000_000);
        assert_eq!(u32_at(&b, r1 + 4), 123_456);
        assert_eq!((u32_at(&b, r1 + 8), u32_at(&b, r1 + 12)), (28, 28));
        assert_eq!(b[r1 + RECORD_HEADER_LEN], 0x45);
        let r2 = r1 + RECORD_HEADER_LEN + 28;
        assert_eq!(u32_at(&b, r2 + 4), 124_456);
        assert_eq!((u32_at(&b, r2 + 8), u32_at(&b, r2 + 12)), (100, 100));

        match find_program("tcpdump") {
            None => println!("SKIP: tcpdump not installed; the file was not read back by it"),
            Some(tcpdump) => {
                let out = Command::new(tcpdump)
                    .args(["-n", "-r"])
                    .arg(&path)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "tcpdump -r failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(text.lines().count(), 2, "{text}");
                assert!(text.contains("203.0.113.10.4000 > 192.0.2.80.80"), "{text}");
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("RAW"),
                    "link type: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }

    #[test]
    fn snaps_long_packets() {
        let mut buf = Vec::new();
        let mut w = PcapWriter::new(&mut buf).unwrap();
        w.write_packet(UNIX_EPOCH, &vec![0x45; 70000]).unwrap();
        w.finish().unwrap();
        assert_eq!(u32_at(&buf, FILE_HEADER_LEN + 8), SNAPLEN);
        assert_eq!(u32_at(&buf, FILE_HEADER_LEN + 12), 70000);
        assert_eq!(buf.len(), FILE_HEADER_LEN + RECORD_HEADER_LEN + 65535);
    }
}
