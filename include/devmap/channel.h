/*
 * devmap/channel.h — a devmap channel from C (and C++): send and receive on the same segment as Node and Python.
 *
 * Single header. In exactly one translation unit, before including it:   #define DEVMAP_CHANNEL_IMPLEMENTATION
 * Linux only (futex, /proc). Atomics are the GCC/Clang __atomic builtins with __ATOMIC_SEQ_CST, which are C11's
 * memory_order_seq_cst and also compile as C++.
 *
 * The bytes and the protocol are docs/channel-layout.md; this file follows it. Every function returns 0 or a
 * negative errno:
 *   -EBADMSG    the segment is corrupt (a value that cannot be right; nothing was read through it)
 *   -EAGAIN     not ready (creation unfinished), nothing there / no room now (try* variants, overflow 'fail')
 *   -ETIMEDOUT  the wait ended
 *   -EPIPE      the channel is closed (send), or closed and drained (receive)
 *   -EMSGSIZE   the message is larger than the channel's largest, or than the caller's buffer
 *   -EBUSY      every slot of the kind asked for is held by a live process
 *   -ENOTSUP    a mode this header does not read (mpmc readers)
 *
 *   dm_channel ch;
 *   int rc = dm_channel_attach(&ch, base, length);          // base: mmap of the segment, MAP_SHARED
 *   rc = dm_channel_send(&ch, "hi", 2, -1);                  // timeout in ms, -1 none
 *   char buf[256]; uint32_t len;
 *   rc = dm_channel_receive(&ch, buf, sizeof buf, &len, 1000);
 *   dm_channel_detach(&ch);                                  // gives this process's slots back
 */
#ifndef DEVMAP_CHANNEL_H
#define DEVMAP_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dm_channel {
  uint8_t* base;
  uint32_t* w;          /* the segment as 32-bit words */
  uint32_t mode;        /* 1 spsc, 2 mpsc, 3 mpmc, 4 broadcast */
  uint32_t overflow;    /* 1 block, 2 overwrite, 3 fail */
  uint32_t ring, mask, max_message, record_max, writers, readers, data_offset, total;
  int writer_slot;      /* -1 until the first send */
  uint32_t writer_tag;
  int reader_slot;      /* -1 until the first receive */
  uint32_t cursor_word; /* index of this reader's cursor word */
  uint32_t spin;        /* polls before sleeping (default 2000) */
  uint32_t pending_pos; /* reserved record waited on, and since when (ms, CLOCK_MONOTONIC) */
  int64_t pending_since;
} dm_channel;

/* Bytes a channel with these parameters occupies (0 when they are out of range). mode/overflow as above. */
size_t dm_channel_bytes_for(uint32_t mode, uint32_t ring, uint32_t max_message, uint32_t writers, uint32_t readers);
/* Formats a channel at `base` (zeroed header, geometry, `ready` stored last); nobody may use it yet. */
int dm_channel_format(void* base, size_t length, uint32_t mode, uint32_t overflow, uint32_t ring, uint32_t max_message,
                      uint32_t writers, uint32_t readers);
int dm_channel_attach(dm_channel* ch, void* base, size_t length);
void dm_channel_detach(dm_channel* ch);
/* timeout_ms: -1 waits without end, 0 does not wait. */
int dm_channel_send(dm_channel* ch, const void* data, uint32_t length, int timeout_ms);
int dm_channel_receive(dm_channel* ch, void* buf, uint32_t capacity, uint32_t* length, int timeout_ms);
int dm_channel_close(dm_channel* ch);

#ifdef __cplusplus
}
#endif

