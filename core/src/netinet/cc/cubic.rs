//! CUBIC (RFC 9438), organised like FreeBSD's `cc_cubic.c` but in integer arithmetic only.
//!
//! The constants are exact rationals rather than FreeBSD's 8-bit fixed point: β = 7/10,
//! C = 2/5, α = 3(1-β)/(1+β) = 9/17 and the fast-convergence factor (1+β)/2 = 17/20. Time is in
//! ms (FreeBSD ticks at hz=1000); K is kept in ms and found with an exact integer cube root.
//! HyStart++ is not implemented.

use super::{
    grow_cwnd, newreno::newreno_after_idle, post_recovery_pipe_limited, slow_start_increment,
    CcAckType, CcAlgo, CcSignal, CcVar,
};

const BETA_NUM: u64 = 7;
const BETA_DEN: u64 = 10;
const FC_NUM: u64 = 17;
const FC_DEN: u64 = 20;
const ALPHA_NUM: u128 = 9;
const ALPHA_DEN: u128 = 17;
/// C = 0.4 segments/s³ = 2/5.
const C_NUM: i128 = 2;
const C_DEN: i128 = 5;
/// ms³ per s³.
const MS3_PER_S3: i128 = 1_000_000_000;
/// Fractional bits kept in W_est so per-ACK increments well below a byte still add up.
const W_EST_SHIFT: u32 = 16;
/// FreeBSD clamps CUBIC's window at INT_MAX.
const CWND_CAP: u32 = i32::MAX as u32;
/// Largest |t - K| in ms the cubic term is evaluated for: 2^31 ms is ~24.8 days, and with it
/// `C * d³ * mss` stays below 2^127.
const MAX_DT_MS: i128 = 1 << 31;

/// Exact integer cube root: the largest `y` with `y³ <= x`.
///
/// Binary long-division style (Hacker's Delight `icbrt64`): one result bit per 3 input bits.
pub fn icbrt(x: u64) -> u64 {
    let mut rem = x;
    let mut y: u64 = 0;
    let mut s: i32 = 63;
    while s >= 0 {
        y <<= 1;
        // (2y+1)³ - (2y)³ scaled: 3y(y+1)+1 at this bit position. y < 2^22 so this cannot
        // overflow, and the comparison against rem >> s avoids shifting b out of range.
        let b = 3 * y * (y + 1) + 1;
        if (rem >> s) >= b {
            rem -= b << s;
            y += 1;
        }
        s -= 3;
    }
    y
}

/// K (RFC 9438 eq. 2) in ms for a window shortfall `w_max - cwnd_epoch` of `deficit` bytes:
/// `cbrt(deficit / (C * mss))` seconds.
pub fn cubic_k_ms(deficit: u32, mss: u32) -> u32 {
    let mss = u128::from(mss.max(1));
    // deficit * 1e9 * 5/2 / mss fits u64 for every u32 input; saturate anyway.
    let ms3 =
        u128::from(deficit) * (MS3_PER_S3 as u128) * (C_DEN as u128) / ((C_NUM as u128) * mss);
    let root = icbrt(u64::try_from(ms3).unwrap_or(u64::MAX));
    u32::try_from(root).unwrap_or(u32::MAX)
}

/// W_cubic(t) (RFC 9438 eq. 1) in bytes, `t_ms` after the epoch start, clamped to `u32`.
pub fn w_cubic(t_ms: u64, k_ms: u32, w_max: u32, mss: u32) -> u32 {
    let t = i128::from(t_ms.min(u64::from(u32::MAX)));
    let d = (t - i128::from(k_ms)).clamp(-MAX_DT_MS, MAX_DT_MS);
    let delta = C_NUM * d * d * d * i128::from(mss.max(1)) / (C_DEN * MS3_PER_S3);
    let w = i128::from(w_max) + delta;
    u32::try_from(w.clamp(0, i128::from(u32::MAX))).unwrap_or(u32::MAX)
}

fn mul_div(x: u32, num: u64, den: u64) -> u32 {
    u32::try_from(u64::from(x) * num / den.max(1)).unwrap_or(u32::MAX)
}

/// The part of CUBIC's state a spurious RTO must be able to roll back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct CubicState {
    /// W_max: cwnd just before the last reduction (after fast convergence), bytes.
    w_max: u32,
    /// K in ms.
    k_ms: u32,
    /// `ticks` at the start of the current congestion-avoidance epoch.
    t_epoch: u32,
    /// cwnd at the start of the epoch.
    cwnd_epoch: u32,
    /// Reno-friendly estimate W_est in bytes << W_EST_SHIFT.
    w_est_fp: u64,
    /// cwnd when ssthresh was last set (switches α to 1 once W_est reaches it).
    cwnd_prior: u32,
    /// `CUBICFLAG_CONG_EVENT`: a congestion event has anchored W_max.
    cong_event: bool,
    /// `CUBICFLAG_RTO_EVENT`: the next epoch follows an RTO (RFC 9438 §4.8).
    rto_event: bool,
    /// `CUBICFLAG_IN_SLOWSTART`.
    in_slowstart: bool,
    /// `CUBICFLAG_IN_APPLIMIT`.
    in_applimit: bool,
    /// A reduction or idle period ended the epoch; start a new one on the next CA ACK.
    new_epoch: bool,
}

