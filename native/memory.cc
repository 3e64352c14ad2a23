// Memory system calls for lib/memory: mmap and its companions over address ranges, and the three helpers that
// give JavaScript its views of mapped pages (buffer: an external ArrayBuffer; detach; read: a copy out of pages
// that may be read-only). See common.h for the conventions.
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "regions.h"

namespace devmap {

// mmap(addr, length, prot, flags, fd, offset) -> address | -errno
static Napi::Value Mmap(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 6)) return info.Env().Undefined();
  void* p = mmap(Ptr(info, 0), Size(info, 1), Int(info, 2), Int(info, 3), Int(info, 4),
                 static_cast<off_t>(Num(info, 5)));
  if (p == MAP_FAILED) return Napi::Number::New(info.Env(), -errno);
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(p)));
}

static Napi::Value Munmap(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return Result(info.Env(), munmap(Ptr(info, 0), Size(info, 1)));
}

static Napi::Value Mprotect(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  return Result(info.Env(), mprotect(Ptr(info, 0), Size(info, 1), Int(info, 2)));
}

static Napi::Value Msync(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  return Result(info.Env(), msync(Ptr(info, 0), Size(info, 1), Int(info, 2)));
}

static Napi::Value Madvise(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  return Result(info.Env(), madvise(Ptr(info, 0), Size(info, 1), Int(info, 2)));
}

static Napi::Value Mlock(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return Result(info.Env(), mlock(Ptr(info, 0), Size(info, 1)));
}

static Napi::Value Munlock(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return Result(info.Env(), munlock(Ptr(info, 0), Size(info, 1)));
}

// mincore(addr, length, out: Uint8Array with one byte per page) -> 0 | -errno
static Napi::Value Mincore(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(info.Env(), "devmap native: mincore needs a Uint8Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Uint8Array out = info[2].As<Napi::Uint8Array>();
  size_t len = Size(info, 1);
  long page = sysconf(_SC_PAGESIZE);
  if (out.ElementLength() < (len + page - 1) / page) {
    Napi::RangeError::New(info.Env(), "devmap native: mincore vector too short").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Result(info.Env(), mincore(Ptr(info, 0), len, out.Data()));
}

// V8 freed the backing store of a view: no ArrayBuffer holds those pages any more (regions.cc).
static void StoreFreed(napi_env env, void* data, void* hint) {
  CounterAdd(env, static_cast<int32_t>(reinterpret_cast<intptr_t>(hint)) - 1, -1);
}

// buffer(addr, length, counter) -> external ArrayBuffer over memory the caller owns. The store counter
// `counter` (-1: none) counts it until V8 frees its backing store (regions.cc says when that is).
static Napi::Value Buffer(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  int32_t counter = Int(info, 2);
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(info.Env(), Ptr(info, 0), Size(info, 1), counter >= 0 ? StoreFreed : nullptr,
                                                    reinterpret_cast<void*>(static_cast<intptr_t>(counter) + 1), &ab);
  if (st != napi_ok) {
    // V8 refused (too large): its RangeError is pending already, or we raise one.
    bool pending = false;
    napi_is_exception_pending(info.Env(), &pending);
    if (!pending) Napi::RangeError::New(info.Env(), "devmap native: cannot make an ArrayBuffer of that length").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  if (counter >= 0) CounterAdd(info.Env(), counter, 1);
  return Napi::Value(info.Env(), ab);
}

// The end of mmap_row and mremap_row: a row of `kind` over the new mapping (undone when the table is full), its
// index in the scratch word, the address out; -errno when the mapping failed.
static Napi::Value WithRow(Napi::Env env, void* p, size_t len, int kind) {
  if (p == MAP_FAILED) return NumberOf(env, -errno);
  long row = RowAdd(env, reinterpret_cast<uintptr_t>(p), len, kind);
  if (row < 0) {
    munmap(p, len);
    return NumberOf(env, static_cast<double>(row));
  }
  SetScratch(env, static_cast<int32_t>(row));
  return NumberOf(env, static_cast<double>(reinterpret_cast<uintptr_t>(p)));
}

// mmap_row(addr, length, prot, flags, fd, offset, kind) -> address | -errno: mmap and a row of the range table
// (regions.cc) in one call; the row's index is left in the environment's scratch word (tables()[1][0]).
static Napi::Value MmapRow(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 7)) return info.Env().Undefined();
  size_t len = Size(info, 1);
  int kind = Int(info, 6);  // (read first: nothing may run between the call and its errno)
  void* p = mmap(Ptr(info, 0), len, Int(info, 2), Int(info, 3), Int(info, 4), static_cast<off_t>(Num(info, 5)));
  return WithRow(info.Env(), p, len, kind);
}

// mremap_row(old, old_size, new_size, flags, kind) -> address | -errno: mremap(2) (flags without MREMAP_FIXED)
// plus a row of the range table of `kind` over the result, in one call, as mmap_row: JavaScript cannot be
// stopped (a Worker terminated) between the two, so no alias is ever left without a row for the teardown. With
// old_size 0 on a shared mapping the kernel makes a second mapping of the same pages (the aliases the views of a
// simulated process use).
static Napi::Value MremapRow(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 5)) return info.Env().Undefined();
  size_t len = Size(info, 2);
  int kind = Int(info, 4);
  void* p = mremap(Ptr(info, 0), Size(info, 1), len, Int(info, 3) & ~MREMAP_FIXED);
  return WithRow(info.Env(), p, len, kind);
}

