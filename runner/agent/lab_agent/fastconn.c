/* fastconn: the agent's connect and accept workers in C.
 *
 * The agent starts a worker per batch of connections, as it does for its Python
 * workers, but spawns this program (posix_spawn: no copy of the agent) instead
 * of forking the Python loop; fds 3, 4 (and 5, the listener) are its pipes. It speaks the same worker protocol on the same two pipes (words in on
 * CTRL, JSON lines out on REP: "p" progress, "d" done, "near"/"full", "c"
 * closed, with how many of those through io_uring: "batched"), so the agent treats both alike; only the per-connection loop is C.
 * Why: the connect and accept loops are the hot path of a million-connection
 * ramp, and a Python loop spends its time in the interpreter and in the garbage
 * collector walking every held socket object.
 *
 *   fastconn connect CTRL REP MODE NOPORT LOCALPORT CTO_MS QUOTA MAXATT DEADLINE
 *                    RATE T0 BASE BASEATT STOPONERR SEND PARK RR NPAIRS (SRC DST PORT)...
 *                    NACTIVE I...
 *   fastconn accept CTRL REP LFD CAP MARGIN PARK
 *
 * DEADLINE and T0 are CLOCK_MONOTONIC seconds (Python's time.monotonic());
 * SRC is "-" for none; MODE is none, ip, ip-no-port or reuseaddr; SEND is the
 * bytes written on each connection once it is established (0: none); PARK 1
 * parks the held sockets out of the fd table (see park()), 0 keeps them there.
 * Plain C99 + POSIX + Linux, no libraries: it is compiled on the host.
 * LAB_URING=0 in the environment closes one syscall per socket instead of
 * through io_uring (see close_fds()), to measure what the ring saves. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PROGRESS_S 0.1 /* worker -> agent, at most this often (WORKER_PROGRESS_S) */

static int rep_fd;

static double mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(rep_fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(0); /* the agent is gone */
    }
    p += w;
    n -= (size_t)w;
  }
}

/* A growable output line. */
static char *out;
static size_t out_len, out_cap;
static void put(const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(out + out_len, out_cap - out_len, fmt, ap);
    va_end(ap);
    if (n >= 0 && out_len + (size_t)n < out_cap) { out_len += (size_t)n; return; }
    out_cap = out_cap * 2 + (n > 0 ? (size_t)n : 0) + 256;
    out = realloc(out, out_cap);
    if (!out) _exit(3);
  }
}
static void flush_line(void) {
  put("\n");
  write_all(out, out_len);
  out_len = 0;
}

/* The errno's symbolic name, as Python's errno.errorcode spells it. */
static const char *errname(int e) {
  switch (e) {
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case EADDRINUSE: return "EADDRINUSE";
  case ECONNREFUSED: return "ECONNREFUSED";
  case ETIMEDOUT: return "ETIMEDOUT";
  case EMFILE: return "EMFILE";
  case ENFILE: return "ENFILE";
  case ENOBUFS: return "ENOBUFS";
  case ENOMEM: return "ENOMEM";
  case ECONNRESET: return "ECONNRESET";
  case ECONNABORTED: return "ECONNABORTED";
  case ENETUNREACH: return "ENETUNREACH";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case EINVAL: return "EINVAL";
  case EINTR: return "EINTR";
  case EIO: return "EIO";
  }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(e);
  if (n) return n;
#endif
  static char buf[16];
  snprintf(buf, sizeof buf, "E%d", e);
  return buf;
}

/* Hold no fd but stdin, stdout, stderr and ours (the highest is `last`): a worker
 * holds nofile - 5 sockets (facts.workerFds), whatever the agent was started with. */
static void close_others(int last) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)last + 1, ~0U, 0) == 0) return;
#endif
  for (int fd = last + 1; fd < 65536; fd++) close(fd);
}

/* Words from the agent on CTRL. Returns a bit set: 1 stop, 2 close, 4 abort, 8 EOF, 16 drop
 * (with abort: close without sending anything, see close_held). */
