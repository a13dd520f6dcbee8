/*
 * hydranet_rs.h - the boundary between the C shim and the Rust static library
 * (platform-freebsd/src/ffi.rs). Keep the two in step.
 */
#ifndef HYDRANET_RS_H
#define HYDRANET_RS_H

/* Verdicts of hn_pfil_in(). */
#define HN_PASS		0
#define HN_CONSUMED	1
#define HN_DROPPED	2

/* Privileges hn_k_priv_check() is asked about (Rust: kernel::Privilege). */
#define HN_PRIV_VHOST		1
#define HN_PRIV_CONFIGURE	2

/* Relay events (Rust: module::RelayEvent). */
#define HN_RELAY_CONNECTED	1
#define HN_RELAY_EOF		2
#define HN_RELAY_ERROR		3

#define HN_MAX_SEGS	32	/* Rust: ffi::MAX_SEGS */
#define HN_MAX_LINE	4096	/* Rust: ctl::MAX_LINE */
#define HN_MAX_RELAYS	32	/* Rust: module::MAX_RELAYS */

struct hn_seg {
	const uint8_t	*data;
	size_t		 len;
};

/* Entry points (Rust). All but hn_sys_* expect hn_mtx held. */
int	hn_mod_load(uint32_t addr_be);
int	hn_mod_quiesce(void);
void	hn_mod_unload(void);
int	hn_pfil_in(const struct hn_seg *segs, size_t nsegs);
void	hn_callout_fire(void);
int	hn_sys_v_host(int pid, uint64_t ip);
int	hn_sys_setportopt(int pid, uint64_t port, uint64_t mode, uint64_t uparams);
int	hn_sys_ctl(int pid, uint64_t ureq, uint64_t reqlen, uint64_t uresp, uint64_t resplen,
	    uint8_t *scratch, size_t scratchlen, int64_t *retval);
void	hn_proc_fork(int parent, int child);
void	hn_proc_exit(int pid);
size_t	hn_relay_pull(int id, uint8_t *buf, size_t cap, int *eof);
void	hn_relay_consumed(int id, size_t n);
size_t	hn_relay_room(int id);
size_t	hn_relay_push(int id, const uint8_t *data, size_t len);
void	hn_relay_event(int id, int ev);

/* Kernel services (C), called from Rust. */
uint64_t hn_k_now_us(void);
uint64_t hn_k_wall_secs(void);
void	hn_k_random(uint8_t *buf, size_t len);
int	hn_k_ip_output(const uint8_t *pkt, size_t len);
void	hn_k_callout_reset(uint64_t delay_us);
void	hn_k_callout_stop(void);
int	hn_k_copyin(uint64_t uaddr, uint8_t *dst, size_t len);
int	hn_k_copyout(const uint8_t *src, uint64_t uaddr, size_t len);
int	hn_k_priv_check(int what);
int	hn_k_relay_open(int id, uint32_t addr_be, uint16_t port);
void	hn_k_relay_kick(int id);
void	hn_k_relay_close(int id);
void	hn_k_log(int level, const uint8_t *msg, size_t len);
void	hn_k_lock(void);
void	hn_k_unlock(void);
void	hn_k_panic(const uint8_t *msg, size_t len) __dead2;
void	*hn_k_malloc(size_t size, int zero);
void	hn_k_free(void *p);

#endif /* HYDRANET_RS_H */
