/*-
 * SPDX-License-Identifier: BSD-2-Clause
 *
 * hydranet_kmod.c - the thin C shim of the HydraNet-FT kernel module (FreeBSD 14).
 *
 * Only what needs the kernel's headers is here: module events, the three system calls, the
 * inbound pfil(9) hook on the inet head, the one callout(9), mbufs and ip_output(9), the relay
 * sockets (so*(9)) and the process fork/exit events. Everything else, the protocol core
 * included, is the Rust static library (platform-freebsd/src, entry points in ffi.rs).
 *
 * Locking: one mutex, hn_mtx, serialises every call into Rust. pfil hooks and the callout
 * cannot sleep, so it is a plain mutex; the system calls copy their arguments in before
 * taking it (the Rust side does that split), and the relay task drops it around socket calls.
 */

#include <sys/param.h>
#include <sys/systm.h>
#include <sys/eventhandler.h>
#include <sys/kernel.h>
#include <sys/lock.h>
#include <sys/malloc.h>
#include <sys/mbuf.h>
#include <sys/module.h>
#include <sys/mutex.h>
#include <sys/priv.h>
#include <sys/proc.h>
#include <sys/protosw.h>
#include <sys/socket.h>
#include <sys/socketvar.h>
#include <sys/sysent.h>
#include <sys/sysproto.h>
#include <sys/syslog.h>
#include <sys/taskqueue.h>
#include <sys/uio.h>

#include <net/pfil.h>
#include <net/vnet.h>
#include <netinet/in.h>
#include <netinet/in_systm.h>
#include <netinet/ip.h>
#include <netinet/ip_var.h>

#include "hydranet_rs.h"

static MALLOC_DEFINE(M_HYDRANET, "hydranet", "HydraNet-FT module");

static struct mtx hn_mtx;
static struct callout hn_callout;
static pfil_hook_t hn_pfil_hook;
static eventhandler_tag hn_fork_tag, hn_exit_tag;
static struct task hn_relay_task;
static int hn_loaded;

/* ------------------------------------------------------------------ relay sockets */

struct hn_relay {
	struct socket	*so;
	struct sockaddr_in dst;
	int		 want_open;	/* hn_k_relay_open asked; the task connects */
	int		 want_close;	/* hn_k_relay_close asked; the task closes */
	int		 connected;
	int		 shut;		/* SHUT_WR sent to the server */
	int		 eof_sent;
};
static struct hn_relay hn_relays[HN_MAX_RELAYS];

static int
hn_relay_upcall(struct socket *so, void *arg, int waitflag)
{
	/* Socket-buffer lock held here: only schedule the task. */
	taskqueue_enqueue(taskqueue_thread, &hn_relay_task);
	return (SU_OK);
}

static void
hn_relay_connect(int id)
{
	struct hn_relay *r = &hn_relays[id];
	struct socket *so;
	int error;

	error = socreate(PF_INET, &so, SOCK_STREAM, IPPROTO_TCP, curthread->td_ucred,
	    curthread);
	if (error == 0) {
		so->so_state |= SS_NBIO;
		SOCKBUF_LOCK(&so->so_rcv);
		soupcall_set(so, SO_RCV, hn_relay_upcall, NULL);
		SOCKBUF_UNLOCK(&so->so_rcv);
		SOCKBUF_LOCK(&so->so_snd);
		soupcall_set(so, SO_SND, hn_relay_upcall, NULL);
		SOCKBUF_UNLOCK(&so->so_snd);
		error = soconnect(so, (struct sockaddr *)&r->dst, curthread);
		if (error == EINPROGRESS)
			error = 0;
	}
	mtx_lock(&hn_mtx);
	r->so = (error == 0) ? so : NULL;
	mtx_unlock(&hn_mtx);
	if (error != 0) {
		if (so != NULL)
			soclose(so);
		mtx_lock(&hn_mtx);
		hn_relay_event(id, HN_RELAY_ERROR);
		mtx_unlock(&hn_mtx);
	}
}

