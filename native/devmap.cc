// The devmap addon: one function per system call, no policy.
//
// Conventions, shared by every function here:
//  - Arguments were validated by the TypeScript layer; the checks below only
//    keep a misuse from crashing (they throw TypeError), they are not the API.
//  - Addresses, lengths and offsets travel as JS numbers (doubles). Every user
//    space address on x86-64 and arm64 is below 2^53, so a double holds it
//    exactly and we avoid a BigInt conversion on every call.
//  - A system call that fails returns -errno; the TypeScript layer turns that
//    into a Node-style system error (code, errno, syscall, path). Nothing here
//    throws for an OS failure, so the fast path never builds an exception.
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "devmap.h"

namespace devmap {

bool CheckArgs(const Napi::CallbackInfo& info, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (!info[i].IsNumber()) {
      Napi::TypeError::New(info.Env(), "devmap native: argument " + std::to_string(i) + " must be a number")
          .ThrowAsJavaScriptException();
      return false;
    }
  }
  return true;
}

static inline double Num(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }
static inline void* Ptr(const Napi::CallbackInfo& info, size_t i) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(Num(info, i)));
}
static inline size_t Size(const Napi::CallbackInfo& info, size_t i) { return static_cast<size_t>(Num(info, i)); }
static inline int Int(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

static Napi::Value Result(Napi::Env env, long rc) {
  return Napi::Number::New(env, rc < 0 ? -errno : static_cast<double>(rc));
}

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

static bool StringArg(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (!info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "devmap native: argument " + std::to_string(i) + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// fsetxattr(fd, name, value, flags) -> 0 | -errno   (value: a TypedArray of the attribute's bytes)
static Napi::Value Fsetxattr(const Napi::CallbackInfo& info) {
  std::string name;
  if (!info[0].IsNumber() || !StringArg(info, 1, &name)) return info.Env().Undefined();
  if (!info[2].IsTypedArray() || !info[3].IsNumber()) {
    Napi::TypeError::New(info.Env(), "devmap native: fsetxattr needs a TypedArray value and numeric flags")
        .ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::TypedArray value = info[2].As<Napi::TypedArray>();
  const uint8_t* src = static_cast<const uint8_t*>(value.ArrayBuffer().Data()) + value.ByteOffset();
  return Result(info.Env(), fsetxattr(Int(info, 0), name.c_str(), src, value.ByteLength(), Int(info, 3)));
}

// fgetxattr(fd, name, out) -> length of the value | -errno   (ENODATA: no such attribute; ERANGE: out too small)
static Napi::Value Fgetxattr(const Napi::CallbackInfo& info) {
  std::string name;
  if (!info[0].IsNumber() || !StringArg(info, 1, &name)) return info.Env().Undefined();
  if (!info[2].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "devmap native: fgetxattr needs a TypedArray to fill").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::TypedArray out = info[2].As<Napi::TypedArray>();
  uint8_t* dst = static_cast<uint8_t*>(out.ArrayBuffer().Data()) + out.ByteOffset();
  return Result(info.Env(), fgetxattr(Int(info, 0), name.c_str(), dst, out.ByteLength()));
}

// memfd_create(name, flags) -> fd | -errno
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name;
  if (!StringArg(info, 0, &name) || !info[1].IsNumber()) return info.Env().Undefined();
  return Result(info.Env(), syscall(SYS_memfd_create, name.c_str(), static_cast<unsigned>(Int(info, 1))));
}

// shm_open(name, oflag, mode) -> fd | -errno   (name includes the leading '/')
static Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  std::string name;
  if (!StringArg(info, 0, &name) || !info[1].IsNumber() || !info[2].IsNumber()) return info.Env().Undefined();
  return Result(info.Env(), shm_open(name.c_str(), Int(info, 1), static_cast<mode_t>(Int(info, 2))));
}

static Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  std::string name;
  if (!StringArg(info, 0, &name)) return info.Env().Undefined();
  return Result(info.Env(), shm_unlink(name.c_str()));
}

// open(path, flags, mode) -> fd | -errno  (O_CLOEXEC is the caller's to pass)
static Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path;
  if (!StringArg(info, 0, &path) || !info[1].IsNumber() || !info[2].IsNumber()) return info.Env().Undefined();
  return Result(info.Env(), open(path.c_str(), Int(info, 1), static_cast<mode_t>(Int(info, 2))));
}

