// userfaultfd for real faults of client processes (lib/kernel/remote/faults.ts, SPEC A.9): one function per system
// call or ioctl, -errno out, no policy. A client makes the uffd (its faults are its own address space's) and hands
// it to the kernel host, whose event loop reads the fault events and answers them with UFFDIO_CONTINUE. Beside
// them: a readiness watcher over libuv's uv_poll (the host's event loop learns that a uffd has events), the
// client's agent thread (native/shim/agent.c, shared with the preload shim) and the host's side of an agent
// round trip.
#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "addon.h"
#include "common.h"

extern "C" {
#include "shim/agent.h"
}

namespace devmap {

static Napi::Value Rc(Napi::Env env, long rc) { return Napi::Number::New(env, rc < 0 ? -errno : static_cast<double>(rc)); }
static int Fd(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
static uint64_t U64(const Napi::CallbackInfo& info, size_t i) { return static_cast<uint64_t>(info[i].As<Napi::Number>().DoubleValue()); }

// uffd_create(flags) -> fd | -errno: userfaultfd(2), close-on-exec and non-blocking; flags may add
// UFFD_USER_MODE_ONLY (1), which an unprivileged caller needs when vm.unprivileged_userfaultfd is 0.
static Napi::Value UffdCreate(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
#ifdef SYS_userfaultfd
  return Rc(info.Env(), syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | info[0].As<Napi::Number>().Int32Value()));
#else
  return Napi::Number::New(info.Env(), -ENOSYS);
#endif
}

// uffd_open_device(flags) -> fd | -errno: a uffd from /dev/userfaultfd (USERFAULTFD_IOC_NEW, Linux 6.1), whose
// access is decided by the device file's mode rather than by the sysctl.
static Napi::Value UffdOpenDevice(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) return Napi::Number::New(info.Env(), -errno);
  long rc = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK | info[0].As<Napi::Number>().Int32Value());
  int err = errno;
  close(dev);
  return Napi::Number::New(info.Env(), rc < 0 ? -err : static_cast<double>(rc));
}

// uffd_api(fd, features, out Float64Array[2]) -> 0 | -errno; out = [features granted, ioctls available].
static Napi::Value UffdApi(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2) || !info[2].IsTypedArray()) return info.Env().Undefined();
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = U64(info, 1);
  if (ioctl(Fd(info, 0), UFFDIO_API, &api) < 0) return Napi::Number::New(info.Env(), -errno);
  Napi::Float64Array out = info[2].As<Napi::Float64Array>();
  if (out.ElementLength() >= 2) {
    out[0] = static_cast<double>(api.features);
    out[1] = static_cast<double>(api.ioctls);
  }
  return Napi::Number::New(info.Env(), 0);
}

// uffd_register(fd, addr, len, mode) -> the range's ioctls bitmask (low 32 bits) | -errno.
static Napi::Value UffdRegister(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  uffdio_register r{};
  r.range.start = U64(info, 1);
  r.range.len = U64(info, 2);
  r.mode = U64(info, 3);
  if (ioctl(Fd(info, 0), UFFDIO_REGISTER, &r) < 0) return Napi::Number::New(info.Env(), -errno);
  return Napi::Number::New(info.Env(), static_cast<double>(r.ioctls & 0xffffffffu));
}

// uffd_unregister(fd, addr, len) -> 0 | -errno (threads waiting in the range are woken).
static Napi::Value UffdUnregister(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  uffdio_range r{U64(info, 1), U64(info, 2)};
  return Rc(info.Env(), ioctl(Fd(info, 0), UFFDIO_UNREGISTER, &r));
}

// uffd_continue(fd, addr, len, mode) -> bytes mapped (len on success) | -errno. EEXIST: a page of the range was
// mapped already (the bytes before it are mapped); EAGAIN: the address space is changing, try again.
static Napi::Value UffdContinue(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  uffdio_continue c{};
  c.range.start = U64(info, 1);
  c.range.len = U64(info, 2);
  c.mode = U64(info, 3);
  if (ioctl(Fd(info, 0), UFFDIO_CONTINUE, &c) < 0) {
    int err = errno;
    // The kernel reports partial progress in `mapped`: a positive count before the failing page is progress.
    if (c.mapped > 0 && err != EEXIST) return Napi::Number::New(info.Env(), static_cast<double>(c.mapped));
    return Napi::Number::New(info.Env(), -err);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(c.mapped));
}