static void
hn_relay_close_socket(struct socket *so)
{
	SOCKBUF_LOCK(&so->so_rcv);
	if (so->so_rcv.sb_upcall != NULL)
		soupcall_clear(so, SO_RCV);
	SOCKBUF_UNLOCK(&so->so_rcv);
	SOCKBUF_LOCK(&so->so_snd);
	if (so->so_snd.sb_upcall != NULL)
		soupcall_clear(so, SO_SND);
	SOCKBUF_UNLOCK(&so->so_snd);
	soclose(so);
}

/* Moves bytes between the module and the servers; runs on taskqueue_thread, may sleep. */
static void
hn_relay_run(void *arg, int pending)
{
	static uint8_t buf[16384];	/* only this task uses it, one instance at a time */
	struct uio uio;
	struct iovec iov;
	struct socket *so;
	size_t n, room;
	int id, eof, flags, error;

	for (id = 0; id < HN_MAX_RELAYS; id++) {
		struct hn_relay *r = &hn_relays[id];

		mtx_lock(&hn_mtx);
		if (r->want_close) {
			so = r->so;
			r->so = NULL;
			r->want_close = r->want_open = 0;
			mtx_unlock(&hn_mtx);
			if (so != NULL)
				hn_relay_close_socket(so);
			continue;
		}
		if (r->want_open) {
			r->want_open = 0;
			mtx_unlock(&hn_mtx);
			hn_relay_connect(id);
			continue;
		}
		so = r->so;
		mtx_unlock(&hn_mtx);
		if (so == NULL)
			continue;

		if (!r->connected) {
			if (so->so_error != 0) {
				mtx_lock(&hn_mtx);
				hn_relay_event(id, HN_RELAY_ERROR);
				mtx_unlock(&hn_mtx);
				continue;
			}
			if ((so->so_state & SS_ISCONNECTED) == 0)
				continue;
			r->connected = 1;
			mtx_lock(&hn_mtx);
			hn_relay_event(id, HN_RELAY_CONNECTED);
			mtx_unlock(&hn_mtx);
		}

		/* Client -> server. */
		mtx_lock(&hn_mtx);
		n = hn_relay_pull(id, buf, sizeof(buf), &eof);
		mtx_unlock(&hn_mtx);
		if (n > 0) {
			iov.iov_base = buf;
			iov.iov_len = n;
			uio.uio_iov = &iov;
			uio.uio_iovcnt = 1;
			uio.uio_offset = 0;
			uio.uio_resid = n;
			uio.uio_segflg = UIO_SYSSPACE;
			uio.uio_rw = UIO_WRITE;
			uio.uio_td = curthread;
			error = sosend(so, NULL, &uio, NULL, NULL, MSG_DONTWAIT, curthread);
			if (error != 0 && error != EWOULDBLOCK && error != EINTR) {
				mtx_lock(&hn_mtx);
				hn_relay_event(id, HN_RELAY_ERROR);
				mtx_unlock(&hn_mtx);
				continue;
			}
			mtx_lock(&hn_mtx);
			hn_relay_consumed(id, n - uio.uio_resid);
			mtx_unlock(&hn_mtx);
		} else if (eof && !r->shut) {
			r->shut = 1;
			soshutdown(so, SHUT_WR);
		}

		/* Server -> client, no more than the core's socket takes. */
		mtx_lock(&hn_mtx);
		room = hn_relay_room(id);
		mtx_unlock(&hn_mtx);
		if (room == 0 || r->eof_sent)
			continue;
		iov.iov_base = buf;
		iov.iov_len = MIN(room, sizeof(buf));
		uio.uio_iov = &iov;
		uio.uio_iovcnt = 1;
		uio.uio_offset = 0;
		uio.uio_resid = iov.iov_len;
		uio.uio_segflg = UIO_SYSSPACE;
		uio.uio_rw = UIO_READ;
		uio.uio_td = curthread;
		flags = MSG_DONTWAIT;
		error = soreceive(so, NULL, &uio, NULL, NULL, &flags);
		n = iov.iov_len - uio.uio_resid;
		mtx_lock(&hn_mtx);
		if (n > 0)
			(void)hn_relay_push(id, buf, n);
		else if (error == 0) {
			/* Zero bytes without error: the server closed. */
			r->eof_sent = 1;
			hn_relay_event(id, HN_RELAY_EOF);
		} else if (error != EWOULDBLOCK && error != EINTR)
			hn_relay_event(id, HN_RELAY_ERROR);
		mtx_unlock(&hn_mtx);
		if (n > 0)
			taskqueue_enqueue(taskqueue_thread, &hn_relay_task);
	}
}

