//! The `cc_*` wrappers FreeBSD keeps in `tcp_input.c`: they copy the tcpcb fields a
//! congestion-control hook may use into a [`CcVar`], call the hook, and copy the result back.

use crate::netinet::cc::{CcAckType, CcAlgo, CcSignal, CcVar};
use crate::netinet::tcp_seq::Seq;
use crate::netinet::tcp_sysctl::TcpSysctl;
use crate::netinet::tcp_timer::TCP_RTT_SHIFT;
use crate::netinet::tcp_var::TcpCb;

fn ccv(tp: &TcpCb, cfg: &TcpSysctl, ticks: u32) -> CcVar {
    let mut v = CcVar::new(tp.maxseg());
    v.snd_cwnd = tp.snd_cwnd;
    v.snd_ssthresh = tp.snd_ssthresh;
    v.snd_wnd = tp.snd_wnd;
    v.snd_una = tp.snd_una;
    v.snd_nxt = tp.snd_nxt;
    v.snd_max = tp.snd_max;
    v.snd_recover = tp.snd_recover;
    v.snd_scale = tp.snd_scale;
    v.t_rxtshift = tp.t_rxtshift;
    v.t_bytes_acked = tp.t_bytes_acked;
    v.t_srtt_ticks = tp.t_srtt >> TCP_RTT_SHIFT;
    v.ticks = ticks;
    v.flags = tp.cc_flags;
    v.flags.use_sack = tp.has_flag(crate::netinet::tcp_var::tf::SACK_PERMIT);
    v.sacked_bytes = tp.snd_holes.sacked_bytes();
    v.sack_bytes_rexmit = tp.snd_holes.sack_bytes_rexmit;
    v.snd_cwnd_prev = tp.snd_cwnd_prev;
    v.snd_ssthresh_prev = tp.snd_ssthresh_prev;
    v.snd_recover_prev = tp.snd_recover_prev;
    v.abc_l_var = cfg.abc_l_var;
    v.initial_window_segs = cfg.initcwnd_segments;
    v
}

fn store(tp: &mut TcpCb, v: &CcVar) {
    tp.snd_cwnd = v.snd_cwnd;
    tp.snd_ssthresh = v.snd_ssthresh;
    tp.snd_recover = v.snd_recover;
    tp.snd_nxt = v.snd_nxt;
    tp.t_rxtshift = v.t_rxtshift;
    tp.t_bytes_acked = v.t_bytes_acked;
    tp.cc_flags = v.flags;
    tp.snd_cwnd_prev = v.snd_cwnd_prev;
    tp.snd_ssthresh_prev = v.snd_ssthresh_prev;
    tp.snd_recover_prev = v.snd_recover_prev;
}

/// `cc_conn_init`.
pub fn cc_conn_init(tp: &mut TcpCb, cfg: &TcpSysctl, ticks: u32) {
    let mut v = ccv(tp, cfg, ticks);
    tp.cc.conn_init(&mut v);
    store(tp, &v);
}

/// `cc_ack_received`: `th_ack` is the ACK being processed (FreeBSD's `ccv->curack`).
pub fn cc_ack_received(
    tp: &mut TcpCb,
    cfg: &TcpSysctl,
    ticks: u32,
    th_ack: Seq,
    bytes_this_ack: u32,
    nsegs: u32,
    ty: CcAckType,
) {
    let mut v = ccv(tp, cfg, ticks);
    v.snd_una = th_ack;
    v.bytes_this_ack = bytes_this_ack;
    v.nsegs = nsegs.max(1);
    tp.cc.ack_received(&mut v, ty);
    store(tp, &v);
}

/// `cc_cong_signal`.
pub fn cc_cong_signal(
    tp: &mut TcpCb,
    cfg: &TcpSysctl,
    ticks: u32,
    th_ack: Option<Seq>,
    sig: CcSignal,
) {
    let mut v = ccv(tp, cfg, ticks);
    if let Some(a) = th_ack {
        v.snd_una = a;
    }
    tp.cc.cong_signal(&mut v, sig);
    store(tp, &v);
}

/// `cc_post_recovery`.
pub fn cc_post_recovery(tp: &mut TcpCb, cfg: &TcpSysctl, ticks: u32, th_ack: Seq) {
    let mut v = ccv(tp, cfg, ticks);
    v.snd_una = th_ack;
    tp.cc.post_recovery(&mut v);
    store(tp, &v);
}

/// `cc_after_idle`.
pub fn cc_after_idle(tp: &mut TcpCb, cfg: &TcpSysctl, ticks: u32) {
    let mut v = ccv(tp, cfg, ticks);
    tp.cc.after_idle(&mut v);
    store(tp, &v);
}
