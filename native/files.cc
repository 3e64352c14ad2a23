// Descriptor system calls for lib/memory: the objects devmap maps (memfd, POSIX shm, files), their size, seals
// and space, and the creator record kept in an extended attribute. See common.h for the conventions.
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common.h"
#include "regions.h"

namespace devmap {

// A descriptor-returning call's result; a new descriptor is recorded as this environment's (regions.cc closes
// the ones JavaScript leaves open when the environment ends).
static Napi::Value Opened(Napi::Env env, long rc) {
  if (rc < 0) return NumberOf(env, -errno);
  FdOpened(env, rc);
  return NumberOf(env, static_cast<double>(rc));
}

// memfd_create(name, flags) -> fd | -errno
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name;
  if (!StringArg(info, 0, &name) || !info[1].IsNumber()) return info.Env().Undefined();
  return Opened(info.Env(), syscall(SYS_memfd_create, name.c_str(), static_cast<unsigned>(Int(info, 1))));
}

// shm_open(name, oflag, mode) -> fd | -errno   (name includes the leading '/')
static Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  std::string name;
  if (!StringArg(info, 0, &name) || !info[1].IsNumber() || !info[2].IsNumber()) return info.Env().Undefined();
  return Opened(info.Env(), shm_open(name.c_str(), Int(info, 1), static_cast<mode_t>(Int(info, 2))));
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
  return Opened(info.Env(), open(path.c_str(), Int(info, 1), static_cast<mode_t>(Int(info, 2))));
}

static Napi::Value Close(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  FdClosed(info.Env(), Int(info, 0));
  return Result(info.Env(), close(Int(info, 0)));
}

// fstat(fd, out: Float64Array(6)) -> 0 | -errno; out = [st_size, st_mode, st_uid, st_gid, st_dev, st_ino]
static Napi::Value Fstat(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[1].As<Napi::Float64Array>().ElementLength() < 6) {
    Napi::TypeError::New(info.Env(), "devmap native: fstat needs a Float64Array(6)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  struct stat st;
  if (fstat(Int(info, 0), &st) < 0) return Napi::Number::New(info.Env(), -errno);
  double* out = info[1].As<Napi::Float64Array>().Data();
  out[0] = static_cast<double>(st.st_size);
  out[1] = static_cast<double>(st.st_mode);
  out[2] = static_cast<double>(st.st_uid);
  out[3] = static_cast<double>(st.st_gid);
  out[4] = static_cast<double>(st.st_dev);
  out[5] = static_cast<double>(st.st_ino);
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

// fcntl(fd, cmd, intArg) -> result | -errno  (F_ADD_SEALS / F_GET_SEALS / F_GETFL / F_DUPFD_CLOEXEC)
static Napi::Value Fcntl(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  int cmd = Int(info, 1);
  long rc = fcntl(Int(info, 0), cmd, Int(info, 2));
  if (cmd == F_DUPFD_CLOEXEC || cmd == F_DUPFD) return Opened(info.Env(), rc);
  return Result(info.Env(), rc);
}

// link_fd(fd, path) -> 0 | -errno: gives the unnamed file behind `fd` (opened O_TMPFILE) the name `path`,
// atomically; EEXIST when the name is taken. linkat(2) through /proc/self/fd with AT_SYMLINK_FOLLOW.
static Napi::Value LinkFd(const Napi::CallbackInfo& info) {
  std::string path;
  if (!info[0].IsNumber() || !StringArg(info, 1, &path)) return info.Env().Undefined();
  std::string from = "/proc/self/fd/" + std::to_string(Int(info, 0));
  return Result(info.Env(), linkat(AT_FDCWD, from.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW));
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

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports["memfd_create"] = Napi::Function::New(env, MemfdCreate, "memfd_create");
  exports["shm_open"] = Napi::Function::New(env, ShmOpen, "shm_open");
  exports["shm_unlink"] = Napi::Function::New(env, ShmUnlink, "shm_unlink");
  exports["open"] = Napi::Function::New(env, Open, "open");
  exports["close"] = Napi::Function::New(env, Close, "close");
  exports["fstat"] = Napi::Function::New(env, Fstat, "fstat");
  exports["fstat_size"] = Napi::Function::New(env, FstatSize, "fstat_size");
  exports["ftruncate"] = Napi::Function::New(env, Ftruncate, "ftruncate");
  exports["fallocate"] = Napi::Function::New(env, Fallocate, "fallocate");
  exports["fcntl"] = Napi::Function::New(env, Fcntl, "fcntl");
  exports["link_fd"] = Napi::Function::New(env, LinkFd, "link_fd");
  exports["fsetxattr"] = Napi::Function::New(env, Fsetxattr, "fsetxattr");
  exports["fgetxattr"] = Napi::Function::New(env, Fgetxattr, "fgetxattr");
}

}  // namespace devmap