/* ------------------------------------------------------------------ kernel services */

void
hn_k_lock(void)
{
	mtx_lock(&hn_mtx);
}

void
hn_k_unlock(void)
{
	mtx_unlock(&hn_mtx);
}

uint64_t
hn_k_now_us(void)
{
	return (sbttous(getsbinuptime()));
}

uint64_t
hn_k_wall_secs(void)
{
	return ((uint64_t)time_second);
}

void
hn_k_random(uint8_t *buf, size_t len)
{
	arc4random_buf(buf, len);
}

int
hn_k_ip_output(const uint8_t *pkt, size_t len)
{
	struct mbuf *m;

	if (len < sizeof(struct ip) || len > IP_MAXPACKET)
		return (EINVAL);
	m = m_devget(__DECONST(char *, pkt), len, 0, NULL, NULL);
	if (m == NULL)
		return (ENOBUFS);
	/*
	 * The core built the whole header, checksum included: raw output, as a raw socket
	 * with IP_HDRINCL. The source may be a virtual host's address, which no interface has.
	 */
	return (ip_output(m, NULL, NULL, IP_RAWOUTPUT, NULL, NULL));
}

static void
hn_callout_cb(void *arg)
{
	/* callout_init_mtx: runs with hn_mtx held. */
	hn_callout_fire();
}

void
hn_k_callout_reset(uint64_t delay_us)
{
	mtx_assert(&hn_mtx, MA_OWNED);
	callout_reset_sbt(&hn_callout, ustosbt(delay_us), 0, hn_callout_cb, NULL, 0);
}

void
hn_k_callout_stop(void)
{
	mtx_assert(&hn_mtx, MA_OWNED);
	callout_stop(&hn_callout);
}

int
hn_k_copyin(uint64_t uaddr, uint8_t *dst, size_t len)
{
	return (copyin((const void *)(uintptr_t)uaddr, dst, len));
}

int
hn_k_copyout(const uint8_t *src, uint64_t uaddr, size_t len)
{
	return (copyout(src, (void *)(uintptr_t)uaddr, len));
}

int
hn_k_priv_check(int what)
{
	switch (what) {
	case HN_PRIV_VHOST:
		return (priv_check(curthread, PRIV_NET_ADDIFADDR));
	case HN_PRIV_CONFIGURE:
		return (priv_check(curthread, PRIV_NET_ROUTE));
	default:
		return (EPERM);
	}
}

int
hn_k_relay_open(int id, uint32_t addr_be, uint16_t port)
{
	struct hn_relay *r;

	if (id < 0 || id >= HN_MAX_RELAYS)
		return (EINVAL);
	r = &hn_relays[id];
	if (r->so != NULL || r->want_open)
		return (ENOBUFS);	/* the previous socket is still being closed */
	bzero(r, sizeof(*r));
	r->dst.sin_len = sizeof(r->dst);
	r->dst.sin_family = AF_INET;
	r->dst.sin_addr.s_addr = addr_be;
	r->dst.sin_port = htons(port);
	r->want_open = 1;
	taskqueue_enqueue(taskqueue_thread, &hn_relay_task);
	return (0);
}

void
hn_k_relay_kick(int id)
{
	taskqueue_enqueue(taskqueue_thread, &hn_relay_task);
}

void
hn_k_relay_close(int id)
{
	if (id < 0 || id >= HN_MAX_RELAYS)
		return;
	hn_relays[id].want_close = 1;
	taskqueue_enqueue(taskqueue_thread, &hn_relay_task);
}

void
hn_k_log(int level, const uint8_t *msg, size_t len)
{
	log(level, "%.*s\n", (int)len, (const char *)msg);
}

