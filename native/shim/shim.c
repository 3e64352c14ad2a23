// devmap's preload shim: an unmodified program as a client process of a devmap kernel host.
//
// `devmap run --kernel PATH -- prog args…` starts prog with LD_PRELOAD naming this library, DEVMAP_KERNEL the
// host's socket and DEVMAP_PATHS the device paths it serves (colon separated). The shim interposes the libc
// calls a program uses on a device and sends those that name a served device to the host; every other call
// goes to libc untouched (one table lookup on the way).
//
//  - open/open64/openat/openat64 (and the _2 fortified forms) of a served path: the first one connects
//    (hello, then a PROT_NONE reservation of the size the host's address spaces have). The program gets a real
//    descriptor of /dev/null, so fstat says "character device", poll and exec see a real descriptor, and the
//    table maps it to the host's descriptor. dup, dup2, dup3, fcntl(F_DUPFD[_CLOEXEC]) make aliases; the
//    host's descriptor is closed with the last alias.
//  - read/write: the bytes travel in the messages, at most DM_MAX_IO per call (a longer call is short). The
//    user buffer is checked page by page with process_vm_readv/writev on this very process before the request,
//    so that the driver's uiomove sees EFAULT exactly where an unmapped page starts, and nothing here faults.
//  - ioctl: the argument is copied in (_IOC_WRITE) and out (_IOC_READ) by _IOC_SIZE; without a size it travels
//    as an integer.
//  - mmap/mmap64 of a device descriptor: the host runs the driver and answers with the changes to make in the
//    reservation (map this object at this offset, reserve that range again, protect); munmap and mprotect of
//    ranges in the reservation go to the host, the rest of the range to libc. MAP_FIXED of something else into
//    the reservation is refused (EINVAL): the host owns that range.
//  - fork: the host forks the kernel process (devmap_dup) and hands a token; the shim connects a second socket
//    and adopts the child with it before the real fork, so the child has its own connection from its first
//    instruction, and if the fork fails the parent just closes it (the host then exits the kernel child).
//  - exit: a destructor says goodbye and waits for the host's exit path. Without it (_exit, a crash, SIGKILL,
//    exec — the socket is close-on-exec) the socket's end is the exit.
//
// One mutex serializes requests (one socket per process). The shim never calls an interposed function for its
// own work: raw system calls and the libc functions found with dlsym(RTLD_NEXT).
// The interposed names must be the plain symbols (open, not open64 by redirection): no 64-bit-offset renames.
#undef _FILE_OFFSET_BITS
#undef _LARGEFILE_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "agent.h"
#include "protocol.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_FDS 65536
#define MAX_PATHS 64

// --- libc behind us ------------------------------------------------------------------------------------

static int (*real_open)(const char*, int, ...);
static int (*real_openat)(int, const char*, int, ...);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static ssize_t (*real_read)(int, void*, size_t);
static ssize_t (*real_write)(int, const void*, size_t);
static int (*real_ioctl)(int, unsigned long, ...);
static pid_t (*real_fork)(void);

static void find_libc(void) {
  if (real_close) return;
  real_open = dlsym(RTLD_NEXT, "open");
  real_openat = dlsym(RTLD_NEXT, "openat");
  real_dup = dlsym(RTLD_NEXT, "dup");
  real_dup2 = dlsym(RTLD_NEXT, "dup2");
  real_dup3 = dlsym(RTLD_NEXT, "dup3");
  real_fcntl = dlsym(RTLD_NEXT, "fcntl");
  real_read = dlsym(RTLD_NEXT, "read");
  real_write = dlsym(RTLD_NEXT, "write");
  real_ioctl = dlsym(RTLD_NEXT, "ioctl");
  real_fork = dlsym(RTLD_NEXT, "fork");
  real_close = dlsym(RTLD_NEXT, "close");
}

static long ioctl_raw(int fd, unsigned long req, void* arg) { return syscall(SYS_ioctl, fd, req, arg); }

static void* raw_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  return (void*)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

