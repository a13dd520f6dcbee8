/*
 * kpi.h - declarations of the FreeBSD 14 kernel interfaces hydranet_kmod.c uses, written from
 * the manual pages (pfil(9), callout(9), mbuf(9), socket(9), SYSCALL_MODULE(9), priv(9),
 * EVENTHANDLER(9), taskqueue(9), copy(9)), for `gcc -fsyntax-only` on Linux only. Every
 * <sys/...> header the shim includes is a stub in this folder that includes this file. This
 * checks the C file's syntax and its calls against these declarations; it says nothing about
 * FreeBSD's real headers, which were not available.
 */
#ifndef HN_KPI_STUB_H
#define HN_KPI_STUB_H

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;
typedef long int64_t;
typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned long uintptr_t;
typedef unsigned long u_long;
typedef unsigned int u_int;
typedef long sbintime_t;
typedef long time_t;
typedef int pid_t;
typedef unsigned int in_addr_t;
typedef unsigned short in_port_t;
typedef unsigned char sa_family_t;
#define NULL ((void *)0)
#define __dead2 __attribute__((__noreturn__))
#define __DECONST(type, var) ((type)(uintptr_t)(const void *)(var))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define PADL_(t) 0
#define PADR_(t) 0

#define EPERM 1
#define EINTR 4
#define ENXIO 6
#define EINVAL 22
#define EWOULDBLOCK 35
#define EINPROGRESS 36
#define EOPNOTSUPP 45
#define ENOBUFS 55

/* systm */
int printf(const char *, ...);
void log(int, const char *, ...);
void panic(const char *, ...) __dead2;
void bzero(void *, size_t);
int copyin(const void *, void *, size_t);
int copyout(const void *, void *, size_t);
void arc4random_buf(void *, size_t);
int inet_pton(int, const char *, void *);
extern volatile time_t time_second;
sbintime_t getsbinuptime(void);
uint64_t sbttous(sbintime_t);
sbintime_t ustosbt(uint64_t);
int getenv_string(const char *, char *, int);
#define TUNABLE_STR_FETCH(path, var, size) getenv_string((path), (var), (size))

/* malloc(9) */
struct malloc_type { int dummy; };
#define MALLOC_DEFINE(type, shortdesc, longdesc) struct malloc_type type[1]
#define M_NOWAIT 0x0001
#define M_WAITOK 0x0002
#define M_ZERO 0x0100
void *malloc(size_t, struct malloc_type *, int);
void free(void *, struct malloc_type *);

/* mutex(9) */
struct mtx { volatile uintptr_t mtx_lock; };
#define MTX_DEF 0
#define MA_OWNED 4
void mtx_init(struct mtx *, const char *, const char *, int);
void mtx_destroy(struct mtx *);
void mtx_lock(struct mtx *);
void mtx_unlock(struct mtx *);
void mtx_assert(struct mtx *, int);

/* callout(9) */
struct callout { int dummy; };
void callout_init_mtx(struct callout *, struct mtx *, int);
int callout_reset_sbt(struct callout *, sbintime_t, sbintime_t, void (*)(void *), void *, int);
int callout_stop(struct callout *);
int callout_drain(struct callout *);

/* taskqueue(9) */
struct task { int dummy; };
struct taskqueue;
extern struct taskqueue *taskqueue_thread;
typedef void task_fn_t(void *, int);
#define TASK_INIT(task, prio, func, ctx) task_init((task), (prio), (func), (ctx))
void task_init(struct task *, int, task_fn_t *, void *);
int taskqueue_enqueue(struct taskqueue *, struct task *);
void taskqueue_drain(struct taskqueue *, struct task *);

/* proc, priv(9), EVENTHANDLER(9) */
struct ucred;
struct proc { pid_t p_pid; };
struct thread { struct proc *td_proc; struct ucred *td_ucred; long td_retval[2]; };
extern struct thread *curthread;
#define PRIV_NET_ROUTE 370
#define PRIV_NET_ADDIFADDR 413
int priv_check(struct thread *, int);
typedef void *eventhandler_tag;
#define EVENTHANDLER_PRI_ANY 10000
#define EVENTHANDLER_REGISTER(name, func, arg, pri) eventhandler_register_stub(#name, (void *)(func), (arg), (pri))
#define EVENTHANDLER_DEREGISTER(name, tag) eventhandler_deregister_stub(#name, (tag))
eventhandler_tag eventhandler_register_stub(const char *, void *, void *, int);
void eventhandler_deregister_stub(const char *, eventhandler_tag);

/* mbuf(9) */
struct ifnet;
struct inpcb;
struct mbuf { struct mbuf *m_next; char *m_data; int m_len; };
#define mtod(m, t) ((t)((m)->m_data))
void m_freem(struct mbuf *);
struct mbuf *m_collapse(struct mbuf *, int, int);
struct mbuf *m_devget(char *, int, int, struct ifnet *, void (*)(char *, void *, unsigned));