#ifdef DEVMAP_CHANNEL_IMPLEMENTATION

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum {
  DMC_MAGIC = 0x48434d44u, DMC_VERSION = 1,
  DMC_H_MAGIC = 0, DMC_H_VERSION = 1, DMC_H_MODE = 2, DMC_H_OVERFLOW = 3, DMC_H_RING = 4, DMC_H_MAX = 5,
  DMC_H_WRITERS = 6, DMC_H_READERS = 7, DMC_H_DATA = 8, DMC_H_TOTAL = 9, DMC_H_READY = 10, DMC_H_CLOSED = 11,
  DMC_TAIL = 16, DMC_RESERVE_LOCK = 17, DMC_LOCK_SLEEPERS = 18, DMC_HEAD = 32,
  DMC_WRITE_SIGNAL = 48, DMC_READER_SLEEPERS = 49, DMC_READ_SIGNAL = 64, DMC_WRITER_SLEEPERS = 65,
  DMC_HEADER = 320, DMC_SLOT = 64,
  DMC_S_PID = 0, DMC_S_START_LO = 1, DMC_S_START_HI = 2, DMC_S_GEN = 3, DMC_S_CURSOR = 4, DMC_S_FLAGS = 5,
  DMC_C_COUNT = 3, DMC_C_BYTES = 4, DMC_C_AUX1 = 5, DMC_C_AUX2 = 6,
  DMC_R_STATE = 0, DMC_R_SPAN = 1, DMC_R_LENGTH = 2, DMC_R_WRITER = 3,
  DMC_RESERVED = 1, DMC_COMMITTED = 2, DMC_ABORTED = 3,
  DMC_LIVENESS_MS = 10, DMC_GEN_MASK = 0x7fffff
};

#define DMC_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define DMC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define DMC_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define DMC_SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_SEQ_CST)

static int dmc_cas(uint32_t* p, uint32_t expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static int64_t dmc_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uint32_t dmc_span_of(uint32_t length) { return (16 + length + 7) & ~7u; }

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), or 0 when unreadable; *zombie set for Z/X. */
static uint64_t dmc_start_time(int pid, int* zombie) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (zombie) *zombie = 0;
  if (fd < 0) return 0;
  ssize_t n = read(fd, line, sizeof line - 1);
  close(fd);
  if (n <= 0) return 0;
  line[n] = 0;
  char* p = strrchr(line, ')');
  if (!p || p[1] != ' ') return 0;
  p += 2; /* field 3 */
  if (zombie) *zombie = (*p == 'Z' || *p == 'X');
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p) return 0;
    p++;
  }
  return strtoull(p, NULL, 10);
}

/* Dead only on the kernel's word: no such pid, a zombie, or another start time. */
static int dmc_alive(int pid, uint64_t start) {
  if (pid <= 0) return 0;
  if (kill(pid, 0) < 0 && errno == ESRCH) return 0;
  int zombie = 0;
  uint64_t now = dmc_start_time(pid, &zombie);
  if (now == 0) return 1;
  if (zombie) return 0;
  return start == 0 || now == start;
}

static uint32_t* dmc_slot(dm_channel* ch, uint32_t i) { return ch->w + DMC_HEADER / 4 + i * (DMC_SLOT / 4); }
static double* dmc_counter(uint32_t* slot, int which) { return (double*)(void*)slot + which; }

static int dmc_owner_alive(uint32_t* s) {
  int32_t pid = (int32_t)DMC_LOAD(&s[DMC_S_PID]);
  if (pid == -1) return 1;
  return dmc_alive(pid, (uint64_t)s[DMC_S_START_LO] | ((uint64_t)s[DMC_S_START_HI] << 32));
}

static int dmc_tag_dead(uint32_t* s, uint32_t tag) {
  if ((DMC_LOAD(&s[DMC_S_GEN]) & DMC_GEN_MASK) != (tag >> 8)) return 1;
  if ((int32_t)DMC_LOAD(&s[DMC_S_PID]) == -1) return 0;
  return !dmc_owner_alive(s);
}

static int dmc_futex_wait(uint32_t* word, uint32_t expected, int ms) {
  struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };
  return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, &t, NULL, 0);
}

static void dmc_futex_wake(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0); }

static void dmc_wake(dm_channel* ch, int signal, int sleepers) {
  if (DMC_LOAD(&ch->w[sleepers]) > 0) {
    DMC_ADD(&ch->w[signal], 1);
    dmc_futex_wake(&ch->w[signal]);
  }
}