// --- state ---------------------------------------------------------------------------------------------

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int conn = -1;                // the socket to the host
static uintptr_t base;               // the reservation
static size_t size;
static size_t max_io = DM_MAX_IO;
static char* paths[MAX_PATHS];
static int npaths = -1;
static int32_t* fdmap;               // program descriptor -> host descriptor + 1 (0: not a device)
static int32_t* refs;                // host descriptor -> aliases
static int said_why;
static int uffd = -1;                // real faults (agent.c): this process's userfaultfd, agent socket and id
static int agent_sock = -1;
static int agent_id = -1;

static void load_paths(void) {
  if (npaths >= 0) return;
  npaths = 0;
  const char* env = getenv("DEVMAP_PATHS");
  if (!env) return;
  char* copy = strdup(env);
  for (char* save = NULL, *p = strtok_r(copy, ":", &save); p && npaths < MAX_PATHS; p = strtok_r(NULL, ":", &save)) {
    paths[npaths++] = p;
  }
}

static int served(const char* path) {
  if (!path || path[0] != '/') return 0;
  load_paths();
  for (int i = 0; i < npaths; i++) if (strcmp(paths[i], path) == 0) return 1;
  return 0;
}

static inline int host_fd(int fd) {
  return fd >= 0 && fd < MAX_FDS && fdmap ? fdmap[fd] - 1 : -1;
}

static inline int in_reservation(uintptr_t a, size_t len) {
  return conn >= 0 && a < base + size && a + len > base;
}

// --- frames --------------------------------------------------------------------------------------------

static unsigned char out[DM_MAX_FRAME];
static unsigned char in[DM_MAX_FRAME];
static int in_fds[64];
static int in_nfds;

struct reply {
  int64_t* words;
  int nwords;
  unsigned char* bytes;
  size_t nbytes;
};

static int send_all(int s, const void* buf, size_t len) {
  const unsigned char* p = buf;
  while (len > 0) {
    ssize_t n = send(s, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void drop_fds(void) {
  for (int i = 0; i < in_nfds; i++) syscall(SYS_close, in_fds[i]);
  in_nfds = 0;
}

// Receives one whole frame on `s` (descriptors into in_fds).
static int recv_frame(int s, struct reply* r) {
  size_t have = 0, want = DM_HEADER;
  in_nfds = 0;
  while (have < want) {
    struct iovec iov = {in + have, sizeof in - have};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int) * 64)]; } control;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      int* fds = (int*)CMSG_DATA(c);
      for (int i = 0; i < count; i++) {
        if (in_nfds < 64) in_fds[in_nfds++] = fds[i];
        else syscall(SYS_close, fds[i]);
      }
    }
    if (n <= 0) {
      drop_fds();
      return -1;
    }
    have += (size_t)n;
    if (want == DM_HEADER && have >= DM_HEADER) {
      struct dm_header h;
      memcpy(&h, in, sizeof h);
      if (h.size < DM_HEADER || h.size > DM_MAX_FRAME || DM_HEADER + (size_t)h.words * 8 > h.size) {
        drop_fds();
        return -1;
      }
      want = h.size;
    }
  }
  struct dm_header h;
  memcpy(&h, in, sizeof h);
  r->words = (int64_t*)(in + DM_HEADER);
  r->nwords = h.words;
  r->bytes = in + DM_HEADER + (size_t)h.words * 8;
  r->nbytes = h.size - DM_HEADER - (size_t)h.words * 8;
  return 0;
}

// Sends a request on `s` and waits for its reply. -1 (errno ENXIO) when the host is gone.
static int call_on(int s, int op, const int64_t* words, int nwords, const void* bytes, size_t nbytes, struct reply* r) {
  size_t total = DM_HEADER + (size_t)nwords * 8 + nbytes;
  if (total > sizeof out) {
    errno = EINVAL;
    return -1;
  }
  struct dm_header h = {(uint32_t)total, (uint16_t)op, (uint16_t)nwords};
  memcpy(out, &h, sizeof h);
  memcpy(out + DM_HEADER, words, (size_t)nwords * 8);
  if (nbytes) memcpy(out + DM_HEADER + (size_t)nwords * 8, bytes, nbytes);
  if (send_all(s, out, total) < 0 || recv_frame(s, r) < 0) {
    errno = ENXIO;
    return -1;
  }
  struct dm_header rh;
  memcpy(&rh, in, sizeof rh);
  if (rh.op != (op | DM_REPLY) || r->nwords < 1) {
    drop_fds();
    errno = ENXIO;
    return -1;
  }
  return 0;
}

