//! Per-stack counters, named after FreeBSD's `struct tcpstat` (and `ipstat` for the IP layer),
//! so that `netstat -s -p tcp` readers recognise them. Every dropped input increments one.

macro_rules! counters {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name { $($(#[$fm])* pub $field: u64,)* }

        impl $name {
            /// Every counter with its name, for status output.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$((stringify!($field), self.$field)),*].into_iter()
            }
        }
    };
}

counters!(
    /// `struct tcpstat`.
    TcpStat {
        connattempt, accepts, connects, drops, conndrops, closed, segstimed, rttupdated,
        delack, timeoutdrop, rexmttimeo, persisttimeo, keeptimeo, keepprobe, keepdrops,
        sndtotal, sndpack, sndbyte, sndrexmitpack, sndrexmitbyte, sndacks, sndprobe, sndurg,
        sndwinup, sndctrl, sndrexmitbad,
        rcvtotal, rcvpack, rcvbyte, rcvbadsum, rcvbadoff, rcvreassfull, rcvshort, rcvduppack,
        rcvdupbyte, rcvpartduppack, rcvpartdupbyte, rcvoopack, rcvoobyte, rcvpackafterwin,
        rcvbyteafterwin, rcvafterclose, rcvwinprobe, rcvdupack, rcvacktoomuch, rcvghostack,
        rcvacktooold, rcvackpack,
        rcvackbyte, rcvwinupd, pawsdrop, predack, preddat, persistdrop, badsyn, listendrop,
        badrst, synchallenge, rstchallenge, sack_recovery_episode, sack_rexmits,
        sack_rexmit_bytes, sack_rcv_blocks, sack_send_blocks, sack_sboverflow,
        ecn_ce, ecn_ect0, ecn_ect1, ecn_shs, ecn_rcwnd,
        sc_added, sc_retransmitted, sc_dupsyn, sc_dropped, sc_completed, sc_bucketoverflow,
        sc_cacheoverflow, sc_reset, sc_stale, sc_aborted, sc_badack, sc_unreach, sc_zonefail,
        sc_sendcookie, sc_recvcookie, sc_spurcookie, sc_failcookie,
        tw_recycles, tw_resets, finwait2_drops, rcvmemdrop, noport, nopcbmem,
        /// Replies lost because the reply queue was full (not in FreeBSD).
        sndreplydrop,
        /// Segments generated and suppressed by a silent (backup) port (HydraNet-FT).
        sndmuted,
    }
);

counters!(
    /// `struct ipstat`: the IP layer's view of what the stack received.
    IpStat {
        total, badsum, tooshort, toosmall, badhlen, badlen, fragments, noproto, delivered,
        localout, odropped, badvers, notmember, toolong,
    }
);