/* The sleep of docs/channel-layout.md §4: raise the count, read the signal, look again, then sleep. */
static void dmc_sleep(dm_channel* ch, int signal, int sleepers, int ms, int (*ready)(dm_channel*, uint32_t), uint32_t arg) {
  DMC_ADD(&ch->w[sleepers], 1);
  uint32_t v = DMC_LOAD(&ch->w[signal]);
  if (!ready(ch, arg)) dmc_futex_wait(&ch->w[signal], v, ms);
  DMC_SUB(&ch->w[sleepers], 1);
}

size_t dm_channel_bytes_for(uint32_t mode, uint32_t ring, uint32_t max_message, uint32_t writers, uint32_t readers) {
  if (mode < 1 || mode > 4 || ring < 4096 || ring > (1u << 30) || (ring & (ring - 1)) != 0) return 0;
  if (max_message < 1 || max_message > ring || dmc_span_of(max_message) > ring) return 0;
  if (writers < 1 || writers > 64 || (mode == 1 && writers != 1)) return 0;
  if (readers < 1 || readers > 64 || (mode <= 2 && readers != 1)) return 0;
  size_t data = (DMC_HEADER + DMC_SLOT * (writers + readers) + 63) & ~(size_t)63;
  return data + ring + dmc_span_of(max_message);
}

int dm_channel_format(void* base, size_t length, uint32_t mode, uint32_t overflow, uint32_t ring, uint32_t max_message,
                      uint32_t writers, uint32_t readers) {
  size_t total = dm_channel_bytes_for(mode, ring, max_message, writers, readers);
  if (total == 0 || overflow < 1 || overflow > 3 || (overflow == 2 && mode > 2)) return -EINVAL;
  if (total > length || ((uintptr_t)base & 63) != 0) return -EINVAL;
  uint32_t* w = (uint32_t*)base;
  uint32_t data = (DMC_HEADER + DMC_SLOT * (writers + readers) + 63) & ~63u;
  memset(base, 0, data);
  w[DMC_H_MAGIC] = DMC_MAGIC;
  w[DMC_H_VERSION] = DMC_VERSION;
  w[DMC_H_MODE] = mode;
  w[DMC_H_OVERFLOW] = overflow;
  w[DMC_H_RING] = ring;
  w[DMC_H_MAX] = max_message;
  w[DMC_H_WRITERS] = writers;
  w[DMC_H_READERS] = readers;
  w[DMC_H_DATA] = data;
  w[DMC_H_TOTAL] = (uint32_t)total;
  DMC_STORE(&w[DMC_H_READY], 1);
  return 0;
}

int dm_channel_attach(dm_channel* ch, void* base, size_t length) {
  memset(ch, 0, sizeof *ch);
  ch->writer_slot = ch->reader_slot = -1;
  ch->spin = 2000;
  ch->pending_pos = 0xffffffffu;
  if (((uintptr_t)base & 63) != 0 || length < DMC_HEADER) return -EBADMSG;
  uint32_t* w = (uint32_t*)base;
  if (DMC_LOAD(&w[DMC_H_MAGIC]) != DMC_MAGIC || w[DMC_H_VERSION] != DMC_VERSION) return -EBADMSG;
  if (DMC_LOAD(&w[DMC_H_READY]) != 1) return -EAGAIN;
  uint32_t mode = w[DMC_H_MODE], overflow = w[DMC_H_OVERFLOW], ring = w[DMC_H_RING], max = w[DMC_H_MAX];
  uint32_t writers = w[DMC_H_WRITERS], readers = w[DMC_H_READERS];
  if (mode < 1 || mode > 4 || overflow < 1 || overflow > 3) return -EBADMSG;
  if (ring < 4096 || ring > (1u << 30) || (ring & (ring - 1)) != 0) return -EBADMSG;
  if (max < 1 || max > ring || dmc_span_of(max) > ring) return -EBADMSG;
  if (writers < 1 || writers > 64 || (mode == 1 && writers != 1)) return -EBADMSG;
  if (readers < 1 || readers > 64 || (mode <= 2 && readers != 1)) return -EBADMSG;
  uint32_t data = (DMC_HEADER + DMC_SLOT * (writers + readers) + 63) & ~63u;
  uint64_t total = (uint64_t)data + ring + dmc_span_of(max);
  if (w[DMC_H_DATA] != data || w[DMC_H_TOTAL] != total || total > length) return -EBADMSG;
  ch->base = (uint8_t*)base;
  ch->w = w;
  ch->mode = mode;
  ch->overflow = overflow;
  ch->ring = ring;
  ch->mask = ring - 1;
  ch->max_message = max;
  ch->record_max = dmc_span_of(max);
  ch->writers = writers;
  ch->readers = readers;
  ch->data_offset = data;
  ch->total = (uint32_t)total;
  return 0;
}