static int call(int op, const int64_t* words, int nwords, const void* bytes, size_t nbytes, struct reply* r) {
  return call_on(conn, op, words, nwords, bytes, nbytes, r);
}

// The reply's errno (its first word is 0 or -errno); sets errno and returns -1 for a failure.
static int status(const struct reply* r) {
  if (r->words[0] < 0) {
    errno = (int)-r->words[0];
    return -1;
  }
  return 0;
}

// Applies the reservation changes listed from word `at` on; closes the descriptors that came with them.
static void apply_changes(const struct reply* r, int at) {
  if (at >= r->nwords) return drop_fds();
  int64_t count = r->words[at];
  for (int64_t i = 0; i < count && at + 1 + (i + 1) * DM_CHANGE_WORDS <= r->nwords; i++) {
    const int64_t* c = r->words + at + 1 + i * DM_CHANGE_WORDS;
    uint64_t off = (uint64_t)c[1], len = (uint64_t)c[2];
    int prot = (int)(c[3] & 0xff), type = (int)((c[3] >> 8) & 0xff);
    if (off >= size || len == 0 || len > size - off) continue;  // never outside the reservation
    void* a = (void*)(base + off);
    if (c[0] == DM_CHANGE_MAP) {
      int fd = c[4] < 0 ? -1 : (c[4] < in_nfds ? in_fds[c[4]] : -2);
      if (fd == -2) continue;
      int flags = MAP_FIXED | (type == MAP_SHARED ? MAP_SHARED : MAP_PRIVATE) | (fd < 0 ? MAP_ANONYMOUS : 0);
      raw_mmap(a, len, prot & 7, flags, fd, (off_t)c[5]);
    } else if (c[0] == DM_CHANGE_RESERVE) {
      raw_mmap(a, len, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    } else if (c[0] == DM_CHANGE_PROTECT) {
      syscall(SYS_mprotect, a, len, prot & 7);
    } else if (c[0] == DM_CHANGE_REGISTER && uffd >= 0) {
      // Its pages fault into the host from now on; a forked child's inherited pages start unloaded (SPEC A.5).
      struct uffdio_register reg = {{(uint64_t)(uintptr_t)a, len}, UFFDIO_REGISTER_MODE_MINOR, 0};
      ioctl_raw(uffd, UFFDIO_REGISTER, &reg);
      madvise(a, len, MADV_DONTNEED);
    }
  }
  drop_fds();
}

// --- connection ----------------------------------------------------------------------------------------

static int connect_socket(void) {
  const char* path = getenv("DEVMAP_KERNEL");
  if (!path) {
    errno = ENXIO;
    return -1;
  }
  struct sockaddr_un sa = {0};
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(sa.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int rc;
  do rc = connect(s, (struct sockaddr*)&sa, sizeof sa);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    syscall(SYS_close, s);
    errno = ENXIO;
    return -1;
  }
  return s;
}

// Takes the host's welcome (hello or adopt reply): the reservation size, the I/O limit.
static int welcome(const struct reply* r) {
  if (status(r) < 0 || r->nwords < 5) return -1;
  size = (size_t)r->words[2];
  max_io = (size_t)r->words[3] < DM_MAX_IO ? (size_t)r->words[3] : DM_MAX_IO;
  return 0;
}

// A userfaultfd for minor faults on shared memory (see lib/kernel/remote/agent.ts for the order of attempts);
// -errno and a reason when there is none.
static int open_uffd(const char** why) {
  int fd = -1;
  const char* force = getenv("DEVMAP_UFFD_USER_MODE_ONLY");
  if (!(force && strcmp(force, "1") == 0)) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
  if (fd < 0 && errno == ENOSYS) {
    *why = "this kernel has no userfaultfd (built without CONFIG_USERFAULTFD). To fix: run on a kernel with CONFIG_USERFAULTFD=y (Linux 5.14 or later)";
    return -ENOSYS;
  }
  if (fd < 0) {
    int err = errno;
    int dev = real_open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
      fd = (int)ioctl_raw(dev, USERFAULTFD_IOC_NEW, (void*)(long)(O_CLOEXEC | O_NONBLOCK));
      syscall(SYS_close, dev);
    }
    if (fd < 0) {
      *why = "userfaultfd(2) is refused to this user (vm.unprivileged_userfaultfd is 0 and this kernel has no UFFD_USER_MODE_ONLY) "
             "and /dev/userfaultfd cannot be opened. To fix: run on Linux 5.11 or later, or `sysctl vm.unprivileged_userfaultfd=1`, "
             "or give this user access to /dev/userfaultfd";
      return -err;
    }
  }
  struct uffdio_api api = {UFFD_API, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID, 0};
  if (ioctl_raw(fd, UFFDIO_API, &api) < 0) {
    int err = errno;
    syscall(SYS_close, fd);
    *why = "this kernel has no minor faults on shared memory (UFFD_FEATURE_MINOR_SHMEM). To fix: run on Linux 5.14 or later";
    return -err;
  }
  return fd;
}