void
hn_k_panic(const uint8_t *msg, size_t len)
{
	panic("hydranet: %.*s", (int)len, (const char *)msg);
}

/*
 * The Rust side's heap (its global allocator): the core's tables. Called with hn_mtx held or
 * from the pfil hook, so it never sleeps; the core takes NULL as a full table. malloc(9)
 * aligns to a pointer at least, all the Rust side asks for.
 */
void *
hn_k_malloc(size_t size, int zero)
{
	return (malloc(size, M_HYDRANET, M_NOWAIT | (zero ? M_ZERO : 0)));
}

void
hn_k_free(void *p)
{
	free(p, M_HYDRANET);
}

/* ------------------------------------------------------------------ pfil */

static pfil_return_t
hn_pfil(struct mbuf **mp, struct ifnet *ifp, int flags, void *ruleset, struct inpcb *inp)
{
	struct hn_seg segs[HN_MAX_SEGS];
	struct mbuf *m, *n;
	size_t nsegs = 0;
	int verdict;

	if (!hn_loaded)
		return (PFIL_PASS);
	m = *mp;
	for (n = m; n != NULL; n = n->m_next)
		nsegs++;
	if (nsegs > HN_MAX_SEGS) {
		/* Rare (a long chain of small mbufs): make it fit rather than miss it. */
		n = m_collapse(m, M_NOWAIT, HN_MAX_SEGS);
		if (n == NULL) {
			/* m_collapse freed nothing on failure; let the stack decide. */
			return (PFIL_PASS);
		}
		*mp = m = n;
	}
	nsegs = 0;
	for (n = m; n != NULL && nsegs < HN_MAX_SEGS; n = n->m_next) {
		segs[nsegs].data = mtod(n, const uint8_t *);
		segs[nsegs].len = n->m_len;
		nsegs++;
	}
	mtx_lock(&hn_mtx);
	verdict = hn_pfil_in(segs, nsegs);
	mtx_unlock(&hn_mtx);
	switch (verdict) {
	case HN_CONSUMED:
		/* The core copied the packet. */
		m_freem(m);
		*mp = NULL;
		return (PFIL_CONSUMED);
	case HN_DROPPED:
		m_freem(m);
		*mp = NULL;
		return (PFIL_DROPPED);
	default:
		return (PFIL_PASS);
	}
}

static int
hn_pfil_attach(void)
{
	struct pfil_hook_args pha;
	struct pfil_link_args pla;
	int error;

	bzero(&pha, sizeof(pha));
	pha.pa_version = PFIL_VERSION;
	pha.pa_flags = PFIL_IN;
	pha.pa_type = PFIL_TYPE_IP4;
	pha.pa_mbuf_chk = hn_pfil;
	pha.pa_modname = "hydranet";
	pha.pa_rulname = "default";
	hn_pfil_hook = pfil_add_hook(&pha);

	bzero(&pla, sizeof(pla));
	pla.pa_version = PFIL_VERSION;
	/* deviation: only the default vnet's inet head; VIMAGE jails get no module. */
	pla.pa_flags = PFIL_IN | PFIL_HEADPTR | PFIL_HOOKPTR;
	pla.pa_head = V_inet_pfil_head;
	pla.pa_hook = hn_pfil_hook;
	error = pfil_link(&pla);
	if (error != 0)
		pfil_remove_hook(hn_pfil_hook);
	return (error);
}

/* ------------------------------------------------------------------ processes */

static void
hn_fork(void *arg, struct proc *p1, struct proc *p2, int flags)
{
	mtx_lock(&hn_mtx);
	hn_proc_fork(p1->p_pid, p2->p_pid);
	mtx_unlock(&hn_mtx);
}

static void
hn_exit(void *arg, struct proc *p)
{
	mtx_lock(&hn_mtx);
	hn_proc_exit(p->p_pid);
	mtx_unlock(&hn_mtx);
}

/* ------------------------------------------------------------------ system calls */

struct v_host_args {
	char ip_l_[PADL_(u_long)]; u_long ip; char ip_r_[PADR_(u_long)];
};

