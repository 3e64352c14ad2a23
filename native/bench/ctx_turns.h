// The turn-taking loop of the context-switch case of bench/faults.mjs, compiled into bench/ctx-client.c and
// run by both of its variants, so that everything but the serving of the faults is the same code.
//
// Two processes, a leader and a follower, share one device page and one connected socket (the "turn"). They
// alternate: the leader touches the page, sends a byte, waits for the byte back; the follower waits for the
// byte, touches, sends it back. The page is one device context: each touch finds the other process owning it,
// so each is a fault whose serving unloads the other process (its agent's MADV_DONTNEED, acknowledged) and loads
// this one (UFFDIO_CONTINUE). A round is two switches. Round -1 is a warm-up (the first loads); the leader times
// rounds 0..rounds-1 and reports nanoseconds per switch, turn passing included (one byte each way per round,
// the same in both variants).
#pragma once

#include <time.h>
#include <unistd.h>

static inline double dm_ctx_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

// Ns per switch for the leader, 0 for the follower, -1 when the turn socket failed.
static inline double dm_ctx_turns(volatile unsigned char* page, int turn, int leader, long rounds) {
  char token = 't';
  double t0 = 0;
  unsigned sum = 0;
  for (long i = -1; i < rounds; i++) {
    if (i == 0) t0 = dm_ctx_now_ns();
    if (leader) {
      sum += page[0];
      if (write(turn, &token, 1) != 1 || read(turn, &token, 1) != 1) return -1;
    } else {
      if (read(turn, &token, 1) != 1) return -1;
      sum += page[0];
      if (write(turn, &token, 1) != 1) return -1;
    }
  }
  (void)sum;
  return leader ? (dm_ctx_now_ns() - t0) / (2.0 * (double)rounds) : 0;
}
