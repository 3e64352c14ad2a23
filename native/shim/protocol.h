// The kernel host's wire protocol, as the preload shim speaks it. The reference is
// lib/kernel/remote/protocol.ts: frames of { u32 size, u16 op, u16 words, i64 words[], bytes }, little-endian,
// one request at a time, replies with op | REPLY; reservation changes of six words each.
#pragma once

#include <stdint.h>

#define DM_PROTOCOL_VERSION 1
#define DM_HEADER 8
#define DM_MAX_FRAME (128 * 1024)
#define DM_MAX_IO (64 * 1024)
#define DM_REPLY 0x8000

enum dm_op {
  DM_HELLO = 1,
  DM_OPEN = 2,
  DM_CLOSE = 3,
  DM_READ = 4,
  DM_WRITE = 5,
  DM_IOCTL = 6,
  DM_MMAP = 7,
  DM_MUNMAP = 8,
  DM_MPROTECT = 9,
  DM_FORK = 10,
  DM_ADOPT = 11,
  DM_EXIT = 12,
  DM_AGENT = 13,
  DM_FAULTS = 14,
  DM_PREFAULT = 15,
};

enum dm_change { DM_CHANGE_MAP = 1, DM_CHANGE_RESERVE = 2, DM_CHANGE_PROTECT = 3, DM_CHANGE_REGISTER = 4 };
#define DM_CHANGE_WORDS 6

struct dm_header {
  uint32_t size;
  uint16_t op;
  uint16_t words;
};