// uffd_wake(fd, addr, len) -> 0 | -errno: wakes threads waiting for [addr, addr + len) (they fault again).
static Napi::Value UffdWake(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 3)) return info.Env().Undefined();
  uffdio_range r{U64(info, 1), U64(info, 2)};
  return Rc(info.Env(), ioctl(Fd(info, 0), UFFDIO_WAKE, &r));
}

// uffd_writeprotect(fd, addr, len, mode) -> 0 | -errno (mode UFFDIO_WRITEPROTECT_MODE_WP sets, 0 clears and wakes).
static Napi::Value UffdWriteprotect(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  uffdio_writeprotect w{};
  w.range.start = U64(info, 1);
  w.range.len = U64(info, 2);
  w.mode = U64(info, 3);
  return Rc(info.Env(), ioctl(Fd(info, 0), UFFDIO_WRITEPROTECT, &w));
}

// uffd_read(fd, out Float64Array) -> events read | -errno (-EAGAIN: none). Each event is four numbers:
// [event, flags, address, thread id] for a page fault; [event, 0, start, end] for a remove or unmap.
static Napi::Value UffdRead(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1) || !info[1].IsTypedArray()) return info.Env().Undefined();
  Napi::Float64Array out = info[1].As<Napi::Float64Array>();
  size_t room = out.ElementLength() / 4;
  if (room > 64) room = 64;
  uffd_msg msgs[64];
  ssize_t n;
  do n = read(Fd(info, 0), msgs, sizeof(uffd_msg) * room);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Napi::Number::New(info.Env(), -errno);
  size_t count = static_cast<size_t>(n) / sizeof(uffd_msg);
  for (size_t i = 0; i < count; i++) {
    const uffd_msg& m = msgs[i];
    out[i * 4] = m.event;
    if (m.event == UFFD_EVENT_PAGEFAULT) {
      out[i * 4 + 1] = static_cast<double>(m.arg.pagefault.flags);
      out[i * 4 + 2] = static_cast<double>(m.arg.pagefault.address);
      out[i * 4 + 3] = m.arg.pagefault.feat.ptid;
    } else if (m.event == UFFD_EVENT_REMOVE || m.event == UFFD_EVENT_UNMAP) {
      out[i * 4 + 1] = 0;
      out[i * 4 + 2] = static_cast<double>(m.arg.remove.start);
      out[i * 4 + 3] = static_cast<double>(m.arg.remove.end);
    } else {
      out[i * 4 + 1] = out[i * 4 + 2] = out[i * 4 + 3] = 0;
    }
  }
  return Napi::Number::New(info.Env(), static_cast<double>(count));
}

// --- readiness watcher ---------------------------------------------------------------------------------

// One uv_poll on a descriptor the caller keeps open until fd_unwatch; the callback runs on the event loop with
// no arguments each time the descriptor is readable (or in error: the callback's read then says which).
struct Watch {
  uv_poll_t poll;
  Napi::FunctionReference callback;
  Napi::Env env;
  explicit Watch(Napi::Env e) : env(e) {}
};

static void OnReadable(uv_poll_t* handle, int, int) {
  Watch* w = static_cast<Watch*>(handle->data);
  Napi::HandleScope scope(w->env);
  w->callback.MakeCallback(w->env.Global(), {});
}

// fd_watch(fd, callback) -> an External handle (or a negative errno as a number).
static Napi::Value FdWatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1) || !info[1].IsFunction()) return env.Undefined();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return Napi::Number::New(env, -EINVAL);
  Watch* w = new Watch(env);
  int rc = uv_poll_init(loop, &w->poll, Fd(info, 0));
  if (rc < 0) {
    delete w;
    return Napi::Number::New(env, rc);
  }
  w->poll.data = w;
  w->callback = Napi::Persistent(info[1].As<Napi::Function>());
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, OnReadable);
  return Napi::External<Watch>::New(env, w);
}