static uint32_t* dmc_rec(dm_channel* ch, uint32_t pos) { return ch->w + (ch->data_offset + (pos & ch->mask)) / 4; }

/* Claims one of `count` slots from `first`: free, or held by a dead process. Leaves the pid word at -1. */
static int dmc_claim(dm_channel* ch, uint32_t first, uint32_t count) {
  int zombie;
  uint64_t start = dmc_start_time(getpid(), &zombie);
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < count; i++) {
      uint32_t* s = dmc_slot(ch, first + i);
      uint32_t pid = DMC_LOAD(&s[DMC_S_PID]);
      if (pid != 0 && (pass == 0 || (int32_t)pid == -1 || dmc_owner_alive(s))) continue;
      if (!dmc_cas(&s[DMC_S_PID], pid, 0xffffffffu)) continue;
      DMC_STORE(&s[DMC_S_GEN], (DMC_LOAD(&s[DMC_S_GEN]) + 1) & DMC_GEN_MASK);
      s[DMC_S_START_LO] = (uint32_t)start;
      s[DMC_S_START_HI] = (uint32_t)(start >> 32);
      return (int)i;
    }
  }
  return -EBUSY;
}

void dm_channel_detach(dm_channel* ch) {
  uint32_t me = (uint32_t)getpid();
  if (ch->writer_slot >= 0) dmc_cas(&dmc_slot(ch, (uint32_t)ch->writer_slot)[DMC_S_PID], me, 0);
  if (ch->reader_slot >= 0) dmc_cas(&dmc_slot(ch, ch->writers + (uint32_t)ch->reader_slot)[DMC_S_PID], me, 0);
  ch->writer_slot = ch->reader_slot = -1;
}

int dm_channel_close(dm_channel* ch) {
  DMC_STORE(&ch->w[DMC_H_CLOSED], 1);
  DMC_ADD(&ch->w[DMC_WRITE_SIGNAL], 1);
  dmc_futex_wake(&ch->w[DMC_WRITE_SIGNAL]);
  DMC_ADD(&ch->w[DMC_READ_SIGNAL], 1);
  dmc_futex_wake(&ch->w[DMC_READ_SIGNAL]);
  return 0;
}

/* --- writing ---------------------------------------------------------------------------------------------- */

/* The lowest position a reader may still need; UINT32_MAX-ish distances are corrupt. */
static int dmc_limit(dm_channel* ch, uint32_t tail, uint32_t* limit) {
  uint32_t low = tail, low_d = 0;
  if (ch->mode <= 2 || ch->mode == 3) {
    low = DMC_LOAD(&ch->w[ch->mode == 3 ? 34 : DMC_HEAD]);
    low_d = tail - low;
  } else {
    for (uint32_t i = 0; i < ch->readers; i++) {
      uint32_t* s = dmc_slot(ch, ch->writers + i);
      if ((int32_t)DMC_LOAD(&s[DMC_S_PID]) <= 0) continue;
      uint32_t c = DMC_LOAD(&s[DMC_S_CURSOR]);
      if (tail - c > ch->ring) return -EBADMSG;
      if (tail - c > low_d) { low = c; low_d = tail - c; }
    }
  }
  if (low_d > ch->ring) return -EBADMSG;
  *limit = low;
  return 0;
}