// Real faults (SPEC A.9): the uffd goes to the host with the agent hello; the agent thread serves the host's
// devmap_unload requests and watches for its death. Without a uffd the host is told why, and refuses to map a
// driver with devmap_access with that reason. Called with the lock held, on a fresh connection.
static void setup_faults(void) {
  const char* why = NULL;
  struct reply r;
  int fd = open_uffd(&why);
  if (fd < 0) {
    int64_t w[1] = {fd};
    if (call(DM_FAULTS, w, 1, why, strlen(why), &r) == 0) drop_fds();
    return;
  }
  int64_t w[1] = {0};
  if (call(DM_AGENT, w, 1, NULL, 0, &r) < 0) goto fail;
  if (status(&r) < 0 || in_nfds != 1) {
    drop_fds();
    goto fail;
  }
  agent_sock = in_fds[0];
  in_nfds = 0;  // ours now
  if (dm_agent_hello(agent_sock, fd, base, size) < 0) goto fail;
  uffd = fd;
  if (call(DM_FAULTS, w, 1, NULL, 0, &r) < 0) goto fail;
  apply_changes(&r, 1);
  agent_id = dm_agent_start(agent_sock, uffd, base, size, 1);
  return;
fail:
  if (agent_sock >= 0) syscall(SYS_close, agent_sock);
  syscall(SYS_close, fd);
  agent_sock = uffd = -1;
}

// Before a system call is handed [buf, buf + len): its pages inside the reservation are faulted in by the host
// (devmap_access), because the kernel does not serve a system call's own faults on a user-mode-only uffd. A
// refused page stays unloaded, and the copy then stops there with EFAULT, as copyin does on illumos.
static void prefault(const void* buf, size_t len, int writing) {
  uintptr_t a = (uintptr_t)buf, end = a + len;
  if (uffd < 0 || len == 0 || !in_reservation(a, len)) return;
  uintptr_t lo = a > base ? a : base, hi = end < base + size ? end : base + size;
  int64_t w[3] = {(int64_t)(lo - base), (int64_t)(hi - lo), writing};
  struct reply r;
  if (call(DM_PREFAULT, w, 3, NULL, 0, &r) == 0) drop_fds();
}

