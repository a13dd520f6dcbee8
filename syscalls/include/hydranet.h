/*
 * hydranet.h - the C ABI of the HydraNet-FT system calls.
 *
 * Link with the hydranet-syscalls library: libhydranet_syscalls.a (add -lpthread -ldl -lm) or
 * libhydranet_syscalls.so.
 *
 * Conventions: as system calls do, every function returns 0 on success and -1 with errno set on
 * failure. All integers are fixed-width.
 *
 * ERROR NUMBERS ARE FreeBSD's ON EVERY PLATFORM, Linux included: compare errno with the
 * HYDRANET_E* constants below, not with <errno.h> (on Linux, EADDRNOTAVAIL is 99 and
 * ECONNREFUSED 111, while these calls report 49 and 61). hydranet_strerror() and
 * hydranet_errname() describe them; strerror(3) would describe Linux's meaning of the number.
 *
 * Backends:
 *
 * - Linux: the host server is a user-space daemon. Each call connects to its control socket, a
 *   Unix stream socket at the path in the environment variable HYDRANET_CTL if it is set and not
 *   empty, else at /run/hydranet/host.sock, sends one request line and waits (at most 5 s) for
 *   the answer. v_host() sends "v_host <ip>" and, once the daemon accepted, remembers the
 *   address as the process's virtual host (children inherit it through fork); setportopt()
 *   sends "setportopt <virtual host> <port> <mode> <four detector parameters>". The protocol is
 *   documented in the Rust module hydranet_syscalls::ctl; `hydranet ctl` speaks it by hand.
 * - FreeBSD: the kernel module's system calls (platform-freebsd), found by the names
 *   "sys/v_host" and "sys/setportopt" with modfind(2)/modstat(2) and made with syscall(2);
 *   ENOSYS when the module is not loaded. The kernel knows the calling process, so
 *   setportopt() acts on the virtual host the process (or the parent it was forked from)
 *   bound with v_host(). Group and redirector configuration go through a third call,
 *   "sys/hydranet_ctl", which takes the control protocol's request lines.
 *
 * Errors every call can return on Linux once its arguments are valid, from talking to the
 * daemon: ENOENT (no control socket at the path), ECONNREFUSED (no daemon listens on it),
 * EACCES (no permission to use it), ETIMEDOUT (no answer within 5 s), EIO (the connection broke
 * or the answer was garbled); and any error the daemon answers with (see each call).
 * The calls are thread-safe. SIGPIPE is never raised.
 */
#ifndef HYDRANET_H
#define HYDRANET_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Port modes for setportopt(); the values of the Rust enum PortMode. */
#define HYDRANET_PORT_NORMAL  0u /* plain TCP, no replication (the default) */
#define HYDRANET_PORT_PRIMARY 1u /* the replica whose segments reach the client (rank 0) */
#define HYDRANET_PORT_BACKUP  2u /* a replica with its output suppressed, ready to take over */

/* Error numbers these calls set errno to: FreeBSD's values (the Rust enum Errno). */
#define HYDRANET_EPERM          1 /* operation not permitted */
#define HYDRANET_ENOENT         2 /* no control socket at the path */
#define HYDRANET_EIO            5 /* the daemon's answer was garbled or missing */
#define HYDRANET_EACCES        13 /* permission denied on the control socket */
#define HYDRANET_EEXIST        17 /* already exists */
#define HYDRANET_EINVAL        22 /* invalid argument */
#define HYDRANET_ENOSPC        28 /* a daemon table is full */
#define HYDRANET_EADDRINUSE    48 /* address and port already in use */
#define HYDRANET_EADDRNOTAVAIL 49 /* no such virtual host, or no v_host() call before */
#define HYDRANET_ENOBUFS       55 /* the daemon is out of buffers or connections */
#define HYDRANET_ETIMEDOUT     60 /* the daemon did not answer in time */
#define HYDRANET_ECONNREFUSED  61 /* no daemon listens on the control socket */
#define HYDRANET_ENOSYS        78 /* not implemented on this platform */

/* The environment variable naming the control socket, and its default (Linux). */
#define HYDRANET_CTL_ENV          "HYDRANET_CTL"
#define HYDRANET_DEFAULT_CTL_PATH "/run/hydranet/host.sock"

/*
 * The failure detector of a fault-tolerant port: four uint32_t, 16 bytes, no padding
 * (the Rust struct DetectorParams, #[repr(C)]).
 *
 * Either input may be turned off (retransmit_threshold = 0, or heartbeat_interval_ms = 0) but
 * not both; an input that is on needs retransmit_window_ms >= 1, or heartbeat_timeout_ms >
 * heartbeat_interval_ms; no value above 3600000 (an hour). Otherwise setportopt() fails with
 * EINVAL.
 */
struct hydranet_detector_params {
	uint32_t retransmit_threshold;  /* client retransmissions (count) within the window ... */
	uint32_t retransmit_window_ms;  /* ... of this many milliseconds declare the primary dead */
	uint32_t heartbeat_interval_ms; /* milliseconds between ack-channel heartbeats */
	uint32_t heartbeat_timeout_ms;  /* milliseconds of silence that declare a replica dead */
};

/*
 * v_host(ip_address): binds the calling process and its children to the virtual host whose
 * address is ip_address (IPv4, network byte order). Sockets the process binds afterwards belong
 * to that virtual host. Calling it again rebinds the process, if the daemon agrees.
 * Errors: EINVAL (unspecified, broadcast or multicast address; checked before the daemon is
 * contacted), the daemon's refusal (e.g. EADDRNOTAVAIL for an address it will not serve), the
 * connection errors above; ENOSYS where not implemented.
 */
int v_host(uint32_t ip_address);

/*
 * setportopt(port, mode, params): puts port (host byte order) of the caller's virtual host into
 * mode (HYDRANET_PORT_*) with the failure-detector params (ignored, and may be NULL, for
 * HYDRANET_PORT_NORMAL).
 * Errors: EINVAL (port 0, unknown mode, invalid or NULL params for a fault-tolerant mode;
 * checked before the daemon is contacted), EADDRNOTAVAIL (no successful v_host() in this
 * process), the daemon's refusal, the connection errors above; ENOSYS where not implemented.
 */
int setportopt(uint16_t port, uint32_t mode, const struct hydranet_detector_params *params);

/*
 * hydranet_strerror(errnum): a description of one of the HYDRANET_E* numbers (FreeBSD's
 * strerror text), or "Unknown error". A static string; never NULL.
 */
const char *hydranet_strerror(int errnum);

/*
 * hydranet_errname(errnum): the symbolic name of one of the HYDRANET_E* numbers without the
 * prefix ("EINVAL"), or "UNKNOWN". A static string; never NULL.
 */
const char *hydranet_errname(int errnum);

#ifdef __cplusplus
}
#endif

#endif /* HYDRANET_H */