static void dmc_reap_readers(dm_channel* ch) {
  if (ch->mode != 4) return;
  for (uint32_t i = 0; i < ch->readers; i++) {
    uint32_t* s = dmc_slot(ch, ch->writers + i);
    uint32_t pid = DMC_LOAD(&s[DMC_S_PID]);
    if ((int32_t)pid > 0 && !dmc_owner_alive(s)) dmc_cas(&s[DMC_S_PID], pid, 0);
  }
}

static int dmc_lock_free(dm_channel* ch, uint32_t owner) { return DMC_LOAD(&ch->w[DMC_RESERVE_LOCK]) != owner; }

static int dmc_lock(dm_channel* ch) {
  uint32_t me = ch->writer_tag + 1;
  int64_t checked = dmc_now_ms();
  for (uint32_t spins = 0;; spins++) {
    uint32_t owner = DMC_LOAD(&ch->w[DMC_RESERVE_LOCK]);
    if (owner == 0) {
      if (dmc_cas(&ch->w[DMC_RESERVE_LOCK], 0, me)) return 0;
      continue;
    }
    if (owner == me) return -EBADMSG;
    if (spins < 1000) continue;
    int64_t now = dmc_now_ms();
    if (now - checked >= DMC_LIVENESS_MS) {
      checked = now;
      uint32_t slot = (owner - 1) & 0xff;
      if (slot >= ch->writers) return -EBADMSG;
      if (dmc_tag_dead(dmc_slot(ch, slot), owner - 1) && dmc_cas(&ch->w[DMC_RESERVE_LOCK], owner, me)) return 0;
    }
    dmc_sleep(ch, DMC_RESERVE_LOCK, DMC_LOCK_SLEEPERS, 1, dmc_lock_free, owner);
  }
}