static Napi::Value Close(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  return Result(info.Env(), close(Int(info, 0)));
}

// fstat(fd, out: Float64Array(4)) -> 0 | -errno; out = [st_size, st_mode, st_uid, st_gid]
static Napi::Value Fstat(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[1].As<Napi::Float64Array>().ElementLength() < 4) {
    Napi::TypeError::New(info.Env(), "devmap native: fstat needs a Float64Array(4)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  struct stat st;
  if (fstat(Int(info, 0), &st) < 0) return Napi::Number::New(info.Env(), -errno);
  double* out = info[1].As<Napi::Float64Array>().Data();
  out[0] = static_cast<double>(st.st_size);
  out[1] = static_cast<double>(st.st_mode);
  out[2] = static_cast<double>(st.st_uid);
  out[3] = static_cast<double>(st.st_gid);
  return Napi::Number::New(info.Env(), 0);
}

// fstat_size(fd) -> st_size | -errno: fstat(2) when only the size is wanted (the mapFile/open hot path),
// without the typed-array round trip of fstat() above.
static Napi::Value FstatSize(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  struct stat st;
  if (fstat(Int(info, 0), &st) < 0) return Napi::Number::New(info.Env(), -errno);
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_size));
}

// ftruncate(fd, length) -> 0 | -errno
static Napi::Value Ftruncate(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return Result(info.Env(), ftruncate(Int(info, 0), static_cast<off_t>(Num(info, 1))));
}

// fallocate(fd, mode, offset, length) -> 0 | -errno
static Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  return Result(info.Env(), fallocate(Int(info, 0), Int(info, 1), static_cast<off_t>(Num(info, 2)),
                                      static_cast<off_t>(Num(info, 3))));
}

// fcntl(fd, cmd, intArg) -> result | -errno  (used for F_ADD_SEALS / F_GET_SEALS)
static Napi::Value Fcntl(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  return Result(info.Env(), fcntl(Int(info, 0), Int(info, 1), Int(info, 2)));
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

// Resolve (typedArray, byteIndex) to the address of an aligned 32-bit word
// inside the array, or throw. Never trusts JS with a raw address.
bool WordAddress(const Napi::CallbackInfo& info, uint32_t** word) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "devmap native: expected (TypedArray, byteIndex)").ThrowAsJavaScriptException();
    return false;
  }
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  double index = Num(info, 1);
  size_t bytes = ta.ByteLength();
  if (!(index >= 0) || index + 4 > static_cast<double>(bytes)) {
    Napi::RangeError::New(env, "devmap native: word index out of range").ThrowAsJavaScriptException();
    return false;
  }
  uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  uintptr_t addr = reinterpret_cast<uintptr_t>(base) + static_cast<size_t>(index);
  if (addr % 4 != 0) {
    Napi::RangeError::New(env, "devmap native: word is not 4-byte aligned").ThrowAsJavaScriptException();
    return false;
  }
  *word = reinterpret_cast<uint32_t*>(addr);
  return true;
}

long FutexWait(uint32_t* word, uint32_t expected, double timeout_ms) {
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout_ms >= 0 && timeout_ms < 1e15) {
    double ns = timeout_ms * 1e6;
    ts.tv_sec = static_cast<time_t>(ns / 1e9);
    ts.tv_nsec = static_cast<long>(ns - static_cast<double>(ts.tv_sec) * 1e9);
    tsp = &ts;
  }
  // Not FUTEX_PRIVATE_FLAG: the word may be shared with other processes.
  long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, nullptr, 0);
  return rc < 0 ? -errno : rc;
}