struct setportopt_args {
	char port_l_[PADL_(u_int)]; u_int port; char port_r_[PADR_(u_int)];
	char mode_l_[PADL_(u_int)]; u_int mode; char mode_r_[PADR_(u_int)];
	char params_l_[PADL_(const void *)]; const void *params;
	char params_r_[PADR_(const void *)];
};

struct hydranet_ctl_args {
	char req_l_[PADL_(const char *)]; const char *req; char req_r_[PADR_(const char *)];
	char reqlen_l_[PADL_(size_t)]; size_t reqlen; char reqlen_r_[PADR_(size_t)];
	char resp_l_[PADL_(char *)]; char *resp; char resp_r_[PADR_(char *)];
	char resplen_l_[PADL_(size_t)]; size_t resplen; char resplen_r_[PADR_(size_t)];
};

/*
 * The syscalls of one file are unloaded one module at a time, so a call may arrive while the
 * module itself is gone: hn_loaded turns it away before it touches the mutex.
 */
static int
sys_v_host(struct thread *td, struct v_host_args *uap)
{
	if (!hn_loaded)
		return (ENXIO);
	return (hn_sys_v_host(td->td_proc->p_pid, (uint64_t)uap->ip));
}

static int
sys_setportopt(struct thread *td, struct setportopt_args *uap)
{
	if (!hn_loaded)
		return (ENXIO);
	return (hn_sys_setportopt(td->td_proc->p_pid, uap->port, uap->mode,
	    (uint64_t)(uintptr_t)uap->params));
}

static int
sys_hydranet_ctl(struct thread *td, struct hydranet_ctl_args *uap)
{
	uint8_t *scratch;
	int64_t len = 0;
	int error;

	if (!hn_loaded)
		return (ENXIO);
	scratch = malloc(2 * HN_MAX_LINE + 1, M_HYDRANET, M_WAITOK);
	error = hn_sys_ctl(td->td_proc->p_pid, (uint64_t)(uintptr_t)uap->req, uap->reqlen,
	    (uint64_t)(uintptr_t)uap->resp, uap->resplen, scratch, 2 * HN_MAX_LINE + 1, &len);
	free(scratch, M_HYDRANET);
	if (error == 0)
		td->td_retval[0] = len;
	return (error);
}

static struct sysent hn_v_host_sysent = {
	.sy_narg = 1, .sy_call = (sy_call_t *)sys_v_host, .sy_flags = SYF_CAPENABLED };
static struct sysent hn_setportopt_sysent = {
	.sy_narg = 3, .sy_call = (sy_call_t *)sys_setportopt, .sy_flags = SYF_CAPENABLED };
static struct sysent hn_ctl_sysent = {
	.sy_narg = 4, .sy_call = (sy_call_t *)sys_hydranet_ctl, .sy_flags = 0 };

static int hn_v_host_offset = NO_SYSCALL;
static int hn_setportopt_offset = NO_SYSCALL;
static int hn_ctl_offset = NO_SYSCALL;

/* ------------------------------------------------------------------ module events */

static int
hn_load(void)
{
	char addr[INET_ADDRSTRLEN];
	struct in_addr ia;
	int error;

	/* The host server's own address: kenv hydranet.addr=198.51.100.10 before kldload. */
	if (!TUNABLE_STR_FETCH("hydranet.addr", addr, sizeof(addr)) ||
	    inet_pton(AF_INET, addr, &ia) != 1) {
		printf("hydranet: set the hydranet.addr tunable to this host's address\n");
		return (EINVAL);
	}
	mtx_init(&hn_mtx, "hydranet", NULL, MTX_DEF);
	callout_init_mtx(&hn_callout, &hn_mtx, 0);
	TASK_INIT(&hn_relay_task, 0, hn_relay_run, NULL);
	mtx_lock(&hn_mtx);
	error = hn_mod_load(ia.s_addr);
	mtx_unlock(&hn_mtx);
	if (error != 0)
		goto fail;
	hn_fork_tag = EVENTHANDLER_REGISTER(process_fork, hn_fork, NULL, EVENTHANDLER_PRI_ANY);
	hn_exit_tag = EVENTHANDLER_REGISTER(process_exit, hn_exit, NULL, EVENTHANDLER_PRI_ANY);
	error = hn_pfil_attach();
	if (error != 0) {
		EVENTHANDLER_DEREGISTER(process_fork, hn_fork_tag);
		EVENTHANDLER_DEREGISTER(process_exit, hn_exit_tag);
		mtx_lock(&hn_mtx);
		hn_mod_unload();
		mtx_unlock(&hn_mtx);
		goto fail;
	}
	hn_loaded = 1;
	return (0);
fail:
	callout_drain(&hn_callout);
	mtx_destroy(&hn_mtx);
	return (error);
}