static void dmc_unlock(dm_channel* ch) {
  DMC_STORE(&ch->w[DMC_RESERVE_LOCK], 0);
  if (DMC_LOAD(&ch->w[DMC_LOCK_SLEEPERS]) > 0) syscall(SYS_futex, &ch->w[DMC_RESERVE_LOCK], FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* One attempt: the position of a reserved record, -EAGAIN when full, -EPIPE when closed. */
static int64_t dmc_try_reserve(dm_channel* ch, uint32_t length) {
  if (DMC_LOAD(&ch->w[DMC_H_CLOSED]) == 1) return -EPIPE;
  uint32_t span = dmc_span_of(length);
  int multi = ch->mode != 1;
  if (multi) {
    int rc = dmc_lock(ch);
    if (rc < 0) return rc;
  }
  int64_t result;
  uint32_t tail = DMC_LOAD(&ch->w[DMC_TAIL]), limit;
  int rc = dmc_limit(ch, tail, &limit);
  if (rc < 0) result = rc;
  else if (tail + span - limit > ch->ring) result = -EAGAIN;
  else {
    uint32_t* r = dmc_rec(ch, tail);
    r[DMC_R_SPAN] = span;
    r[DMC_R_LENGTH] = length;
    r[DMC_R_WRITER] = ch->writer_tag;
    DMC_STORE(&r[DMC_R_STATE], DMC_RESERVED);
    DMC_STORE(&ch->w[DMC_TAIL], tail + span);
    result = tail;
  }
  if (multi) dmc_unlock(ch);
  return result;
}

static int dmc_has_room(dm_channel* ch, uint32_t length) {
  if (DMC_LOAD(&ch->w[DMC_H_CLOSED]) == 1) return 1;
  uint32_t tail = DMC_LOAD(&ch->w[DMC_TAIL]), limit;
  if (dmc_limit(ch, tail, &limit) < 0) return 1;
  return tail + dmc_span_of(length) - limit <= ch->ring;
}

static int dmc_writer(dm_channel* ch) {
  if (ch->writer_slot >= 0) return 0;
  int slot = dmc_claim(ch, 0, ch->writers);
  if (slot < 0) return slot;
  uint32_t* s = dmc_slot(ch, (uint32_t)slot);
  ch->writer_tag = (uint32_t)slot | ((s[DMC_S_GEN] & DMC_GEN_MASK) << 8);
  DMC_STORE(&s[DMC_S_PID], (uint32_t)getpid());
  ch->writer_slot = slot;
  return 0;
}

int dm_channel_send(dm_channel* ch, const void* data, uint32_t length, int timeout_ms) {
  if (length > ch->max_message) return -EMSGSIZE;
  if (ch->overflow == 2) return -ENOTSUP; /* overwrite: written by the Node side only */
  int rc = dmc_writer(ch);
  if (rc < 0) return rc;
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : dmc_now_ms() + timeout_ms;
  int64_t pos;
  for (uint32_t spins = ch->spin;; spins = spins ? spins - 1 : 0) {
    pos = dmc_try_reserve(ch, length);
    if (pos >= 0) break;
    if (pos != -EAGAIN || ch->overflow == 3) return (int)pos;
    if (spins > 0) continue;
    int64_t left = deadline - dmc_now_ms();
    if (left <= 0) {
      *dmc_counter(dmc_slot(ch, (uint32_t)ch->writer_slot), DMC_C_AUX2) += 1;
      return -ETIMEDOUT;
    }
    dmc_reap_readers(ch);
    dmc_sleep(ch, DMC_READ_SIGNAL, DMC_WRITER_SLEEPERS, (int)(left < (int64_t)DMC_LIVENESS_MS ? left : (int64_t)DMC_LIVENESS_MS),
              dmc_has_room, length);
  }
  uint32_t* r = dmc_rec(ch, (uint32_t)pos);
  memcpy((uint8_t*)(r + 4), data, length);
  DMC_STORE(&r[DMC_R_STATE], DMC_COMMITTED);
  uint32_t* s = dmc_slot(ch, (uint32_t)ch->writer_slot);
  *dmc_counter(s, DMC_C_COUNT) += 1;
  *dmc_counter(s, DMC_C_BYTES) += length;
  dmc_wake(ch, DMC_WRITE_SIGNAL, DMC_READER_SLEEPERS);
  return 0;
}

/* --- reading ---------------------------------------------------------------------------------------------- */

static int dmc_reader(dm_channel* ch) {
  if (ch->reader_slot >= 0) return 0;
  if (ch->mode == 3) return -ENOTSUP;
  int slot = dmc_claim(ch, ch->writers, ch->readers);
  if (slot < 0) return slot;
  uint32_t* s = dmc_slot(ch, ch->writers + (uint32_t)slot);
  if (ch->mode == 4) {
    ch->cursor_word = (uint32_t)(s - ch->w) + DMC_S_CURSOR;
    DMC_STORE(&s[DMC_S_FLAGS], 1);
    DMC_STORE(&ch->w[ch->cursor_word], DMC_LOAD(&ch->w[DMC_TAIL]));
    DMC_STORE(&s[DMC_S_PID], (uint32_t)getpid());
    DMC_STORE(&ch->w[ch->cursor_word], DMC_LOAD(&ch->w[DMC_TAIL]));
  } else {
    ch->cursor_word = DMC_HEAD;
    DMC_STORE(&s[DMC_S_PID], (uint32_t)getpid());
  }
  ch->reader_slot = slot;
  return 0;
}

static int dmc_ready(dm_channel* ch, uint32_t unused) {
  (void)unused;
  uint32_t pos = DMC_LOAD(&ch->w[ch->cursor_word]);
  if (pos == DMC_LOAD(&ch->w[DMC_TAIL])) return DMC_LOAD(&ch->w[DMC_H_CLOSED]) == 1;
  return DMC_LOAD(&dmc_rec(ch, pos)[DMC_R_STATE]) != DMC_RESERVED;
}

/* The next committed record at the cursor: its position, -EAGAIN for none yet, -EPIPE drained, -EBADMSG. */
static int64_t dmc_next(dm_channel* ch, uint32_t* length, uint32_t* span_out) {
  for (;;) {
    uint32_t pos = DMC_LOAD(&ch->w[ch->cursor_word]);
    uint32_t tail = DMC_LOAD(&ch->w[DMC_TAIL]);
    if (pos == tail) {
      /* Closed, and still nothing after it: TAIL is read again after CLOSED (a writer may have sent more between
       * our read of TAIL and its close). */
      int ended = DMC_LOAD(&ch->w[DMC_H_CLOSED]) == 1 && DMC_LOAD(&ch->w[DMC_TAIL]) == pos;
      return ended ? -EPIPE : -EAGAIN;
    }
    if (tail - pos > ch->ring) return -EBADMSG;
    uint32_t* r = dmc_rec(ch, pos);
    uint32_t state = DMC_LOAD(&r[DMC_R_STATE]);
    uint32_t span = r[DMC_R_SPAN];
    if (span < 16 || span > ch->record_max || (span & 7) != 0 || span > tail - pos) return -EBADMSG;
    if (state == DMC_COMMITTED) {
      uint32_t len = r[DMC_R_LENGTH];
      if (len > span - 16) return -EBADMSG;
      *length = len;
      *span_out = span;
      return pos;
    }
    if (state == DMC_ABORTED) {
      DMC_STORE(&ch->w[ch->cursor_word], pos + span);
      dmc_wake(ch, DMC_READ_SIGNAL, DMC_WRITER_SLEEPERS);
      continue;
    }
    if (state != DMC_RESERVED) return -EBADMSG;
    int64_t now = dmc_now_ms();
    if (ch->pending_pos != pos) {
      ch->pending_pos = pos;
      ch->pending_since = now;
      return -EAGAIN;
    }
    if (now - ch->pending_since < DMC_LIVENESS_MS) return -EAGAIN;
    ch->pending_since = now;
    uint32_t tag = r[DMC_R_WRITER];
    if ((tag & 0xff) >= ch->writers) return -EBADMSG;
    if (!dmc_tag_dead(dmc_slot(ch, tag & 0xff), tag)) return -EAGAIN;
    if (dmc_cas(&r[DMC_R_STATE], DMC_RESERVED, DMC_ABORTED)) {
      *dmc_counter(dmc_slot(ch, ch->writers + (uint32_t)ch->reader_slot), DMC_C_AUX1) += 1;
    }
  }
}

int dm_channel_receive(dm_channel* ch, void* buf, uint32_t capacity, uint32_t* length, int timeout_ms) {
  int rc = dmc_reader(ch);
  if (rc < 0) return rc;
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : dmc_now_ms() + timeout_ms;
  uint32_t len = 0, span = 0;
  int64_t pos;
  for (uint32_t spins = ch->spin;; spins = spins ? spins - 1 : 0) {
    pos = dmc_next(ch, &len, &span);
    if (pos >= 0 && len > capacity) return -EMSGSIZE;
    if (pos >= 0 && ch->overflow == 2) {
      /* overwrite: copy, then claim with a CAS; a writer that dropped the record first made the copy stale */
      memcpy(buf, (uint8_t*)(dmc_rec(ch, (uint32_t)pos) + 4), len);
      if (!dmc_cas(&ch->w[ch->cursor_word], (uint32_t)pos, (uint32_t)pos + span)) continue;
      break;
    }
    if (pos != -EAGAIN) break;
    if (spins > 0) continue;
    int64_t left = deadline - dmc_now_ms();
    if (left <= 0) return -ETIMEDOUT;
    dmc_sleep(ch, DMC_WRITE_SIGNAL, DMC_READER_SLEEPERS, (int)(left < (int64_t)DMC_LIVENESS_MS ? left : (int64_t)DMC_LIVENESS_MS), dmc_ready, 0);
  }
  if (pos < 0) return (int)pos;
  if (ch->overflow != 2) {
    memcpy(buf, (uint8_t*)(dmc_rec(ch, (uint32_t)pos) + 4), len);
    DMC_STORE(&ch->w[ch->cursor_word], (uint32_t)pos + span);
  }
  *length = len;
  uint32_t* s = dmc_slot(ch, ch->writers + (uint32_t)ch->reader_slot);
  *dmc_counter(s, DMC_C_COUNT) += 1;
  *dmc_counter(s, DMC_C_BYTES) += len;
  dmc_wake(ch, DMC_READ_SIGNAL, DMC_WRITER_SLEEPERS);
  return 0;
}

#endif /* DEVMAP_CHANNEL_IMPLEMENTATION */
#endif /* DEVMAP_CHANNEL_H */
