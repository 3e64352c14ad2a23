// The address ranges devmap holds for JavaScript, process-wide, and what each Node environment (the main
// thread, every Worker) owns. See regions.cc.
#pragma once
#include <node_api.h>

#include <cstddef>
#include <cstdint>

namespace devmap {

// Kinds of rows in the range table (bits).
constexpr int32_t kRowLive = 1;      // pages of a live Mapping: a SIGBUS in them is caught, the row marked
constexpr int32_t kRowTrash = 2;     // pages taken away and replaced by trash, waiting to be given back
constexpr int32_t kRowReserve = 4;   // a PROT_NONE reservation (a kernel address space)
constexpr int32_t kRowNested = 8;    // inside a reservation: given back with it, never on its own

// Bits of a row's flags word (the array JavaScript reads, one int32 per row).
constexpr int32_t kFlagTruncated = 1;  // a SIGBUS hit this row: its object was truncated under it
constexpr int32_t kFlagPinned = 2;     // a held Mutex lives here: teardown leaves it mapped (robust list)

// Per-environment state (napi instance data): its store counters and the descriptors it opened.
struct EnvState;

// Creates this environment's state and its teardown hook. False when the environment is going away.
bool InitEnvState(napi_env env);
EnvState* StateOf(napi_env env);

// Adds a row for [start, start + len) owned by `env`: its index, or -ENOMEM when the table is full.
long RowAdd(napi_env env, uintptr_t start, size_t len, int32_t kind);
// Makes the row cover [start, start + len) as `kind`; setting it live clears its flags (a new mapping).
void RowSet(long row, uintptr_t start, size_t len, int32_t kind);
void RowRemove(long row);

// The store counter `counter` of this environment: +1 when a view is made, -1 when V8 frees its store.
// Counters are words 2 .. 2^20 - 2^16; one that falls to zero is logged in the ring of the last 2^16 words.
void CounterAdd(napi_env env, int32_t counter, int32_t delta);

// The environment's scratch word (counter 0): mmap_row leaves the new row's index there.
void SetScratch(napi_env env, int32_t value);

// Descriptors this environment opened through devmap: closed at its teardown if JavaScript did not.
void FdOpened(napi_env env, long fd);
void FdClosed(napi_env env, int fd);

// The table's flags words, this environment's counters and the process's fork count (one word), as
// ArrayBuffers for JavaScript (read-only use).
napi_value Tables(napi_env env);

}  // namespace devmap