// Replaces [addr, addr + length) with private zero pages, read+write: memory nothing can fault on.
static long Trash(void* addr, size_t len) {
  void* p = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? -errno : 0;
}

// trash(addr, length) -> 0 | -errno
static Napi::Value TrashJs(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return NumberOf(info.Env(), static_cast<double>(Trash(Ptr(info, 0), Size(info, 1))));
}

// retire(row, addr, length, kind, buffer?) -> 0 | -errno: detaches `buffer` (when it is an ArrayBuffer),
// replaces the pages with trash and makes the row cover them as `kind` (a whole unmap in one call).
static Napi::Value Retire(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  if (info.Length() > 4 && info[4].IsArrayBuffer()) {
    Napi::ArrayBuffer ab = info[4].As<Napi::ArrayBuffer>();
    if (!ab.IsDetached()) ab.Detach();
  }
  long rc = Trash(Ptr(info, 1), Size(info, 2));
  if (rc == 0) RowSet(static_cast<long>(Num(info, 0)), reinterpret_cast<uintptr_t>(Ptr(info, 1)), Size(info, 2), Int(info, 3));
  return NumberOf(info.Env(), static_cast<double>(rc));
}

// punch(row, addr, length, kind, buffer?) -> 0 | -errno: detaches `buffer` (when it is an ArrayBuffer),
// punches the pages out of a shared anonymous mapping (madvise MADV_REMOVE: they read as zeros afterwards; the
// mapping and its object stay, so nothing can fault) and makes the row cover them as `kind`. The cheap trash
// for a shared anonymous range, and the clearing of one quarantine.ts reuses (lib/memory/quarantine.ts).
static Napi::Value Punch(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  if (info.Length() > 4 && info[4].IsArrayBuffer()) {
    Napi::ArrayBuffer ab = info[4].As<Napi::ArrayBuffer>();
    if (!ab.IsDetached()) ab.Detach();
  }
  if (madvise(Ptr(info, 1), Size(info, 2), MADV_REMOVE) < 0) return NumberOf(info.Env(), -errno);
  RowSet(static_cast<long>(Num(info, 0)), reinterpret_cast<uintptr_t>(Ptr(info, 1)), Size(info, 2), Int(info, 3));
  return NumberOf(info.Env(), 0);
}