#define W_STOP 1
#define W_CLOSE 2
#define W_ABORT 4
#define W_EOF 8
#define W_DROP 16
static int read_words(int fd) {
  char buf[512];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : W_EOF;
  if (n == 0) return W_EOF;
  buf[n] = 0;
  int w = 0;
  if (strstr(buf, "stop")) w |= W_STOP;
  if (strstr(buf, "close")) w |= W_CLOSE;
  if (strstr(buf, "abort")) w |= W_ABORT;
  if (strstr(buf, "drop")) w |= W_DROP;
  return w;
}

/* Parking: held sockets sent with SCM_RIGHTS into a socketpair of the worker's
 * own and closed in its fd table. The kernel keeps each socket (its file, inode
 * and dentry, every object a held connection costs) referenced by the message
 * in flight; the worker's fd table holds only the pair. Why: a process that
 * lists /proc/<pid>/fd of every process (monitoring agents; this VM's PID 1)
 * pays per fd held, and creates a proc inode and dentry for each. At a million
 * connections that took 40% of a CPU here and slowed the ramp. Release takes
 * them back in batches and closes them as before. */
#define PARK_MAX 253 /* SCM_MAX_FD */

/* ---- io_uring, for closing many sockets in few syscalls ----
 * A syscall costs more than the close itself on some machines (on the
 * paravirtualised VM this was measured on, its entry and exit take ~1.5 us:
 * page-table isolation and an interrupt-enable hypercall): a release of a
 * million connections closes two million sockets, and setting TCP_REPAIR or
 * SO_LINGER on each first doubles that. io_uring takes 256 setsockopts, then
 * 256 closes, per syscall (IORING_OP_URING_CMD SOCKET_URING_OP_SETSOCKOPT,
 * Linux 6.7; IORING_OP_CLOSE, 5.6). Where the ring or the socket command is
 * missing, each socket is closed by its own syscalls, as before. The ABI is
 * declared here, not taken from <linux/io_uring.h>: a host's headers may be
 * older than its kernel. */
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#define SYS_io_uring_enter 426
#endif
struct ur_sqe {
  uint8_t opcode, flags;
  uint16_t ioprio;
  int32_t fd;
  uint32_t cmd_op, pad1;       /* off */
  uint32_t level, optname;     /* addr */
  uint32_t len, op_flags;
  uint64_t user_data;
  uint16_t buf_index, personality;
  uint32_t optlen;             /* splice_fd_in, file_index */
  uint64_t optval, pad2;       /* addr3 */
};
struct ur_cqe { uint64_t user_data; int32_t res; uint32_t flags; };
struct ur_sq_off { uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1; uint64_t user_addr; };
struct ur_cq_off { uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1; uint64_t user_addr; };
struct ur_params {
  uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3];
  struct ur_sq_off sq_off;
  struct ur_cq_off cq_off;
};
#define UR_OP_CLOSE 19
#define UR_OP_URING_CMD 46
#define UR_SOCKET_SETSOCKOPT 3
#define UR_ENTER_GETEVENTS 1u
#define UR_SETUP_SINGLE_ISSUER (1u << 12)
#define UR_SETUP_DEFER_TASKRUN (1u << 13)
#define RING_N 256

static struct {
  int fd;            /* -1: not set up yet, -2: unavailable */
  int sockopt;       /* 0 once the kernel refused a socket command */
  int drop;          /* 0 once TCP_REPAIR was refused */
  uint32_t *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct ur_sqe *sqes;
  struct ur_cqe *cqes;
} ring = {.fd = -1, .sockopt = 1, .drop = 1};
static long batched; /* sockets closed through the ring */