static int ensure_connected(void) {
  if (conn >= 0) return 0;
  if (!fdmap) {
    fdmap = calloc(MAX_FDS, sizeof *fdmap);
    refs = calloc(MAX_FDS, sizeof *refs);
    if (!fdmap || !refs) {
      errno = ENOMEM;
      return -1;
    }
  }
  int s = connect_socket();
  if (s < 0) return -1;
  int64_t w[2] = {DM_PROTOCOL_VERSION, getpid()};
  struct reply r;
  if (call_on(s, DM_HELLO, w, 2, NULL, 0, &r) < 0 || welcome(&r) < 0) {
    drop_fds();
    syscall(SYS_close, s);
    errno = ENXIO;
    return -1;
  }
  drop_fds();
  void* a = raw_mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == MAP_FAILED) {
    syscall(SYS_close, s);
    errno = ENOMEM;
    return -1;
  }
  base = (uintptr_t)a;
  conn = s;
  setup_faults();
  return 0;
}

// --- descriptors ---------------------------------------------------------------------------------------

static void alias(int fd, int hfd) {
  if (fd < 0 || fd >= MAX_FDS || hfd < 0 || hfd >= MAX_FDS) return;
  fdmap[fd] = hfd + 1;
  refs[hfd]++;
}

// Forgets `fd`; the host's descriptor closes with its last alias. Called with the lock held.
static void unalias(int fd) {
  int hfd = host_fd(fd);
  if (hfd < 0) return;
  fdmap[fd] = 0;
  if (--refs[hfd] > 0 || conn < 0) return;
  int64_t w[1] = {hfd};
  struct reply r;
  if (call(DM_CLOSE, w, 1, NULL, 0, &r) == 0) drop_fds();
}

static int dev_open(const char* path, int flags) {
  find_libc();
  pthread_mutex_lock(&lock);
  int fd = -1;
  if (ensure_connected() < 0) goto out;
  int64_t w[1] = {flags};
  struct reply r;
  if (call(DM_OPEN, w, 1, path, strlen(path), &r) < 0 || status(&r) < 0) goto out;
  int hfd = (int)r.words[1];
  // A real descriptor for everything else a runtime does with one (fstat: a character device; poll; exec).
  fd = real_open("/dev/null", O_RDWR | (flags & O_CLOEXEC));
  if (fd < 0 || fd >= MAX_FDS) {
    int saved = fd < 0 ? errno : EMFILE;
    if (fd >= 0) real_close(fd);
    int64_t c[1] = {hfd};
    if (call(DM_CLOSE, c, 1, NULL, 0, &r) == 0) drop_fds();
    errno = saved;
    fd = -1;
    goto out;
  }
  alias(fd, hfd);
out:
  pthread_mutex_unlock(&lock);
  return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char* path, int flags, ...) {
  find_libc();
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (served(path)) return dev_open(path, flags);
  return real_open(path, flags, mode);
}

EXPORT int open64(const char* path, int flags, ...) {
  find_libc();
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (served(path)) return dev_open(path, flags);
  return real_open(path, flags | O_LARGEFILE, mode);
}

