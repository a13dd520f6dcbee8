//! The tunables of the TCP stack, one field per FreeBSD sysctl, so that a packetdrill script's
//! `sysctl -w net.inet.tcp.X=Y` line maps onto a field by name.

use crate::Errno;

/// Which congestion-control module new connections use (`net.inet.tcp.cc.algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CcKind {
    NewReno,
    Cubic,
}

/// `net.inet.tcp.*` and the few `kern.ipc.*` values TCP consults. Times are in milliseconds, as
/// FreeBSD exports them.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpSysctl {
    /// `net.inet.tcp.rfc1323`: 0 off, 1 window scaling and timestamps, 2 scaling only, 3 timestamps only.
    pub rfc1323: u8,
    /// `net.inet.tcp.tolerate_missing_ts`: accept segments without a timestamp after it was negotiated.
    pub tolerate_missing_ts: bool,
    pub sack_enable: bool,
    /// `net.inet.tcp.ecn.enable`: 0 off, 1 request and accept, 2 accept only.
    pub ecn_enable: u8,
    pub ecn_maxretries: u32,
    /// `net.inet.tcp.blackhole`: 0 reply RST to closed ports, 1 drop SYNs only, 2 drop everything.
    pub blackhole: u8,
    pub drop_synfin: bool,
    pub insecure_rst: bool,
    pub insecure_syn: bool,
    /// `net.inet.tcp.insecure_ack`: skip the RFC 5961 section 5 ACK validation (an ACK below
    /// `snd_una - max_sndwnd`, or below the ISS early on, normally draws a challenge ACK).
    pub insecure_ack: bool,
    pub recvspace: u32,
    pub sendspace: u32,
    /// `kern.ipc.maxsockbuf`.
    pub maxsockbuf: u64,
    pub rexmit_initial: u32,
    pub rexmit_min: u32,
    pub rexmit_slop: u32,
    pub rexmit_drop_options: bool,
    pub keepinit: u32,
    pub keepidle: u32,
    pub keepintvl: u32,
    pub keepcnt: u32,
    /// `net.inet.tcp.always_keepalive`.
    pub always_keepalive: bool,
    pub delayed_ack: bool,
    pub delacktime: u32,
    /// `net.inet.tcp.msl`.
    pub msl: u32,
    /// `net.inet.tcp.finwait2_timeout`.
    pub finwait2_timeout: u32,
    /// `net.inet.tcp.fast_finwait2_recycle`.
    pub fast_finwait2_recycle: bool,
    pub mssdflt: u32,
    pub minmss: u32,
    pub initcwnd_segments: u32,
    pub abc_l_var: u32,
    pub syncookies: bool,
    pub syncookies_only: bool,
    /// `net.inet.tcp.syncache.rexmtlimit`.
    pub syncache_rexmtlimit: u32,
    /// `net.inet.tcp.ack_war_timewindow` (ms) and `ack_war_cnt`: challenge-ACK rate limit.
    pub ack_war_timewindow: u32,
    pub ack_war_cnt: u32,
    /// `net.inet.tcp.cc.algorithm`.
    pub cc_algorithm: CcKind,
    /// `net.inet.tcp.do_tso`-style knobs are absent: the core never offloads.
    /// `net.inet.tcp.path_mtu_discovery`: sets DF on outgoing segments.
    pub path_mtu_discovery: bool,
}

impl Default for TcpSysctl {
    fn default() -> Self {
        TcpSysctl {
            rfc1323: 1,
            tolerate_missing_ts: true,
            sack_enable: true,
            ecn_enable: 2,
            ecn_maxretries: 1,
            blackhole: 0,
            drop_synfin: false,
            insecure_rst: false,
            insecure_syn: false,
            insecure_ack: false,
            recvspace: 65536,
            sendspace: 32768,
            maxsockbuf: 2 * 1024 * 1024,
            rexmit_initial: 1000,
            rexmit_min: 30,
            rexmit_slop: 200,
            rexmit_drop_options: false,
            keepinit: 75_000,
            keepidle: 7_200_000,
            keepintvl: 75_000,
            keepcnt: 8,
            always_keepalive: true,
            delayed_ack: true,
            delacktime: 40,
            msl: 30_000,
            finwait2_timeout: 60_000,
            fast_finwait2_recycle: false,
            mssdflt: 536,
            minmss: 216,
            initcwnd_segments: 10,
            abc_l_var: 2,
            syncookies: true,
            syncookies_only: false,
            syncache_rexmtlimit: 3,
            ack_war_timewindow: 1000,
            ack_war_cnt: 5,
            cc_algorithm: CcKind::NewReno,
            path_mtu_discovery: true,
        }
    }
}