static int ring_up(void) {
  if (ring.fd != -1) return ring.fd >= 0;
  ring.fd = -2;
  const char *env = getenv("LAB_URING");
  if (env && strcmp(env, "0") == 0) return 0;
  struct ur_params p;
  memset(&p, 0, sizeof p);
  p.flags = UR_SETUP_SINGLE_ISSUER | UR_SETUP_DEFER_TASKRUN;
  int fd = (int)syscall(SYS_io_uring_setup, RING_N, &p);
  if (fd < 0 && errno == EINVAL) { /* before Linux 6.1 */
    memset(&p, 0, sizeof p);
    fd = (int)syscall(SYS_io_uring_setup, RING_N, &p);
  }
  if (fd < 0) {
    /* A full fd table (a worker that held nofile's worth): try again once a batch is closed. */
    if (errno == EMFILE || errno == ENFILE) ring.fd = -1;
    return 0; /* ENOSYS, EPERM: kernel.io_uring_disabled, a seccomp filter */
  }
  size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
  size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct ur_cqe);
  char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0x8000000);
  void *sqes = mmap(NULL, p.sq_entries * sizeof(struct ur_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0x10000000);
  if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED || p.sq_entries < RING_N) {
    if (sq != MAP_FAILED) munmap(sq, sq_len);
    if (cq != MAP_FAILED) munmap(cq, cq_len);
    if (sqes != MAP_FAILED) munmap(sqes, p.sq_entries * sizeof(struct ur_sqe));
    close(fd);
    return 0;
  }
  ring.sq_tail = (uint32_t *)(sq + p.sq_off.tail), ring.sq_mask = (uint32_t *)(sq + p.sq_off.ring_mask);
  ring.sq_array = (uint32_t *)(sq + p.sq_off.array);
  ring.cq_head = (uint32_t *)(cq + p.cq_off.head), ring.cq_tail = (uint32_t *)(cq + p.cq_off.tail);
  ring.cq_mask = (uint32_t *)(cq + p.cq_off.ring_mask), ring.cqes = (struct ur_cqe *)(cq + p.cq_off.cqes);
  ring.sqes = sqes;
  ring.fd = fd;
  return 1;
}

/* Run n (<= RING_N) prepared entries; res[i] gets entry i's result. 0, or -1 when the
 * ring failed (then res[] holds -ECANCELED where no result came: the caller redoes those). */
static int ring_run(int n, int32_t *res) {
  for (int i = 0; i < n; i++) res[i] = -ECANCELED;
  uint32_t tail = *ring.sq_tail;
  for (int i = 0; i < n; i++) ring.sq_array[(tail + i) & *ring.sq_mask] = (tail + i) & *ring.sq_mask;
  __atomic_store_n(ring.sq_tail, tail + n, __ATOMIC_RELEASE);
  int todo = n, done = 0;
  while (done < n) {
    int r = (int)syscall(SYS_io_uring_enter, ring.fd, todo, n - done, UR_ENTER_GETEVENTS, NULL, 0);
    if (r < 0 && errno != EINTR) {
      /* Entries it never took are behind our tail: retire the ring, the rest close one by one. */
      close(ring.fd);
      ring.fd = -2;
      return -1;
    }
    if (r > 0) todo -= r;
    uint32_t h = *ring.cq_head, t = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
    for (; h != t; h++, done++) {
      struct ur_cqe *c = &ring.cqes[h & *ring.cq_mask];
      if (c->user_data < (uint64_t)n) res[c->user_data] = c->res;
    }
    __atomic_store_n(ring.cq_head, h, __ATOMIC_RELEASE);
  }
  return 0;
}

static struct ur_sqe *ring_sqe(int i, uint8_t op, int fd) {
  struct ur_sqe *e = &ring.sqes[(*ring.sq_tail + i) & *ring.sq_mask];
  memset(e, 0, sizeof *e);
  e->opcode = op, e->fd = fd, e->user_data = (uint64_t)i;
  return e;
}

static int park_sv[2] = {-1, -1};
static int parking; /* 1 while batches go out; a failed send ends it, what is parked stays receivable */
static int park_buf[PARK_MAX];
static int park_n;
static long parked;

/* Close the n distinct fds of a sent batch, in one syscall when they are all the fds
 * of one range (as a fresh table hands them out: lowest first), else one by one. */
