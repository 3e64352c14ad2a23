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

// buffer(addr, length) -> external ArrayBuffer over memory the caller owns.
// No finalizer: the Mapping in TypeScript owns the pages and detaches the
// buffer (detach below) before it unmaps them.
static Napi::Value Buffer(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return Napi::ArrayBuffer::New(info.Env(), Ptr(info, 0), Size(info, 1));
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
  exports["read"] = Napi::Function::New(env, Read, "read");
  exports["detach"] = Napi::Function::New(env, Detach, "detach");
  exports["page_size"] = Napi::Function::New(env, PageSize, "page_size");
}

}  // namespace devmap