// fd_unwatch(handle) -> 0: stops watching; the handle is freed once libuv closed it. Idempotent.
static Napi::Value FdUnwatch(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) return info.Env().Undefined();
  Watch* w = info[0].As<Napi::External<Watch>>().Data();
  if (w->poll.data == nullptr) return Napi::Number::New(info.Env(), 0);
  w->poll.data = nullptr;
  uv_poll_stop(&w->poll);
  w->callback.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { delete reinterpret_cast<Watch*>(h); });
  return Napi::Number::New(info.Env(), 0);
}

// fd_ref(handle, ref) -> 0: a watch that keeps the event loop alive (ref) or not.
static Napi::Value FdRef(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) return info.Env().Undefined();
  Watch* w = info[0].As<Napi::External<Watch>>().Data();
  if (w->poll.data == nullptr) return Napi::Number::New(info.Env(), 0);
  if (info[1].ToBoolean().Value()) uv_ref(reinterpret_cast<uv_handle_t*>(&w->poll));
  else uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
  return Napi::Number::New(info.Env(), 0);
}

// --- the agent -----------------------------------------------------------------------------------------

// agent_start(sock, uffd, base, size) -> agent id | -errno: the client's agent thread on its end of the agent
// socket (native/shim/agent.c).
static Napi::Value AgentStart(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 4)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), dm_agent_start(Fd(info, 0), Fd(info, 1), U64(info, 2), U64(info, 3), 0));
}

// agent_stop(id) -> 0: ends the thread (it unregisters nothing: the caller is tearing the mappings down).
static Napi::Value AgentStop(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), dm_agent_stop(Fd(info, 0)));
}

// agent_state(id) -> 0 running | 1 the host is gone (the ranges were unregistered) | -errno.
static Napi::Value AgentState(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), dm_agent_state(Fd(info, 0)));
}

// agent_call(sock, op, a, b, timeoutMs) -> the agent's answer (0 | -errno) | -ETIMEDOUT | -EPIPE (the client is
// gone): the host's request to a client's agent and the wait for its acknowledgement, in one step, so that
// devmap_unload returns only after the pages are gone.
static Napi::Value AgentCall(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 5)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), dm_agent_call(Fd(info, 0), static_cast<uint32_t>(Fd(info, 1)), static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue()),
                                                     static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue()), Fd(info, 4)));
}

// socket_pair() -> [fd, fd] | -errno: a connected SOCK_STREAM pair, close-on-exec (the host keeps one end, the
// client gets the other).
static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Napi::Number::New(info.Env(), -errno);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out[0u] = sv[0];
  out[1u] = sv[1];
  return out;
}

void InitUffd(Napi::Env env, Napi::Object exports) {
  exports["uffd_create"] = Napi::Function::New(env, UffdCreate, "uffd_create");
  exports["uffd_open_device"] = Napi::Function::New(env, UffdOpenDevice, "uffd_open_device");
  exports["uffd_api"] = Napi::Function::New(env, UffdApi, "uffd_api");
  exports["uffd_register"] = Napi::Function::New(env, UffdRegister, "uffd_register");
  exports["uffd_unregister"] = Napi::Function::New(env, UffdUnregister, "uffd_unregister");
  exports["uffd_continue"] = Napi::Function::New(env, UffdContinue, "uffd_continue");
  exports["uffd_wake"] = Napi::Function::New(env, UffdWake, "uffd_wake");
  exports["uffd_writeprotect"] = Napi::Function::New(env, UffdWriteprotect, "uffd_writeprotect");
  exports["uffd_read"] = Napi::Function::New(env, UffdRead, "uffd_read");
  exports["fd_watch"] = Napi::Function::New(env, FdWatch, "fd_watch");
  exports["fd_unwatch"] = Napi::Function::New(env, FdUnwatch, "fd_unwatch");
  exports["fd_ref"] = Napi::Function::New(env, FdRef, "fd_ref");
  exports["agent_start"] = Napi::Function::New(env, AgentStart, "agent_start");
  exports["agent_stop"] = Napi::Function::New(env, AgentStop, "agent_stop");
  exports["agent_state"] = Napi::Function::New(env, AgentState, "agent_state");
  exports["agent_call"] = Napi::Function::New(env, AgentCall, "agent_call");
  exports["socket_pair"] = Napi::Function::New(env, SocketPair, "socket_pair");
}

}  // namespace devmap