static void close_batch(const int *fds, int n) {
#ifdef SYS_close_range
  static int missing; /* close_range is Linux 5.9 */
  int lo = fds[0], hi = fds[0];
  for (int i = 1; i < n; i++) lo = fds[i] < lo ? fds[i] : lo, hi = fds[i] > hi ? fds[i] : hi;
  if (!missing && hi - lo + 1 == n) {
    if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0) return;
    missing = errno == ENOSYS;
  }
#endif
  for (int i = 0; i < n; i++) close(fds[i]);
}

static void park_flush(void) {
  if (park_n == 0) return;
  char byte = 'p';
  struct iovec iov = {&byte, 1};
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * PARK_MAX)]; } u;
  struct msghdr m = {0};
  m.msg_iov = &iov, m.msg_iovlen = 1;
  m.msg_control = u.buf, m.msg_controllen = CMSG_SPACE(sizeof(int) * park_n);
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN(sizeof(int) * park_n);
  memcpy(CMSG_DATA(c), park_buf, sizeof(int) * park_n);
  if (sendmsg(park_sv[1], &m, 0) == 1) {
    close_batch(park_buf, park_n);
    parked += park_n;
    park_n = 0;
  } else {
    parking = 0; /* cannot park (ETOOMANYREFS without CAP_SYS_ADMIN, memory): hold them in the table */
  }
}

/* Hold fd s: parked in batches (0), or, when parking is off or has failed, in the caller's
 * table (1). A batch whose send failed stays in park_buf, in the fd table, closed from there. */
static int park(int s) {
  if (!parking) return 1;
  park_buf[park_n++] = s;
  if (park_n == PARK_MAX) park_flush();
  return 0;
}

static void park_init(int on) {
  if (!on) return;
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, park_sv) < 0) return;
  parking = 1;
  int big = 64 << 20;
  setsockopt(park_sv[1], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
}

/* How a socket is closed: 0 with a FIN (graceful), W_ABORT by RST (SO_LINGER {1, 0}: no
 * TIME_WAIT), W_ABORT | W_DROP silently: TCP_REPAIR, as CRIU does, makes close() free the socket
 * without sending anything. The agent asks for a drop only when the release closes the peer
 * too, at once (runner/run/steps.ts): no RST crosses the veths to be processed on the other end.
 * TCP_REPAIR needs CAP_NET_ADMIN; without it, RST. */
struct sock_opt { int level, name; const void *value; socklen_t len; };
static const int ONE = 1;
static const struct linger LINGER_ABORT = {1, 0};
static const struct sock_opt REPAIR = {IPPROTO_TCP, 19 /* TCP_REPAIR */, &ONE, sizeof ONE};
static const struct sock_opt RST = {SOL_SOCKET, SO_LINGER, &LINGER_ABORT, sizeof LINGER_ABORT};

static void set_abort(int fd, int how) {
  if (!(how & W_ABORT)) return;
  if ((how & W_DROP) && setsockopt(fd, REPAIR.level, REPAIR.name, REPAIR.value, REPAIR.len) == 0) return;
  setsockopt(fd, RST.level, RST.name, RST.value, RST.len);
}

/* Close n fds, each as set_abort says, a syscall or two each; how many closed. */
static long close_each(const int *fds, long n, int how) {
  long closed = 0;
  for (long i = 0; i < n; i++) {
    set_abort(fds[i], how);
    if (close(fds[i]) == 0) closed++;
  }
  return closed;
}

/* The same through the ring, RING_N sockets a syscall: their option first, then their
 * close. A socket the command fails on gets set_abort()'s own way (TCP_REPAIR refused
 * without CAP_NET_ADMIN: SO_LINGER, through the ring for the batches after); a close
 * the ring fails (IORING_OP_CLOSE is Linux 5.6) is done by close(). */