/// CUBIC's per-connection state (FreeBSD `struct cubic`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Cubic {
    st: CubicState,
    undo: CubicState,
    undo_valid: bool,
    num_cong_events: u32,
}

impl Cubic {
    /// W_max in bytes.
    pub fn w_max(&self) -> u32 {
        self.st.w_max
    }
    /// K in ms.
    pub fn k_ms(&self) -> u32 {
        self.st.k_ms
    }
    /// The Reno-friendly estimate W_est in bytes.
    pub fn w_est(&self) -> u32 {
        u32::try_from(self.st.w_est_fp >> W_EST_SHIFT).unwrap_or(u32::MAX)
    }
    /// `ticks` at the start of the current epoch.
    pub fn t_epoch(&self) -> u32 {
        self.st.t_epoch
    }
    pub fn num_cong_events(&self) -> u32 {
        self.num_cong_events
    }

    /// Begin a congestion-avoidance epoch at the current cwnd (RFC 9438 §4.2, t_epoch).
    fn start_epoch(&mut self, v: &CcVar) {
        let cwnd = v.snd_cwnd;
        if !self.st.cong_event || self.st.rto_event {
            // RFC 9438 §4.8 (after an RTO) and §4.10 (slow start left without loss): there is no
            // loss-derived W_max, so the curve starts at its inflection point (K = 0).
            // deviation: FreeBSD instead keeps raising W_max to cwnd on every CA ACK until the
            // first congestion event.
            self.st.w_max = cwnd;
            if !self.st.cong_event {
                self.st.cwnd_prior = cwnd;
            }
            self.st.rto_event = false;
        }
        self.st.t_epoch = v.ticks;
        self.st.cwnd_epoch = cwnd;
        self.st.w_est_fp = u64::from(cwnd) << W_EST_SHIFT;
        self.st.k_ms = cubic_k_ms(self.st.w_max.saturating_sub(cwnd), v.mss());
        self.st.in_slowstart = false;
        self.st.in_applimit = false;
        self.st.new_epoch = false;
    }

    /// One CA ACK (RFC 9438 §4.2-4.4).
    fn congestion_avoidance(&mut self, v: &mut CcVar) {
        let mss = v.mss();
        let cwnd = v.snd_cwnd.max(1);
        let mut elapsed = v.ticks.wrapping_sub(self.st.t_epoch);
        if elapsed > i32::MAX as u32 {
            // Either time went backwards or the epoch is older than half the tick space: pin t
            // at the largest value and drag t_epoch along, as FreeBSD does.
            elapsed = i32::MAX as u32;
            self.st.t_epoch = v.ticks.wrapping_sub(elapsed);
        }
        let t = u64::from(elapsed);
        let w_cubic_now = w_cubic(t, self.st.k_ms, self.st.w_max, mss);
        // The window one RTT ahead, limited to [cwnd, 1.5 cwnd] so a long pause cannot make a
        // single ACK release a burst.
        let target = w_cubic(
            t + u64::from(v.t_srtt_ticks),
            self.st.k_ms,
            self.st.w_max,
            mss,
        )
        .clamp(cwnd, cwnd.saturating_add(cwnd / 2));

        // W_est grows like Reno with α = 9/17 per cwnd acknowledged, and like Reno proper (α = 1)
        // once it has regained the window held before the last reduction.
        let acked = u128::from(v.bytes_this_ack);
        let (a_num, a_den) = if self.w_est() >= self.st.cwnd_prior {
            (1, 1)
        } else {
            (ALPHA_NUM, ALPHA_DEN)
        };
        let inc = (a_num * acked * u128::from(mss)) << W_EST_SHIFT;
        let inc = inc / (a_den * u128::from(cwnd));
        let cap = u64::from(u32::MAX) << W_EST_SHIFT;
        self.st.w_est_fp = self
            .st
            .w_est_fp
            .saturating_add(u64::try_from(inc).unwrap_or(u64::MAX))
            .min(cap);
        let w_est = self.w_est();

        let new = if w_cubic_now < w_est {
            // Reno-friendly region: never do worse than standard TCP would.
            cwnd.max(w_est)
        } else {
            // Concave / convex region: close (target - cwnd)/cwnd per segment acknowledged.
            let gap = target - cwnd;
            let step = u64::from(gap) * u64::from(v.bytes_this_ack) / u64::from(cwnd);
            cwnd.saturating_add(u32::try_from(step).unwrap_or(u32::MAX).min(gap))
        };
        if new > v.snd_cwnd && v.snd_cwnd < CWND_CAP {
            v.snd_cwnd = new.min(CWND_CAP);
        }
    }