EXPORT int openat(int dirfd, const char* path, int flags, ...) {
  find_libc();
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (served(path)) return dev_open(path, flags);
  return real_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
  find_libc();
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  if (served(path)) return dev_open(path, flags);
  return real_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

EXPORT int __open_2(const char* path, int flags) { return open(path, flags); }
EXPORT int __open64_2(const char* path, int flags) { return open64(path, flags); }
EXPORT int __openat_2(int dirfd, const char* path, int flags) { return openat(dirfd, path, flags); }
EXPORT int __openat64_2(int dirfd, const char* path, int flags) { return openat64(dirfd, path, flags); }

EXPORT int close(int fd) {
  find_libc();
  if (fd >= 0 && fd == conn) return 0;  // the kernel connection is not the program's to close
  if (host_fd(fd) >= 0) {
    pthread_mutex_lock(&lock);
    unalias(fd);
    pthread_mutex_unlock(&lock);
  }
  return real_close(fd);
}

EXPORT int dup(int fd) {
  find_libc();
  int nfd = real_dup(fd);
  int hfd = host_fd(fd);
  if (nfd >= 0 && hfd >= 0) {
    pthread_mutex_lock(&lock);
    alias(nfd, hfd);
    pthread_mutex_unlock(&lock);
  }
  return nfd;
}

static int dup_onto(int fd, int nfd, int flags, int three) {
  find_libc();
  if (nfd >= 0 && nfd == conn) {
    errno = EBUSY;  // would close the kernel connection under the program's feet
    return -1;
  }
  int rc = three ? real_dup3(fd, nfd, flags) : real_dup2(fd, nfd);
  if (rc < 0 || fd == nfd) return rc;
  int hfd = host_fd(fd);
  if (host_fd(nfd) >= 0 || hfd >= 0) {
    pthread_mutex_lock(&lock);
    unalias(nfd);  // dup2 closed what nfd was
    if (hfd >= 0) alias(nfd, hfd);
    pthread_mutex_unlock(&lock);
  }
  return rc;
}

EXPORT int dup2(int fd, int nfd) { return dup_onto(fd, nfd, 0, 0); }
EXPORT int dup3(int fd, int nfd, int flags) { return dup_onto(fd, nfd, flags, 1); }

static int do_fcntl(int fd, int cmd, void* arg) {
  find_libc();
  int rc = real_fcntl(fd, cmd, arg);
  int hfd = host_fd(fd);
  if (rc >= 0 && hfd >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
    pthread_mutex_lock(&lock);
    alias(rc, hfd);
    pthread_mutex_unlock(&lock);
  }
  return rc;
}

EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return do_fcntl(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  return do_fcntl(fd, cmd, arg);
}

// --- read, write, ioctl ----------------------------------------------------------------------------------

// How many leading bytes of [buf, buf + len) this process can read (and, with `writable`, write), found
// page by page with process_vm_readv/writev on itself: a bad page is an error return, never a fault.
static size_t reachable(const void* buf, size_t len, int writable) {
  static unsigned char probe[DM_MAX_IO];
  size_t page = (size_t)sysconf(_SC_PAGESIZE), done = 0;
  while (done < len) {
    uintptr_t a = (uintptr_t)buf + done;
    size_t n = page - (a % page);
    if (n > len - done) n = len - done;
    struct iovec local = {probe, n}, remote = {(void*)a, n};
    if (syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0) != (long)n) break;
    // Writing back the bytes just read proves the page writable without changing it.
    if (writable && syscall(SYS_process_vm_writev, getpid(), &local, 1, &remote, 1, 0) != (long)n) break;
    done += n;
  }
  return done;
}

// Copies n bytes into user memory without faulting; -1 (EFAULT) when they could not all be written.
static int copy_out(void* dst, const void* src, size_t n) {
  if (n == 0) return 0;
  struct iovec local = {(void*)src, n}, remote = {dst, n};
  if (syscall(SYS_process_vm_writev, getpid(), &local, 1, &remote, 1, 0) != (long)n) {
    errno = EFAULT;
    return -1;
  }
  return 0;
}

static int copy_in(void* dst, const void* src, size_t n) {
  if (n == 0) return 0;
  struct iovec local = {dst, n}, remote = {(void*)src, n};
  if (syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0) != (long)n) {
    errno = EFAULT;
    return -1;
  }
  return 0;
}