static long close_fds(const int *fds, long n, int how) {
  int32_t res[RING_N];
  long closed = 0;
  for (long at = 0; at < n; at += RING_N) {
    int k = n - at < RING_N ? (int)(n - at) : RING_N;
    const int *f = fds + at;
    if (!ring_up()) {
      closed += close_each(f, k, how);
      continue;
    }
    /* Once TCP_REPAIR has been refused, RST without asking again. */
    int h = ring.drop ? how : how & ~W_DROP;
    if ((h & W_ABORT) && ring.sockopt) {
      const struct sock_opt *o = h & W_DROP ? &REPAIR : &RST;
      for (int i = 0; i < k; i++) {
        struct ur_sqe *e = ring_sqe(i, UR_OP_URING_CMD, f[i]);
        e->cmd_op = UR_SOCKET_SETSOCKOPT;
        e->level = (uint32_t)o->level, e->optname = (uint32_t)o->name, e->optval = (uintptr_t)o->value, e->optlen = o->len;
      }
      if (ring_run(k, res) < 0) {
        closed += close_each(f, k, how);
        continue;
      }
      for (int i = 0; i < k; i++) {
        if (res[i] == 0 || res[i] == -EBADF) continue;
        if ((h & W_DROP) && res[i] == -EPERM) ring.drop = 0; /* no CAP_NET_ADMIN */
        else ring.sockopt = 0; /* no socket commands (Linux < 6.7), or an LSM refuses them */
        set_abort(f[i], ring.drop ? how : how & ~W_DROP);
      }
    } else {
      for (int i = 0; i < k; i++) set_abort(f[i], h);
    }
    for (int i = 0; i < k; i++) ring_sqe(i, UR_OP_CLOSE, f[i]);
    /* A result of 0 is a close through the ring; no result (the ring failed: -ECANCELED) or
     * a refused opcode (-EINVAL before Linux 5.6) is done by close(); -EBADF was not open. */
    ring_run(k, res);
    for (int i = 0; i < k; i++) {
      if (res[i] == 0) closed++, batched++;
      else if (res[i] != -EBADF) {
        if (res[i] == -EINVAL && ring.fd >= 0) close(ring.fd), ring.fd = -2;
        closed += close(f[i]) == 0;
      }
    }
  }
  return closed;
}

/* Close held sockets: those in the table, the unsent batch, and the parked ones taken back. */
static long close_held(int *fds, long n, int how) {
  long closed = close_fds(fds, n, how) + close_fds(park_buf, park_n, how);
  park_n = 0;
  while (parked > 0) {
    char byte;
    struct iovec iov = {&byte, 1};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * PARK_MAX)]; } u;
    struct msghdr m = {0};
    m.msg_iov = &iov, m.msg_iovlen = 1;
    m.msg_control = u.buf, m.msg_controllen = sizeof u.buf;
    if (recvmsg(park_sv[0], &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 1) break;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      closed += close_fds((int *)CMSG_DATA(c), k, how);
      parked -= k;
    }
  }
  return closed;
}

/* Hold until "close"/"abort"/"drop abort" (close, report, exit) or EOF (exit). */
static void hold(int ctrl, int *fds, long n) {
  for (;;) {
    struct pollfd p = {ctrl, POLLIN, 0};
    if (poll(&p, 1, -1) < 0) continue;
    int w = read_words(ctrl);
    if (w & (W_CLOSE | W_ABORT)) {
      long c = close_held(fds, n, w & (W_ABORT | W_DROP));
      put("{\"t\":\"c\",\"closed\":%ld,\"batched\":%ld}", c, batched);
      flush_line();
      _exit(0);
    }
    if (w & W_EOF) _exit(0);
  }
}

