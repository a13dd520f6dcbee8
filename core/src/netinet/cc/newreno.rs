//! NewReno (RFC 5681 + RFC 6582 + RFC 3465 ABC), as FreeBSD's `cc_newreno.c` and the shared
//! `newreno_cc_*` helpers in `cc.c` behave with default sysctls (`rfc3465=1`, `abe=0`, no
//! HyStart++).

use super::{
    grow_cwnd, post_recovery_pipe_limited, slow_start_increment, CcAckType, CcAlgo, CcSignal, CcVar,
};

/// NewReno's per-connection settings (FreeBSD `struct newreno`; there is no other state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NewReno {
    /// Multiplicative decrease on loss, in percent (`net.inet.tcp.cc.newreno.beta`, 50).
    pub beta: u32,
    /// Decrease on ECN when Alternative Backoff with ECN is on (`beta_ecn`, 80).
    pub beta_ecn: u32,
    /// RFC 8511 ABE (`net.inet.tcp.cc.abe`, off by default).
    pub abe: bool,
}

impl Default for NewReno {
    fn default() -> Self {
        NewReno {
            beta: 50,
            beta_ecn: 80,
            abe: false,
        }
    }
}

impl NewReno {
    fn factor(&self, sig: CcSignal) -> u32 {
        let f = if sig == CcSignal::Ecn && self.abe {
            self.beta_ecn
        } else {
            self.beta
        };
        // The sysctl handler rejects 0 and >100; enforce the same range for struct literals.
        f.clamp(1, 100)
    }
}

impl CcAlgo for NewReno {
    fn conn_init(&mut self, _v: &mut CcVar) {}

    fn ack_received(&mut self, v: &mut CcVar, ty: CcAckType) {
        if ty != CcAckType::Ack || v.flags.in_any_recovery() || !v.flags.cwnd_limited {
            return;
        }
        let incr = if v.snd_cwnd > v.snd_ssthresh {
            // Congestion avoidance with ABC: one MSS per cwnd's worth of acknowledged bytes,
            // counted by the framework in t_bytes_acked.
            if v.flags.abc_sentawnd {
                v.flags.abc_sentawnd = false;
                v.mss()
            } else {
                0
            }
        } else {
            slow_start_increment(v)
        };
        grow_cwnd(v, incr);
    }

    fn cong_signal(&mut self, v: &mut CcVar, sig: CcSignal) {
        let factor = u64::from(self.factor(sig));
        // FreeBSD bases the reduction on cwnd, not RFC 5681's FlightSize: with CCF_CWND_LIMITED
        // growth the two are close, and cwnd is what is known at signal time.
        let cwin = v.ssthresh_from(v.snd_cwnd, factor, 100);
        match sig {
            CcSignal::NDupAck => {
                if !v.flags.in_recovery {
                    if v.flags.in_cong_recovery && self.abe {
                        // An ECN reduction already happened this episode: scale it from the ECN
                        // beta to the loss beta rather than reducing twice.
                        let beta_ecn = u64::from(self.beta_ecn.clamp(1, 100));
                        let s = u64::from(v.snd_ssthresh) * u64::from(self.beta.clamp(1, 100))
                            / beta_ecn;
                        v.snd_ssthresh = u32::try_from(s).unwrap_or(u32::MAX);
                    }
                    if !v.flags.in_cong_recovery {
                        v.snd_ssthresh = cwin;
                    }
                    v.flags.enter_recovery();
                }
            }
            CcSignal::Ecn => {
                if !v.flags.in_cong_recovery {
                    v.snd_ssthresh = cwin;
                    v.snd_cwnd = cwin;
                    v.flags.in_cong_recovery = true;
                }
            }
            CcSignal::Rto => {
                // Only the first timeout of a series measures the path; later backoffs would
                // just shrink ssthresh towards 2 MSS on a cwnd of 1 MSS.
                // deviation: t_rxtshift 0 is treated as a first RTO so a caller that signals
                // before incrementing still gets a reduction.
                if v.t_rxtshift <= 1 {
                    let base = v.snd_wnd.min(v.pipe());
                    v.snd_ssthresh = v.ssthresh_from(base, factor, 100);
                }
                v.snd_cwnd = v.mss();
            }
            CcSignal::RtoErr => {}
        }
    }

    fn post_recovery(&mut self, v: &mut CcVar) {
        if v.flags.in_recovery {
            v.snd_cwnd = post_recovery_pipe_limited(v).unwrap_or(v.snd_ssthresh);
        }
    }

    fn after_idle(&mut self, v: &mut CcVar) {
        newreno_after_idle(v);
    }
}

/// FreeBSD `newreno_cc_after_idle`: RFC 5681 §4.1 restart window, and RFC 2861 §2's
/// ssthresh memory of 3/4 of the old cwnd so the restart does not leave slow start early.
pub(crate) fn newreno_after_idle(v: &mut CcVar) {
    let rw = v.initial_window();
    v.snd_ssthresh = v.snd_ssthresh.max(v.snd_cwnd - (v.snd_cwnd >> 2));
    v.snd_cwnd = v.snd_cwnd.min(rw);
}