    /// Multiplicative decrease and fast convergence (RFC 9438 §4.6, §4.7).
    fn reduce(&mut self, v: &mut CcVar) {
        let cwnd = v.snd_cwnd;
        // deviation: FreeBSD halves ssthresh (and shrinks W_max to 0.7 cwnd) on the very first
        // congestion event; RFC 9438 applies β = 0.7 every time, which is what is done here.
        self.st.w_max = if cwnd < self.st.w_max {
            mul_div(cwnd, FC_NUM, FC_DEN)
        } else {
            cwnd
        };
        self.st.cwnd_prior = cwnd;
        self.st.cong_event = true;
        self.st.new_epoch = true;
        self.num_cong_events = self.num_cong_events.saturating_add(1);
        // FreeBSD, like many stacks, uses cwnd here where RFC 9438 says flight size.
        v.snd_ssthresh = mul_div(cwnd, BETA_NUM, BETA_DEN).max(v.mss().saturating_mul(2));
    }
}

impl CcAlgo for Cubic {
    fn conn_init(&mut self, v: &mut CcVar) {
        *self = Cubic::default();
        // A sane W_max from the start (FreeBSD: needed when the hostcache seeds ssthresh).
        self.st.w_max = v.snd_cwnd;
        self.st.t_epoch = v.ticks;
    }

    fn ack_received(&mut self, v: &mut CcVar, ty: CcAckType) {
        if ty != CcAckType::Ack || v.flags.in_any_recovery() {
            return;
        }
        if !v.flags.cwnd_limited {
            // The curve assumes the window was in use; restart the epoch when it is again.
            self.st.in_applimit = true;
            return;
        }
        // Like FreeBSD, stay in slow start until there is an RTT to place the curve in time.
        if v.snd_cwnd <= v.snd_ssthresh || v.t_srtt_ticks == 0 {
            self.st.in_slowstart = true;
            grow_cwnd(v, slow_start_increment(v));
            return;
        }
        if self.st.in_slowstart || self.st.in_applimit || self.st.new_epoch {
            self.start_epoch(v);
        }
        // CUBIC does its own CA accounting; stop the framework's ABC flag from piling up.
        v.flags.abc_sentawnd = false;
        self.congestion_avoidance(v);
    }

    fn cong_signal(&mut self, v: &mut CcVar, sig: CcSignal) {
        match sig {
            CcSignal::NDupAck => {
                if !v.flags.in_recovery {
                    if !v.flags.in_cong_recovery {
                        self.reduce(v);
                    }
                    v.flags.enter_recovery();
                }
            }
            CcSignal::Ecn => {
                if !v.flags.in_cong_recovery {
                    self.reduce(v);
                    v.snd_cwnd = v.snd_ssthresh;
                    v.flags.in_cong_recovery = true;
                }
            }
            CcSignal::Rto => {
                // Only the first timeout of a series is measured and can be undone.
                if v.t_rxtshift <= 1 {
                    self.undo = self.st;
                    self.undo_valid = true;
                    self.st.cwnd_prior = v.snd_cwnd;
                    let base = v.snd_wnd.min(v.pipe());
                    v.snd_ssthresh = v.ssthresh_from(base, BETA_NUM, BETA_DEN);
                }
                self.st.cong_event = true;
                self.st.rto_event = true;
                self.num_cong_events = self.num_cong_events.saturating_add(1);
                v.snd_cwnd = v.mss();
            }
            CcSignal::RtoErr => {
                if self.undo_valid {
                    // deviation: FreeBSD clears CONG_EVENT/RTO_EVENT outright, so the next loss
                    // would count as a first one; restoring the saved flags keeps the history.
                    self.st = self.undo;
                    self.undo_valid = false;
                    self.num_cong_events = self.num_cong_events.saturating_sub(1);
                }
            }
        }
    }

    fn post_recovery(&mut self, v: &mut CcVar) {
        if v.flags.in_recovery {
            // deviation: FreeBSD resumes at max(β·W_max, 2 MSS), which fast convergence can put
            // below ssthresh; RFC 9438 §4.6 resumes at ssthresh itself.
            v.snd_cwnd = post_recovery_pipe_limited(v)
                .unwrap_or_else(|| v.snd_ssthresh.max(v.mss().saturating_mul(2)));
        }
        self.st.new_epoch = true;
    }

    fn after_idle(&mut self, v: &mut CcVar) {
        // Keep the window probed so far as the plateau the next epoch aims for.
        self.st.w_max = self.st.w_max.max(v.snd_cwnd);
        newreno_after_idle(v);
        self.st.new_epoch = true;
    }
}
