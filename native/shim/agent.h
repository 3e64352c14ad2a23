// The fault agent of a client process (native/shim/agent.c): a thread that carries out, in this process, what
// the kernel host cannot do to another process's address space. Shared by the preload shim and the Node client
// (the addon compiles it too); the host's side of a round trip is dm_agent_call.
//
// Messages on the agent socket are fixed records; a reply carries op | DM_AGENT_REPLY, the request's seq, and
// a = 0 or -errno.
#pragma once

#include <stdint.h>

enum dm_agent_op {
  DM_AGENT_UNLOAD = 1,  // MADV_DONTNEED [base + a, + b): the next touch is a minor fault again (devmap_unload)
  DM_AGENT_REFUSE = 2,  // PROT_NONE [base + a, + b), then wake its waiters: the touch becomes a real SIGSEGV
  DM_AGENT_HELLO = 3,   // client -> host, once, with the uffd (SCM_RIGHTS): a = reservation base, b = its size
};
#define DM_AGENT_REPLY 0x8000u

struct dm_agent_msg {
  uint32_t op;
  uint32_t seq;
  int64_t a;
  int64_t b;
};

// Starts the agent thread on `sock` for the reservation [base, base + size) registered with `uffd`. When the
// socket closes without dm_agent_stop (the host died), the thread unregisters the whole reservation from the
// uffd, so no thread stays in a fault, and marks the agent gone; `report` also says so on stderr.
// Returns an agent id, or -errno.
int dm_agent_start(int sock, int uffd, uint64_t base, uint64_t size, int report);
// Ends the agent thread and waits for it; the caller then closes the socket and the uffd. 0 or -EINVAL.
int dm_agent_stop(int id);
// 0 while the host is there, 1 once it is gone, -EINVAL for an unknown id.
int dm_agent_state(int id);
// Sends the hello with the uffd; 0 or -errno.
int dm_agent_hello(int sock, int uffd, uint64_t base, uint64_t size);
// The host's side: sends a request and waits up to timeout_ms for its acknowledgement. The agent's answer,
// -ETIMEDOUT, or -EPIPE when the client is gone.
int dm_agent_call(int sock, uint32_t op, int64_t a, int64_t b, int timeout_ms);