static int
hn_quiesce(void)
{
	int error;

	mtx_lock(&hn_mtx);
	error = hn_mod_quiesce();
	mtx_unlock(&hn_mtx);
	return (error);
}

static int
hn_unload(void)
{
	int id;

	hn_loaded = 0;
	pfil_remove_hook(hn_pfil_hook);
	EVENTHANDLER_DEREGISTER(process_fork, hn_fork_tag);
	EVENTHANDLER_DEREGISTER(process_exit, hn_exit_tag);
	mtx_lock(&hn_mtx);
	hn_mod_unload();	/* resets plain connections, closes relays, stops the callout */
	mtx_unlock(&hn_mtx);
	callout_drain(&hn_callout);
	/* Close what the task has not closed yet, then make sure it is not running. */
	taskqueue_drain(taskqueue_thread, &hn_relay_task);
	for (id = 0; id < HN_MAX_RELAYS; id++) {
		if (hn_relays[id].so != NULL) {
			hn_relay_close_socket(hn_relays[id].so);
			hn_relays[id].so = NULL;
		}
	}
	mtx_destroy(&hn_mtx);
	return (0);
}

/*
 * The three syscall modules come first in load order and carry the module's own events on
 * the first of them (v_host): their syscall_module_handler registers the sysent and then
 * chains to hn_modevent through the `chainevh' field.
 */
static int
hn_modevent(struct module *mod, int what, void *arg)
{
	switch (what) {
	case MOD_LOAD:
		return (hn_load());
	case MOD_QUIESCE:
		return (hn_quiesce());
	case MOD_UNLOAD:
		return (hn_unload());
	default:
		return (EOPNOTSUPP);
	}
}

static struct syscall_module_data hn_v_host_smd = {
	.chainevh = hn_modevent, .chainarg = NULL, .offset = &hn_v_host_offset,
	.new_sysent = &hn_v_host_sysent, .flags = 0 };
static struct syscall_module_data hn_setportopt_smd = {
	.chainevh = NULL, .chainarg = NULL, .offset = &hn_setportopt_offset,
	.new_sysent = &hn_setportopt_sysent, .flags = 0 };
static struct syscall_module_data hn_ctl_smd = {
	.chainevh = NULL, .chainarg = NULL, .offset = &hn_ctl_offset,
	.new_sysent = &hn_ctl_sysent, .flags = 0 };

/*
 * Names userland finds with modfind(2) ("sys/v_host", ...); modstat(2) then gives the
 * syscall number in data.intval.
 */
static moduledata_t hn_v_host_mod = { "sys/v_host", syscall_module_handler, &hn_v_host_smd };
static moduledata_t hn_setportopt_mod = {
	"sys/setportopt", syscall_module_handler, &hn_setportopt_smd };
static moduledata_t hn_ctl_mod = { "sys/hydranet_ctl", syscall_module_handler, &hn_ctl_smd };

DECLARE_MODULE(v_host, hn_v_host_mod, SI_SUB_PROTO_END, SI_ORDER_ANY);
DECLARE_MODULE(setportopt, hn_setportopt_mod, SI_SUB_PROTO_END, SI_ORDER_ANY);
DECLARE_MODULE(hydranet_ctl, hn_ctl_mod, SI_SUB_PROTO_END, SI_ORDER_ANY);
MODULE_VERSION(hydranet, 1);
