// C baselines of the memory layer's hot paths. Each function runs `iters`
// iterations of the same work the JS benchmark does and returns elapsed ns.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "../common.h"
#include "baselines.h"

namespace devmap {

// mmap + munmap of an anonymous shared read/write region.
static Napi::Value MapUnmap(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  size_t len = static_cast<size_t>(Num(info, 0));
  long iters = static_cast<long>(Num(info, 1));
  double t0 = NowNs();
  for (long i = 0; i < iters; i++) {
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return Napi::Number::New(info.Env(), -errno);
    munmap(p, len);
  }
  return Napi::Number::New(info.Env(), NowNs() - t0);
}

// What a shm cycle does besides the plain shm_open(O_CREAT|O_EXCL) + ftruncate + mmap + munmap + close +
// shm_unlink: bits of c_shm_cycle's third argument (default kShmFallocate, the cycle's historical shape).
constexpr int kShmFallocate = 1;  // fallocate(fd, 0, 0, len): reserve the memory now (ENOSPC at create)
constexpr int kShmXattr = 2;      // fsetxattr(user.devmap.creator): the creator record devmap ls reads
constexpr int kShmFstat = 4;      // fstat before mmap: map() sizes from the object as it is now

// c_shm_cycle(len, iters, extras = kShmFallocate): shm_open + ftruncate [+ fallocate] [+ fsetxattr] [+ fstat]
// + mmap + munmap + close + shm_unlink, `extras` saying which of the bracketed calls run.
static Napi::Value ShmCycle(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  size_t len = static_cast<size_t>(Num(info, 0));
  long iters = static_cast<long>(Num(info, 1));
  int extras = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : kShmFallocate;
  std::string name = "/devmap-cbase-" + std::to_string(getpid());
  const char record[] = "12345:1234567";  // the size of a "<pid>:<starttime>" record
  double t0 = NowNs();
  for (long i = 0; i < iters; i++) {
    int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Napi::Number::New(info.Env(), -errno);
    if (ftruncate(fd, len) < 0 || ((extras & kShmFallocate) && fallocate(fd, 0, 0, len) < 0)) {
      int e = errno;
      close(fd);
      shm_unlink(name.c_str());
      return Napi::Number::New(info.Env(), -e);
    }
    if (extras & kShmXattr) fsetxattr(fd, "user.devmap.creator", record, sizeof record - 1, 0);  // best effort, as devmap
    size_t size = len;
    if (extras & kShmFstat) {
      struct stat st;
      fstat(fd, &st);
      size = static_cast<size_t>(st.st_size);
    }
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) munmap(p, size);
    close(fd);
    shm_unlink(name.c_str());
  }
  return Napi::Number::New(info.Env(), NowNs() - t0);
}

// open + fstat + mmap(whole file) + munmap + close of an existing file.
static Napi::Value FileMap(const Napi::CallbackInfo& info) {
  if (!info[0].IsString() || !CheckArgs(info, 0) || !info[1].IsNumber()) return info.Env().Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  long iters = static_cast<long>(Num(info, 1));
  double t0 = NowNs();
  for (long i = 0; i < iters; i++) {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Napi::Number::New(info.Env(), -errno);
    struct stat st;
    fstat(fd, &st);
    void* p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) munmap(p, st.st_size);
    close(fd);
  }
  return Napi::Number::New(info.Env(), NowNs() - t0);
}

// mmap, write one byte in every page (the first-touch fault), munmap.
static Napi::Value FirstTouch(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  size_t len = static_cast<size_t>(Num(info, 0));
  long iters = static_cast<long>(Num(info, 1));
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  double t0 = NowNs();
  for (long i = 0; i < iters; i++) {
    auto* p = static_cast<volatile uint8_t*>(
        mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) return Napi::Number::New(info.Env(), -errno);
    for (size_t off = 0; off < len; off += page) p[off] = 1;
    munmap(const_cast<uint8_t*>(p), len);
  }
  return Napi::Number::New(info.Env(), NowNs() - t0);
}

// memset over a region the caller mapped (the JS side fills the same region).
static Napi::Value Fill(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  auto* p = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(Num(info, 0)));
  size_t len = static_cast<size_t>(Num(info, 1));
  long iters = static_cast<long>(Num(info, 2));
  double t0 = NowNs();
  for (long i = 0; i < iters; i++) {
    memset(p, static_cast<int>(i & 0xff), len);
    asm volatile("" : : "r"(p) : "memory");
  }
  return Napi::Number::New(info.Env(), NowNs() - t0);
}

// The system calls under a simulated mmap+munmap of a device: inside a reserved range, map `len` bytes of
// `fd` at `off` with MAP_FIXED, then re-reserve them (mmap PROT_NONE over them) instead of munmap.
static Napi::Value FixedMapRereserve(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  off_t off = static_cast<off_t>(Num(info, 1));
  size_t len = static_cast<size_t>(Num(info, 2));
  long iters = static_cast<long>(Num(info, 3));
  void* base = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return Napi::Number::New(info.Env(), -errno);
  double t0 = NowNs();
  for (long i = 0; i < iters; i++) {
    mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, off);
    mmap(base, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  }
  double elapsed = NowNs() - t0;
  munmap(base, len);
  return Napi::Number::New(info.Env(), elapsed);
}

void InitMemoryBaselines(Napi::Env env, Napi::Object exports) {
  exports["c_map_unmap"] = Napi::Function::New(env, MapUnmap, "c_map_unmap");
  exports["c_shm_cycle"] = Napi::Function::New(env, ShmCycle, "c_shm_cycle");
  exports["c_file_map"] = Napi::Function::New(env, FileMap, "c_file_map");
  exports["c_first_touch"] = Napi::Function::New(env, FirstTouch, "c_first_touch");
  exports["c_fill"] = Napi::Function::New(env, Fill, "c_fill");
  exports["c_fixed_map_rereserve"] = Napi::Function::New(env, FixedMapRereserve, "c_fixed_map_rereserve");
}

}  // namespace devmap
