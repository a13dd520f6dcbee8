/*
 * hydranet.h - the C ABI of the HydraNet-FT system calls.
 *
 * NOT YET IMPLEMENTED. This header declares the interface that applications of a host server
 * will call; no library or kernel module provides these symbols yet. The Linux backend (a request
 * to the host-server daemon over its control socket) arrives with issue 4, the FreeBSD backend
 * (the kernel module's syscalls, found with modfind(2)/modstat(2)) with issue 7. Until then the
 * Rust API in hydranet-syscalls returns ENOSYS, and a program linked against these declarations
 * would fail to link.
 *
 * Conventions: as system calls do, every function returns 0 on success and -1 with errno set on
 * failure. Errno values are FreeBSD's (EINVAL 22, ENOSYS 78). All integers are fixed-width.
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

/*
 * The failure detector of a fault-tolerant port: four uint32_t, 16 bytes, no padding
 * (the Rust struct DetectorParams, #[repr(C)]).
 *
 * Valid when every field is non-zero and heartbeat_timeout_ms > heartbeat_interval_ms;
 * otherwise setportopt() fails with EINVAL.
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
 * to that virtual host.
 * Errors: EINVAL (unspecified, broadcast or multicast address), ENOSYS (not implemented yet).
 */
int v_host(uint32_t ip_address);

/*
 * setportopt(port, mode, params): puts port (host byte order) of the caller's virtual host into
 * mode (HYDRANET_PORT_*) with the failure-detector params (ignored, and may be NULL, for
 * HYDRANET_PORT_NORMAL).
 * Errors: EINVAL (port 0, unknown mode, invalid or NULL params for a fault-tolerant mode),
 * ENOSYS (not implemented yet).
 */
int setportopt(uint16_t port, uint32_t mode, const struct hydranet_detector_params *params);

#ifdef __cplusplus
}
#endif

#endif /* HYDRANET_H */