EXPORT ssize_t read(int fd, void* buf, size_t count) {
  find_libc();
  int hfd = host_fd(fd);
  if (hfd < 0) return real_read(fd, buf, count);
  if (count > max_io) count = max_io;
  pthread_mutex_lock(&lock);
  ssize_t rc = -1;
  prefault(buf, count, 1);
  size_t valid = reachable(buf, count, 1);
  int64_t w[4] = {hfd, (int64_t)count, (int64_t)valid, (int64_t)(uintptr_t)buf};
  struct reply r;
  if (call(DM_READ, w, 4, NULL, 0, &r) == 0) {
    drop_fds();
    if (status(&r) == 0) {
      size_t n = (size_t)r.words[1];
      if (n > r.nbytes) n = r.nbytes;
      rc = copy_out(buf, r.bytes, n) == 0 ? (ssize_t)n : -1;
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

EXPORT ssize_t __read_chk(int fd, void* buf, size_t count, size_t buflen) {
  if (count > buflen) abort();  // what glibc's own __read_chk does: a buffer overflow in the caller
  return read(fd, buf, count);
}

EXPORT ssize_t write(int fd, const void* buf, size_t count) {
  find_libc();
  int hfd = host_fd(fd);
  if (hfd < 0) return real_write(fd, buf, count);
  if (count > max_io) count = max_io;
  pthread_mutex_lock(&lock);
  static unsigned char data[DM_MAX_IO];
  ssize_t rc = -1;
  prefault(buf, count, 0);
  size_t valid = reachable(buf, count, 0);
  if (copy_in(data, buf, valid) == 0) {
    int64_t w[3] = {hfd, (int64_t)count, (int64_t)(uintptr_t)buf};
    struct reply r;
    if (call(DM_WRITE, w, 3, data, valid, &r) == 0) {
      drop_fds();
      if (status(&r) == 0) rc = (ssize_t)r.words[1];
    }
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

EXPORT int ioctl(int fd, unsigned long request, ...) {
  find_libc();
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  int hfd = host_fd(fd);
  if (hfd < 0) return real_ioctl(fd, request, arg);
  unsigned dir = _IOC_DIR(request), sz = dir == _IOC_NONE ? 0 : _IOC_SIZE(request);
  static unsigned char data[1 << 14];
  pthread_mutex_lock(&lock);
  int rc = -1;
  if (sz > 0) prefault(arg, sz, (dir & _IOC_READ) != 0);
  if ((dir & _IOC_WRITE) && sz > 0 && copy_in(data, arg, sz) < 0) goto out;
  int64_t w[3] = {hfd, (int64_t)(uint32_t)request, (int64_t)(intptr_t)arg};
  struct reply r;
  if (call(DM_IOCTL, w, 3, data, (dir & _IOC_WRITE) ? sz : 0, &r) < 0) goto out;
  drop_fds();
  if (status(&r) < 0) goto out;
  if ((dir & _IOC_READ) && sz > 0 && copy_out(arg, r.bytes, r.nbytes < sz ? r.nbytes : sz) < 0) goto out;
  rc = 0;
out:
  pthread_mutex_unlock(&lock);
  return rc;
}

// --- memory --------------------------------------------------------------------------------------------

static void say_why(const struct reply* r) {
  if (said_why || r->nbytes == 0) return;
  said_why = 1;
  char msg[512];
  int n = snprintf(msg, sizeof msg, "devmap: %.*s\n", (int)(r->nbytes < 400 ? r->nbytes : 400), (const char*)r->bytes);
  if (n > 0) syscall(SYS_write, 2, msg, (size_t)n);
}

static void* dev_mmap(void* addr, size_t len, int prot, int flags, int hfd, off_t off) {
  pthread_mutex_lock(&lock);
  void* result = MAP_FAILED;
  int64_t hint = -1;
  if (flags & MAP_FIXED) {
    uintptr_t a = (uintptr_t)addr;
    if (a < base || a + len > base + size) {
      errno = EINVAL;
      goto out;
    }
    hint = (int64_t)(a - base);
  }
  int64_t w[6] = {hint, (int64_t)len, prot, flags, hfd, (int64_t)off};
  struct reply r;
  if (call(DM_MMAP, w, 6, NULL, 0, &r) < 0) goto out;
  apply_changes(&r, 2);
  if (status(&r) < 0) {
    if (errno == ENOTSUP) say_why(&r);
    goto out;
  }
  result = (void*)(base + (uintptr_t)r.words[1]);
out:
  pthread_mutex_unlock(&lock);
  return result;
}

EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  find_libc();
  int hfd = (flags & MAP_ANONYMOUS) ? -1 : host_fd(fd);
  if (hfd >= 0) return dev_mmap(addr, len, prot, flags, hfd, off);
  if ((flags & MAP_FIXED) && in_reservation((uintptr_t)addr, len)) {
    errno = EINVAL;  // the host owns the reservation: only device mappings go there
    return MAP_FAILED;
  }
  return raw_mmap(addr, len, prot, flags, fd, off);  // syscall(): MAP_FAILED and errno on failure
}

EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  return mmap(addr, len, prot, flags, fd, off);
}

// Splits [a, a + len) into the part inside the reservation (sent to the host) and the parts outside.
static int range_call(int op, uintptr_t a, size_t len, int prot) {
  uintptr_t end = a + len, lo = a > base ? a : base, hi = end < base + size ? end : base + size;
  int rc = 0;
  if (a < lo) rc |= (int)syscall(op == DM_MUNMAP ? SYS_munmap : SYS_mprotect, a, lo - a, prot);
  if (end > hi) rc |= (int)syscall(op == DM_MUNMAP ? SYS_munmap : SYS_mprotect, hi, end - hi, prot);
  if (rc < 0) return -1;
  pthread_mutex_lock(&lock);
  int64_t w[3] = {(int64_t)(lo - base), (int64_t)(hi - lo), prot};
  struct reply r;
  rc = call(op, w, op == DM_MUNMAP ? 2 : 3, NULL, 0, &r);
  if (rc == 0) {
    apply_changes(&r, 1);
    rc = status(&r);
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

EXPORT int munmap(void* addr, size_t len) {
  if (!in_reservation((uintptr_t)addr, len)) return (int)syscall(SYS_munmap, addr, len);
  return range_call(DM_MUNMAP, (uintptr_t)addr, len, 0);
}

EXPORT int mprotect(void* addr, size_t len, int prot) {
  if (!in_reservation((uintptr_t)addr, len)) return (int)syscall(SYS_mprotect, addr, len, prot);
  return range_call(DM_MPROTECT, (uintptr_t)addr, len, prot);
}

// --- fork and exit -------------------------------------------------------------------------------------

EXPORT pid_t fork(void) {
  find_libc();
  pthread_mutex_lock(&lock);
  if (conn < 0) {
    pthread_mutex_unlock(&lock);
    return real_fork();
  }
  pid_t pid = -1;
  int child_conn = -1;
  struct reply r;
  if (call(DM_FORK, NULL, 0, NULL, 0, &r) < 0) goto fail;
  drop_fds();
  if (status(&r) < 0) goto fail;
  int64_t token = r.words[1];
  child_conn = connect_socket();
  if (child_conn < 0) goto fail;
  int64_t w[2] = {token, 0};
  if (call_on(child_conn, DM_ADOPT, w, 2, NULL, 0, &r) < 0 || status(&r) < 0) goto fail;
  drop_fds();
  pid = real_fork();
  if (pid == 0) {
    syscall(SYS_close, conn);
    conn = child_conn;
    // The parent's uffd and agent belong to the parent's address space; the child makes its own.
    if (uffd >= 0) syscall(SYS_close, uffd);
    if (agent_sock >= 0) syscall(SYS_close, agent_sock);
    uffd = agent_sock = agent_id = -1;
    setup_faults();
  } else {
    syscall(SYS_close, child_conn);  // also when the fork failed: the host then exits the kernel child
  }
  pthread_mutex_unlock(&lock);
  return pid;
fail:
  if (child_conn >= 0) syscall(SYS_close, child_conn);
  pthread_mutex_unlock(&lock);
  errno = EAGAIN;
  return -1;
}

__attribute__((destructor)) static void goodbye(void) {
  if (conn < 0) return;
  pthread_mutex_lock(&lock);
  int64_t w[1] = {0};
  struct reply r;
  // The agent first: the host's end of its socket closes with the exit, which is no death of the host.
  if (agent_id >= 0) dm_agent_stop(agent_id);
  agent_id = -1;
  if (call(DM_EXIT, w, 1, NULL, 0, &r) == 0) drop_fds();
  syscall(SYS_close, conn);
  conn = -1;
  pthread_mutex_unlock(&lock);
}

// The package installs with node-gyp-build, which proves a prebuild by loading it as a Node module. This is the
// N-API entry point Node looks up by name (no Node symbol is needed to define it): the shim registers nothing,
// and loading it into Node with require() interposes nothing (addons are loaded RTLD_LOCAL).
EXPORT void* napi_register_module_v1(void* env, void* exports) {
  (void)env;
  return exports;
}