// row_add(addr, length, kind) -> row | -ENOMEM
static Napi::Value RowAddJs(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  return NumberOf(info.Env(), static_cast<double>(RowAdd(info.Env(), reinterpret_cast<uintptr_t>(Ptr(info, 0)), Size(info, 1), Int(info, 2))));
}

// row_set(row, addr, length, kind)
static Napi::Value RowSetJs(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  RowSet(static_cast<long>(Num(info, 0)), reinterpret_cast<uintptr_t>(Ptr(info, 1)), Size(info, 2), Int(info, 3));
  return info.Env().Undefined();
}

// row_release(row, addr, length) -> 0 | -errno: munmap and remove the row (pages nothing can reach any more).
static Napi::Value RowRelease(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  long row = static_cast<long>(Num(info, 0));
  if (row >= 0) RowRemove(row);
  return Result(info.Env(), munmap(Ptr(info, 1), Size(info, 2)));
}

// row_remove(row)
static Napi::Value RowRemoveJs(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  RowRemove(static_cast<long>(Num(info, 0)));
  return info.Env().Undefined();
}

// tables() -> [flags, counters]: ArrayBuffers over the range table's flags words (process-wide) and this
// environment's store counters, whose word 0 is the scratch word mmap_row leaves the row index in.
static Napi::Value TablesJs(const Napi::CallbackInfo& info) {
  napi_value t = Tables(info.Env());
  if (t == nullptr) return info.Env().Undefined();
  return Napi::Value(info.Env(), t);
}

// read(addr, target: TypedArray) -> copies target.byteLength bytes from addr. The caller checked that the
// pages are mapped readable; this is how JS reads pages it may not hold a view over.
static Napi::Value Read(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  if (!info[1].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "devmap native: read needs a TypedArray").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  uint8_t* dst = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  memcpy(dst, Ptr(info, 0), ta.ByteLength());
  return info.Env().Undefined();
}

static Napi::Value Detach(const Napi::CallbackInfo& info) {
  if (!info[0].IsArrayBuffer()) {
    Napi::TypeError::New(info.Env(), "devmap native: detach needs an ArrayBuffer").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (!ab.IsDetached()) ab.Detach();
  return info.Env().Undefined();
}

static Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports["mmap"] = Napi::Function::New(env, Mmap, "mmap");
  exports["munmap"] = Napi::Function::New(env, Munmap, "munmap");
  exports["mprotect"] = Napi::Function::New(env, Mprotect, "mprotect");
  exports["msync"] = Napi::Function::New(env, Msync, "msync");
  exports["madvise"] = Napi::Function::New(env, Madvise, "madvise");
  exports["mlock"] = Napi::Function::New(env, Mlock, "mlock");
  exports["munlock"] = Napi::Function::New(env, Munlock, "munlock");
  exports["mincore"] = Napi::Function::New(env, Mincore, "mincore");
  exports["buffer"] = Napi::Function::New(env, Buffer, "buffer");
  exports["mmap_row"] = Napi::Function::New(env, MmapRow, "mmap_row");
  exports["mremap_row"] = Napi::Function::New(env, MremapRow, "mremap_row");
  exports["trash"] = Napi::Function::New(env, TrashJs, "trash");
  exports["retire"] = Napi::Function::New(env, Retire, "retire");
  exports["punch"] = Napi::Function::New(env, Punch, "punch");
  exports["row_add"] = Napi::Function::New(env, RowAddJs, "row_add");
  exports["row_set"] = Napi::Function::New(env, RowSetJs, "row_set");
  exports["row_remove"] = Napi::Function::New(env, RowRemoveJs, "row_remove");
  exports["row_release"] = Napi::Function::New(env, RowRelease, "row_release");
  exports["tables"] = Napi::Function::New(env, TablesJs, "tables");
  exports["read"] = Napi::Function::New(env, Read, "read");
  exports["detach"] = Napi::Function::New(env, Detach, "detach");
  exports["page_size"] = Napi::Function::New(env, PageSize, "page_size");
}

}  // namespace devmap