/* sockets: socket(9) */
struct sockaddr { unsigned char sa_len; sa_family_t sa_family; char sa_data[14]; };
struct in_addr { in_addr_t s_addr; };
struct sockaddr_in { uint8_t sin_len; sa_family_t sin_family; in_port_t sin_port;
	struct in_addr sin_addr; char sin_zero[8]; };
#define AF_INET 2
#define PF_INET AF_INET
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define INET_ADDRSTRLEN 16
#define SHUT_WR 1
#define MSG_DONTWAIT 0x80
#define SS_ISCONNECTED 0x0002
#define SS_NBIO 0x0100
#define SO_RCV 1
#define SO_SND 2
#define SU_OK 0
uint16_t htons(uint16_t);
struct sockbuf { void *sb_upcall; };
struct socket { short so_state; unsigned short so_error; struct sockbuf so_rcv, so_snd; };
#define SOCKBUF_LOCK(sb) ((void)(sb))
#define SOCKBUF_UNLOCK(sb) ((void)(sb))
enum uio_seg { UIO_USERSPACE, UIO_SYSSPACE };
enum uio_rw { UIO_READ, UIO_WRITE };
struct iovec { void *iov_base; size_t iov_len; };
struct uio { struct iovec *uio_iov; int uio_iovcnt; long uio_offset; ssize_t uio_resid;
	enum uio_seg uio_segflg; enum uio_rw uio_rw; struct thread *uio_td; };
int socreate(int, struct socket **, int, int, struct ucred *, struct thread *);
int soconnect(struct socket *, struct sockaddr *, struct thread *);
int soclose(struct socket *);
int soshutdown(struct socket *, int);
int sosend(struct socket *, struct sockaddr *, struct uio *, struct mbuf *, struct mbuf *,
    int, struct thread *);
int soreceive(struct socket *, struct sockaddr **, struct uio *, struct mbuf **,
    struct mbuf **, int *);
void soupcall_set(struct socket *, int, int (*)(struct socket *, void *, int), void *);
void soupcall_clear(struct socket *, int);

/* IP */
struct ip { uint8_t ip_vhl, ip_tos; uint16_t ip_len, ip_id, ip_off; uint8_t ip_ttl, ip_p;
	uint16_t ip_sum; struct in_addr ip_src, ip_dst; };
#define IP_MAXPACKET 65535
#define IP_RAWOUTPUT 0x2
struct route;
struct ip_moptions;
int ip_output(struct mbuf *, struct mbuf *, struct route *, int, struct ip_moptions *,
    struct inpcb *);

/* pfil(9) */
typedef enum { PFIL_PASS = 0, PFIL_DROPPED, PFIL_CONSUMED, PFIL_REALLOCED } pfil_return_t;
typedef pfil_return_t (*pfil_mbuf_chk_t)(struct mbuf **, struct ifnet *, int, void *,
    struct inpcb *);
struct pfil_head;
typedef struct pfil_hook *pfil_hook_t;
typedef struct pfil_head *pfil_head_t;
#define PFIL_VERSION 2
#define PFIL_IN 0x00010000
#define PFIL_HEADPTR 0x00100000
#define PFIL_HOOKPTR 0x00200000
enum pfil_types { PFIL_TYPE_IP4, PFIL_TYPE_IP6, PFIL_TYPE_ETHERNET };
struct pfil_hook_args { int pa_version; int pa_flags; enum pfil_types pa_type;
	pfil_mbuf_chk_t pa_mbuf_chk; void *pa_ruleset; const char *pa_modname;
	const char *pa_rulname; };
struct pfil_link_args { int pa_version; int pa_flags;
	union { const char *pa_headname; pfil_head_t pa_head; };
	union { struct { const char *pa_modname; const char *pa_rulname; }; pfil_hook_t pa_hook; }; };
pfil_hook_t pfil_add_hook(struct pfil_hook_args *);
void pfil_remove_hook(pfil_hook_t);
int pfil_link(struct pfil_link_args *);
extern pfil_head_t V_inet_pfil_head;

/* module(9), SYSCALL_MODULE(9) */
struct module;
typedef int (*modeventhand_t)(struct module *, int, void *);
enum modeventtype { MOD_LOAD, MOD_UNLOAD, MOD_SHUTDOWN, MOD_QUIESCE };
typedef struct moduledata { const char *name; modeventhand_t evhand; void *priv; } moduledata_t;
#define SI_SUB_PROTO_END 0x8ffffff
#define SI_ORDER_ANY 0xfffffff
#define DECLARE_MODULE(name, data, sub, order) \
	moduledata_t *name##_declared = &(data)
#define MODULE_VERSION(module, version) int module##_version = (version)
struct thread;
typedef int sy_call_t(struct thread *, void *);
struct sysent { int sy_narg; sy_call_t *sy_call; int sy_flags; };
#define SYF_CAPENABLED 0x00000001
#define NO_SYSCALL (-1)
struct syscall_module_data { int (*chainevh)(struct module *, int, void *); void *chainarg;
	int *offset; struct sysent *new_sysent; struct sysent old_sysent; int flags; };
int syscall_module_handler(struct module *, int, void *);

/* syslog priorities */
#define LOG_NOTICE 5

#endif