/* The used-port marks as Python's worker sends them: base64(zlib(65536 bytes
 * of 0/1)). zlib here is stored (uncompressed) deflate blocks: no library. */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static void put_ports(const unsigned char *marks) {
  size_t raw = 65536, zlen = 2 + 2 * 5 + raw + 4;
  unsigned char *z = malloc(zlen), *p = z;
  if (!z) _exit(3);
  *p++ = 0x78, *p++ = 0x01;
  for (int b = 0; b < 2; b++) { /* two stored blocks of 32768 */
    unsigned len = 32768, nlen = 0xffff ^ len;
    *p++ = b == 1; /* BFINAL on the last, BTYPE 00 */
    *p++ = len & 0xff, *p++ = len >> 8, *p++ = nlen & 0xff, *p++ = nlen >> 8;
    memcpy(p, marks + b * 32768, 32768);
    p += 32768;
  }
  uint32_t a = 1, s = 0;
  for (size_t i = 0; i < raw; i++) a = (a + marks[i]) % 65521, s = (s + a) % 65521;
  uint32_t adler = (s << 16) | a;
  *p++ = adler >> 24, *p++ = adler >> 16, *p++ = adler >> 8, *p++ = adler;
  size_t enc = 4 * ((zlen + 2) / 3);
  char *e = malloc(enc + 1), *q = e;
  if (!e) _exit(3);
  for (size_t i = 0; i < zlen; i += 3) {
    uint32_t v = z[i] << 16 | (i + 1 < zlen ? z[i + 1] << 8 : 0) | (i + 2 < zlen ? z[i + 2] : 0);
    *q++ = B64[v >> 18 & 63], *q++ = B64[v >> 12 & 63];
    *q++ = i + 1 < zlen ? B64[v >> 6 & 63] : '=';
    *q++ = i + 2 < zlen ? B64[v & 63] : '=';
  }
  *q = 0;
  put("%s", e);
  free(z);
  free(e);
}

struct err_count { int e; long n; };

