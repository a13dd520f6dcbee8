//! `setportopt` parameters: the role of a fault-tolerant port and its failure detector.

use crate::time::Duration;
use crate::Errno;

/// The role a port of a virtual host plays (`setportopt`'s `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PortMode {
    /// Plain TCP: no replication.
    Normal,
    /// Rank 0 of the group: the replica whose segments reach the client.
    Primary,
    /// A silent replica that takes over when the primary fails.
    Backup,
}

/// The failure detector's parameters. Two inputs, either of which suspects the primary:
/// the paper's count of client retransmissions within a time window, and ack-channel
/// heartbeats (a client that only receives never retransmits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DetectorParams {
    /// Client retransmissions (segments a backup already holds) that suspect the primary;
    /// 0 turns this input off.
    pub retransmit_threshold: u32,
    /// The window, in milliseconds, within which those retransmissions are counted.
    pub retransmit_window_ms: u32,
    /// How often every replica sends a heartbeat, in milliseconds; 0 turns heartbeats off.
    pub heartbeat_interval_ms: u32,
    /// Silence, in milliseconds, after which a replica is considered dead.
    pub heartbeat_timeout_ms: u32,
}

impl Default for DetectorParams {
    /// The default detector: heartbeats every 10 ms, dead after 30 ms of silence, and two
    /// client retransmissions within a second (a client's RTO is at least about 200 ms and
    /// doubles, so a dead primary shows as two retransmissions within ~700 ms).
    fn default() -> Self {
        DetectorParams {
            retransmit_threshold: 2,
            retransmit_window_ms: 1000,
            heartbeat_interval_ms: 10,
            heartbeat_timeout_ms: 30,
        }
    }
}

impl DetectorParams {
    /// Checks the parameters: `EINVAL` when both inputs are off, when a threshold has no
    /// window, when the timeout is not longer than the interval, or when a value exceeds an
    /// hour (a detector that slow is a misconfiguration).
    pub fn validate(&self) -> Result<(), Errno> {
        const HOUR_MS: u32 = 3_600_000;
        let retransmit_on = self.retransmit_threshold > 0;
        let heartbeat_on = self.heartbeat_interval_ms > 0;
        if !retransmit_on && !heartbeat_on {
            return Err(Errno::EINVAL);
        }
        if retransmit_on && (self.retransmit_window_ms == 0 || self.retransmit_window_ms > HOUR_MS)
        {
            return Err(Errno::EINVAL);
        }
        if heartbeat_on
            && (self.heartbeat_timeout_ms <= self.heartbeat_interval_ms
                || self.heartbeat_timeout_ms > HOUR_MS)
        {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms as u64)
    }
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms as u64)
    }
    pub fn retransmit_window(&self) -> Duration {
        Duration::from_millis(self.retransmit_window_ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(DetectorParams::default().validate(), Ok(()));
        let off = DetectorParams {
            retransmit_threshold: 0,
            heartbeat_interval_ms: 0,
            ..Default::default()
        };
        assert_eq!(off.validate(), Err(Errno::EINVAL));
        let short = DetectorParams {
            heartbeat_timeout_ms: 10,
            ..Default::default()
        };
        assert_eq!(short.validate(), Err(Errno::EINVAL));
        let no_window = DetectorParams {
            retransmit_window_ms: 0,
            ..Default::default()
        };
        assert_eq!(no_window.validate(), Err(Errno::EINVAL));
        let hb_only = DetectorParams {
            retransmit_threshold: 0,
            ..Default::default()
        };
        assert_eq!(hb_only.validate(), Ok(()));
        let rx_only = DetectorParams {
            heartbeat_interval_ms: 0,
            ..Default::default()
        };
        assert_eq!(rx_only.validate(), Ok(()));
    }
}
