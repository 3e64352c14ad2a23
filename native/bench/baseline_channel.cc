// C baselines of the channel benchmarks (bench/channel.mjs): the same protocol, through the same header a C user
// gets (include/devmap/channel.h), between this process and a forked child.
//
// Each makes its channels in MAP_SHARED anonymous memory, forks, and the child attaches its own handles to the
// inherited pages. The child runs only the header's code (system calls, atomics, memcpy, and the /proc read of
// its own start time when it claims a slot) before _exit. Each returns elapsed nanoseconds, or -errno.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEVMAP_CHANNEL_IMPLEMENTATION
#include "../../include/devmap/channel.h"

#include "../common.h"
#include "baselines.h"

namespace devmap {

namespace {

// An spsc channel whose largest message is `size`, in fresh shared memory.
struct Segment {
  void* base = MAP_FAILED;
  size_t length = 0;
  int Make(uint32_t size) {
    uint32_t ring = 65536;
    while (ring < 2 * (size + 16)) ring *= 2;
    length = dm_channel_bytes_for(1, ring, size, 1, 1);
    base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return -errno;
    return dm_channel_format(base, length, 1, 1, ring, size, 1, 1);
  }
  ~Segment() {
    if (base != MAP_FAILED) munmap(base, length);
  }
};

double Wait(pid_t pid) {
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPIPE;
}

// n round trips of `size`-byte messages: parent sends on a, child receives and sends back on b.
double PingPong(long n, uint32_t size, uint32_t spin) {
  Segment a, b;
  int rc = a.Make(size);
  if (rc == 0) rc = b.Make(size);
  if (rc < 0) return rc;
  uint8_t* buf = static_cast<uint8_t*>(calloc(1, size));
  if (buf == nullptr) return -ENOMEM;
  pid_t pid = fork();
  if (pid < 0) return -errno;
  dm_channel ca, cb;
  dm_channel_attach(&ca, a.base, a.length);
  dm_channel_attach(&cb, b.base, b.length);
  ca.spin = cb.spin = spin;
  uint32_t len;
  if (pid == 0) {
    for (long i = 0; i < n; i++) {
      if (dm_channel_receive(&ca, buf, size, &len, 10000) < 0) _exit(1);
      if (dm_channel_send(&cb, buf, len, 10000) < 0) _exit(1);
    }
    _exit(0);
  }
  // One warm-up exchange so that both sides are running before the clock starts.
  dm_channel_send(&ca, buf, size, 10000);
  dm_channel_receive(&cb, buf, size, &len, 10000);
  double t0 = NowNs();
  for (long i = 1; i < n; i++) {
    if (dm_channel_send(&ca, buf, size, 10000) < 0 || dm_channel_receive(&cb, buf, size, &len, 10000) < 0) break;
  }
  double elapsed = NowNs() - t0;
  free(buf);
  if (Wait(pid) < 0) return -EPIPE;
  return n > 1 ? elapsed * static_cast<double>(n) / static_cast<double>(n - 1) : elapsed;
}

// n messages of `size` bytes from a child writer to this process.
double Throughput(long n, uint32_t size) {
  Segment a;
  int rc = a.Make(size);
  if (rc < 0) return rc;
  uint8_t buf[256] = {0};
  dm_channel ch;
  dm_channel_attach(&ch, a.base, a.length);
  uint32_t len;
  double t0 = NowNs();
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) {
    dm_channel cw;
    dm_channel_attach(&cw, a.base, a.length);
    for (long i = 0; i < n; i++) if (dm_channel_send(&cw, buf, size, 10000) < 0) _exit(1);
    _exit(0);
  }
  for (long i = 0; i < n; i++) if (dm_channel_receive(&ch, buf, sizeof buf, &len, 10000) < 0) break;
  double elapsed = NowNs() - t0;
  if (Wait(pid) < 0) return -EPIPE;
  return elapsed;
}

}  // namespace

// c_channel_pingpong(n, size, spin) -> ns for n round trips of size-byte messages, polling `spin` times first.
static Napi::Value ChannelPingPong(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  return NumberOf(info.Env(), PingPong(static_cast<long>(Num(info, 0)), static_cast<uint32_t>(Num(info, 1)), static_cast<uint32_t>(Num(info, 2))));
}

// c_channel_throughput(n, size) -> ns for n messages (size <= 256) from a child writer.
static Napi::Value ChannelThroughput(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  uint32_t size = static_cast<uint32_t>(Num(info, 1));
  if (size > 256) size = 256;
  return NumberOf(info.Env(), Throughput(static_cast<long>(Num(info, 0)), size));
}

void InitChannelBaselines(Napi::Env env, Napi::Object exports) {
  exports["c_channel_pingpong"] = Napi::Function::New(env, ChannelPingPong, "c_channel_pingpong");
  exports["c_channel_throughput"] = Napi::Function::New(env, ChannelThroughput, "c_channel_throughput");
}

}  // namespace devmap