static int connect_main(int argc, char **argv) {
  int a = 2;
  if (argc < 21) return 2;
  int ctrl = atoi(argv[a++]);
  rep_fd = atoi(argv[a++]);
  const char *mode = argv[a++];
  int no_port = atoi(argv[a++]);
  int local_port = atoi(argv[a++]);
  double cto = atof(argv[a++]) / 1000.0;
  long quota = atol(argv[a++]);
  long max_att = atol(argv[a++]);
  double deadline = atof(argv[a++]);
  double rate = atof(argv[a++]);
  double t0 = atof(argv[a++]);
  long base = atol(argv[a++]);
  long base_att = atol(argv[a++]);
  int stop_on_error = atoi(argv[a++]);
  long send_len = atol(argv[a++]);
  int park_on = atoi(argv[a++]);
  long rr = atol(argv[a++]);
  int npairs = atoi(argv[a++]);
  if (npairs < 1 || argc < a + 3 * npairs + 1) return 2;
  struct sockaddr_in *dst = calloc(npairs, sizeof *dst), *src = calloc(npairs, sizeof *src);
  int *has_src = calloc(npairs, sizeof(int));
  long *per = calloc(npairs, sizeof(long));
  int reuse = strcmp(mode, "reuseaddr") == 0;
  int bind_ip = strcmp(mode, "ip") == 0 || strcmp(mode, "ip-no-port") == 0 || no_port;
  for (int i = 0; i < npairs; i++) {
    const char *s = argv[a++], *d = argv[a++];
    int port = atoi(argv[a++]);
    dst[i].sin_family = AF_INET;
    dst[i].sin_port = htons(port);
    inet_pton(AF_INET, d, &dst[i].sin_addr);
    src[i].sin_family = AF_INET;
    if (strcmp(s, "-") != 0) inet_pton(AF_INET, s, &src[i].sin_addr);
    src[i].sin_port = htons(reuse ? local_port : 0);
    has_src[i] = reuse || bind_ip;
  }
  close_others(ctrl > rep_fd ? ctrl : rep_fd);
  int nactive = atoi(argv[a++]);
  if (argc < a + nactive) return 2;
  int *active = calloc(npairs + 1, sizeof(int));
  for (int k = 0; k < nactive; k++) active[k] = atoi(argv[a++]);

  /* A blocking connect() gives up after SO_SNDTIMEO on Linux (EINPROGRESS). */
  struct timeval tv = {(time_t)cto, (suseconds_t)((cto - (long)cto) * 1e6)};
  int *held = malloc(sizeof(int) * (quota > 0 ? quota : 1));
  unsigned char *ports = calloc(65536, 1);
  struct err_count errs[32];
  int nerrs = 0;
  int first_set = 0, first_errno = 0, first_pair = 0;
  long first_after = 0;
  long est = 0, att = 0, next_poll = 0, nheld = 0;
  park_init(park_on);
  const char *reason = "count";
  double loop_t0 = mono(), last_prog = loop_t0, next_time = 0;
  int one = 1;
  char *payload = NULL;
  long sent = 0;
  if (send_len > 0) {
    payload = malloc((size_t)send_len);
    if (!payload) _exit(3);
    memset(payload, 'x', (size_t)send_len);
  }
  while (est < quota) {
    double now = mono();
    if (now >= deadline) { reason = "timeout"; break; }
    if (att >= next_poll || now >= next_time) { /* every 64 attempts, or 50 ms for slow ones */
      next_poll = att + 64;
      next_time = now + 0.05;
      struct pollfd p = {ctrl, POLLIN, 0};
      if (poll(&p, 1, 0) > 0) {
        int w = read_words(ctrl);
        if (w & (W_EOF | W_STOP | W_CLOSE)) { reason = "released"; break; }
      }
      if (now - last_prog >= PROGRESS_S) {
        put("{\"t\":\"p\",\"n\":%ld,\"a\":%ld}", est, att);
        flush_line();
        last_prog = now;
      }
    }
    if (rate > 0) {
      double target = t0 + (base_att + att) / rate;
      if (target > now) {
        double d = target - now, left = deadline - now;
        if (d > left) d = left > 0 ? left : 0;
        struct timespec ts = {(time_t)d, (long)((d - (long)d) * 1e9)};
        nanosleep(&ts, NULL);
        continue;
      }
    }
    if (nactive == 0) { reason = "exhausted"; break; }
    if (att >= max_att) { reason = "attempts"; break; }
    int i = active[rr % nactive];
    att++;
    int code = 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) code = errno;
    else if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) code = errno;
    else if (reuse && setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) code = errno;
    else if (!reuse && no_port && setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0) code = errno;
    else if (has_src[i] && bind(s, (struct sockaddr *)&src[i], sizeof src[i]) < 0) code = errno;
    else if (connect(s, (struct sockaddr *)&dst[i], sizeof dst[i]) < 0) code = errno;
    else if (send_len > 0) {
      /* Blocking, bounded by SO_SNDTIMEO: a short count means the time ran out. */
      ssize_t n = send(s, payload, (size_t)send_len, MSG_NOSIGNAL);
      if (n < 0) code = errno;
      else {
        sent += n;
        if (n < send_len) code = ETIMEDOUT;
      }
    }
    if (code == 0) {
      est++;
      per[i]++;
      rr++;
      struct sockaddr_in me;
      socklen_t ml = sizeof me;
      if (getsockname(s, (struct sockaddr *)&me, &ml) == 0) ports[ntohs(me.sin_port)] = 1;
      if (park(s)) held[nheld++] = s;
      continue;
    }
    if (s >= 0) close(s);
    if (code == EINPROGRESS || code == EAGAIN) code = ETIMEDOUT; /* SO_SNDTIMEO ran out */
    int k;
    for (k = 0; k < nerrs && errs[k].e != code; k++) {}
    if (k == nerrs && nerrs < 32) errs[nerrs++] = (struct err_count){code, 0};
    if (k < 32) errs[k].n++;
    if (!first_set) first_set = 1, first_errno = code, first_after = base + est, first_pair = i;
    if (code == EADDRNOTAVAIL || code == EADDRINUSE) {
      /* this 4-tuple space is used up; rr now points at the next pair */
      int j = 0;
      for (int m = 0; m < nactive; m++) if (active[m] != i) active[j++] = active[m];
      nactive = j;
      continue;
    }
    if ((code == EMFILE || code == ENFILE) && !stop_on_error) { reason = "full"; break; }
    if (stop_on_error) { reason = "error"; break; }
    rr++;
  }
  park_flush();
  put("{\"t\":\"d\",\"n\":%ld,\"a\":%ld,\"sent\":%ld,\"loopMs\":%.1f,\"errors\":{", est, att, sent, (mono() - loop_t0) * 1000);
  for (int k = 0; k < nerrs; k++) put("%s\"%s\":%ld", k ? "," : "", errname(errs[k].e), errs[k].n);
  put("},\"first\":");
  if (first_set)
    put("{\"errno\":\"%s\",\"message\":\"%s\",\"after\":%ld,\"pair\":%d}", errname(first_errno), strerror(first_errno),
        first_after, first_pair);
  else
    put("null");
  put(",\"per\":[");
  for (int i = 0; i < npairs; i++) put("%s%ld", i ? "," : "", per[i]);
  put("],\"active\":[");
  for (int k = 0; k < nactive; k++) put("%s%d", k ? "," : "", active[k]);
  put("],\"rr\":%ld,\"reason\":\"%s\",\"ports\":\"", rr, reason);
  put_ports(ports);
  put("\"}");
  flush_line();
  free(ports);
  free(payload);
  hold(ctrl, held, nheld);
  return 0;
}