long FutexWake(uint32_t* word, int count) {
  long rc = syscall(SYS_futex, word, FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc < 0 ? -errno : rc;
}

// futex_wait(typedArray, byteIndex, expected, timeoutMs) -> 0 | -errno
// (-EAGAIN: value differed, -ETIMEDOUT, -EINTR). timeoutMs < 0: no timeout.
static Napi::Value FutexWaitJs(const Napi::CallbackInfo& info) {
  uint32_t* word;
  if (!WordAddress(info, &word) || !info[2].IsNumber() || !info[3].IsNumber()) return info.Env().Undefined();
  uint32_t expected = info[2].As<Napi::Number>().Uint32Value();
  return Napi::Number::New(info.Env(), FutexWait(word, expected, Num(info, 3)));
}

// futex_wake(typedArray, byteIndex, count) -> woken | -errno
static Napi::Value FutexWakeJs(const Napi::CallbackInfo& info) {
  uint32_t* word;
  if (!WordAddress(info, &word) || !info[2].IsNumber()) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), FutexWake(word, Int(info, 2)));
}

static Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports["mmap"] = Napi::Function::New(env, Mmap, "mmap");
  exports["munmap"] = Napi::Function::New(env, Munmap, "munmap");
  exports["mprotect"] = Napi::Function::New(env, Mprotect, "mprotect");
  exports["msync"] = Napi::Function::New(env, Msync, "msync");
  exports["madvise"] = Napi::Function::New(env, Madvise, "madvise");
  exports["mlock"] = Napi::Function::New(env, Mlock, "mlock");
  exports["munlock"] = Napi::Function::New(env, Munlock, "munlock");
  exports["mincore"] = Napi::Function::New(env, Mincore, "mincore");
  exports["memfd_create"] = Napi::Function::New(env, MemfdCreate, "memfd_create");
  exports["shm_open"] = Napi::Function::New(env, ShmOpen, "shm_open");
  exports["shm_unlink"] = Napi::Function::New(env, ShmUnlink, "shm_unlink");
  exports["fsetxattr"] = Napi::Function::New(env, Fsetxattr, "fsetxattr");
  exports["fgetxattr"] = Napi::Function::New(env, Fgetxattr, "fgetxattr");
  exports["open"] = Napi::Function::New(env, Open, "open");
  exports["close"] = Napi::Function::New(env, Close, "close");
  exports["fstat"] = Napi::Function::New(env, Fstat, "fstat");
  exports["fstat_size"] = Napi::Function::New(env, FstatSize, "fstat_size");
  exports["ftruncate"] = Napi::Function::New(env, Ftruncate, "ftruncate");
  exports["fallocate"] = Napi::Function::New(env, Fallocate, "fallocate");
  exports["fcntl"] = Napi::Function::New(env, Fcntl, "fcntl");
  exports["buffer"] = Napi::Function::New(env, Buffer, "buffer");
  exports["read"] = Napi::Function::New(env, Read, "read");
  exports["detach"] = Napi::Function::New(env, Detach, "detach");
  exports["futex_wait"] = Napi::Function::New(env, FutexWaitJs, "futex_wait");
  exports["futex_wake"] = Napi::Function::New(env, FutexWakeJs, "futex_wake");
  exports["page_size"] = Napi::Function::New(env, PageSize, "page_size");
  InitMemoryBaselines(env, exports);
  InitRmapBaselines(env, exports);
  InitSyncBaselines(env, exports);
  InitSync(env, exports);
  InitSocket(env, exports);
  InitUffd(env, exports);
  return exports;
}

}  // namespace devmap

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return devmap::Init(env, exports); }
NODE_API_MODULE(devmap, InitModule)