impl TcpSysctl {
    pub fn do_rfc1323_scale(&self) -> bool {
        self.rfc1323 == 1 || self.rfc1323 == 2
    }
    pub fn do_rfc1323_ts(&self) -> bool {
        self.rfc1323 == 1 || self.rfc1323 == 3
    }

    /// Applies `name=value` as `sysctl -w` would. Unknown names give `ENOENT`, out-of-range
    /// values `EINVAL`.
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), Errno> {
        fn ms(v: i64) -> Result<u32, Errno> {
            u32::try_from(v).map_err(|_| Errno::EINVAL)
        }
        fn flag(v: i64) -> Result<bool, Errno> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(Errno::EINVAL),
            }
        }
        fn small(v: i64, max: u8) -> Result<u8, Errno> {
            u8::try_from(v)
                .ok()
                .filter(|x| *x <= max)
                .ok_or(Errno::EINVAL)
        }
        let name = name.strip_prefix("net.inet.tcp.").unwrap_or(name);
        match name {
            "rfc1323" => self.rfc1323 = small(value, 3)?,
            "tolerate_missing_ts" => self.tolerate_missing_ts = flag(value)?,
            "sack.enable" => self.sack_enable = flag(value)?,
            "ecn.enable" => self.ecn_enable = small(value, 2)?,
            "ecn.maxretries" => self.ecn_maxretries = ms(value)?,
            "blackhole" => self.blackhole = small(value, 2)?,
            "drop_synfin" => self.drop_synfin = flag(value)?,
            "insecure_rst" => self.insecure_rst = flag(value)?,
            "insecure_syn" => self.insecure_syn = flag(value)?,
            "insecure_ack" => self.insecure_ack = flag(value)?,
            "recvspace" => self.recvspace = ms(value)?.max(1),
            "sendspace" => self.sendspace = ms(value)?.max(1),
            "kern.ipc.maxsockbuf" => {
                if value < 2048 {
                    return Err(Errno::EINVAL);
                }
                self.maxsockbuf = value as u64;
            }
            "rexmit_initial" => self.rexmit_initial = ms(value)?.max(1),
            "rexmit_min" => self.rexmit_min = ms(value)?.max(1),
            "rexmit_slop" => self.rexmit_slop = ms(value)?,
            "rexmit_drop_options" => self.rexmit_drop_options = flag(value)?,
            "keepinit" => self.keepinit = ms(value)?.max(1),
            "keepidle" => self.keepidle = ms(value)?.max(1),
            "keepintvl" => self.keepintvl = ms(value)?.max(1),
            "keepcnt" => self.keepcnt = ms(value)?.max(1),
            "always_keepalive" => self.always_keepalive = flag(value)?,
            "delayed_ack" => self.delayed_ack = flag(value)?,
            "delacktime" => self.delacktime = ms(value)?.max(1),
            "msl" => self.msl = ms(value)?.max(1),
            "finwait2_timeout" => self.finwait2_timeout = ms(value)?,
            "fast_finwait2_recycle" => self.fast_finwait2_recycle = flag(value)?,
            "mssdflt" => self.mssdflt = ms(value)?.clamp(32, 65535),
            "minmss" => self.minmss = ms(value)?.clamp(32, 65535),
            "initcwnd_segments" => self.initcwnd_segments = ms(value)?.clamp(1, 1000),
            "abc_l_var" => self.abc_l_var = ms(value)?.max(1),
            "syncookies" => self.syncookies = flag(value)?,
            "syncookies_only" => self.syncookies_only = flag(value)?,
            "syncache.rexmtlimit" => self.syncache_rexmtlimit = ms(value)?,
            "ack_war_timewindow" => self.ack_war_timewindow = ms(value)?,
            "ack_war_cnt" => self.ack_war_cnt = ms(value)?,
            "path_mtu_discovery" => self.path_mtu_discovery = flag(value)?,
            // deviation: the core keeps no host cache (RTT/MSS memory across connections), so a
            // purge has nothing to do; accepting it keeps scripts that flush it meaningful.
            "hostcache.purgenow" => {}
            "cc.algorithm" => return Err(Errno::EINVAL),
            _ => return Err(Errno::ENOENT),
        }
        Ok(())
    }
}