static int accept_main(int argc, char **argv) {
  if (argc != 8) return 2;
  int ctrl = atoi(argv[2]);
  rep_fd = atoi(argv[3]);
  int lfd = atoi(argv[4]);
  long cap = atol(argv[5]), margin = atol(argv[6]);
  close_others(lfd > ctrl ? (lfd > rep_fd ? lfd : rep_fd) : (ctrl > rep_fd ? ctrl : rep_fd));
  int *held = malloc(sizeof(int) * (cap > 0 ? cap : 1));
  long n = 0, sent = 0, nheld = 0;
  park_init(atoi(argv[7]));
  int near = 0, accepting = 1;
  double last = mono();
  for (;;) {
    struct pollfd p[2] = {{ctrl, POLLIN, 0}, {lfd, POLLIN, 0}};
    int r = poll(p, accepting ? 2 : 1, n != sent ? 100 : -1);
    if (r > 0 && p[0].revents) {
      int w = read_words(ctrl);
      if (w & W_EOF) _exit(0);
      if (w & (W_CLOSE | W_ABORT)) {
        long c = close_held(held, nheld, w & (W_ABORT | W_DROP));
        put("{\"t\":\"c\",\"closed\":%ld,\"batched\":%ld}", c, batched);
        flush_line();
        _exit(0);
      }
    }
    if (r > 0 && accepting && p[1].revents) {
      while (n < cap) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          if (errno == EMFILE || errno == ENFILE) { cap = n; break; }
          continue; /* ECONNABORTED and friends: next one */
        }
        n++;
        if (park(c)) held[nheld++] = c;
      }
      if (n >= cap) {
        accepting = 0;
        put("{\"t\":\"p\",\"n\":%ld}\n{\"t\":\"full\",\"n\":%ld}", n, n);
        flush_line();
        sent = n;
      } else if (!near && n >= cap - margin) {
        near = 1;
        put("{\"t\":\"near\",\"n\":%ld}", n);
        flush_line();
      }
    }
    double now = mono();
    if (n != sent && now - last >= PROGRESS_S) {
      put("{\"t\":\"p\",\"n\":%ld}", n);
      flush_line();
      sent = n;
      last = now;
    }
  }
}

int main(int argc, char **argv) {
  /* Die with the agent (it spawns us from a thread that lives as long as it does);
   * it may be gone already, before prctl took effect. */
  const char *agent = getenv("LAB_AGENT_PID");
  if (agent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)atol(agent)) _exit(0);
  }
  out_cap = 1 << 16;
  out = malloc(out_cap);
  if (argc >= 2 && strcmp(argv[1], "connect") == 0) return connect_main(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "accept") == 0) return accept_main(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "version") == 0) {
    printf("fastconn 1\n");
    return 0;
  }
  fprintf(stderr, "usage: fastconn connect ... | accept CTRL REP LFD CAP MARGIN PARK | version\n");
  return 2;
}
