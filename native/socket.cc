// Unix-domain sockets for the kernel host and its Node client (lib/kernel/remote): one function per system
// call, -errno out, no policy. Descriptors travel with SCM_RIGHTS; the peer is identified with SO_PEERCRED.
// Every descriptor made here is close-on-exec, and every received one too (MSG_CMSG_CLOEXEC).
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "addon.h"
#include "common.h"

namespace devmap {

// The most descriptors one message may carry (the kernel's SCM_MAX_FD is 253).
static constexpr int kMaxFds = 64;

// Fills a sockaddr_un from a JS string; false (and -ENAMETOOLONG) when it does not fit.
static bool UnixAddress(const Napi::Value& v, sockaddr_un* sa) {
  std::string path = v.As<Napi::String>().Utf8Value();
  std::memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa->sun_path) return false;
  std::memcpy(sa->sun_path, path.data(), path.size());
  return true;
}

// socket_unix(nonblocking) -> fd | -errno: a SOCK_STREAM Unix socket, close-on-exec.
static Napi::Value SocketUnix(const Napi::CallbackInfo& info) {
  int flags = SOCK_STREAM | SOCK_CLOEXEC | (info[0].ToBoolean().Value() ? SOCK_NONBLOCK : 0);
  return Result(info.Env(), socket(AF_UNIX, flags, 0));
}

// socket_bind(fd, path) -> 0 | -errno
static Napi::Value SocketBind(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1) || !info[1].IsString()) return info.Env().Undefined();
  sockaddr_un sa;
  if (!UnixAddress(info[1], &sa)) return Napi::Number::New(info.Env(), -ENAMETOOLONG);
  return Result(info.Env(), bind(info[0].As<Napi::Number>().Int32Value(), reinterpret_cast<sockaddr*>(&sa), sizeof sa));
}

// socket_listen(fd, backlog) -> 0 | -errno
static Napi::Value SocketListen(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  return Result(info.Env(), listen(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()));
}

// socket_connect(fd, path) -> 0 | -errno
static Napi::Value SocketConnect(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1) || !info[1].IsString()) return info.Env().Undefined();
  sockaddr_un sa;
  if (!UnixAddress(info[1], &sa)) return Napi::Number::New(info.Env(), -ENAMETOOLONG);
  int rc;
  do rc = connect(info[0].As<Napi::Number>().Int32Value(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  while (rc < 0 && errno == EINTR);
  return Result(info.Env(), rc);
}

// socket_peercred(fd, out Float64Array[3]) -> 0 | -errno; out = [pid, uid, gid] of the peer at connect time.
static Napi::Value SocketPeercred(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 1) || !info[1].IsTypedArray()) return info.Env().Undefined();
  Napi::Float64Array out = info[1].As<Napi::Float64Array>();
  if (out.ElementLength() < 3) {
    Napi::TypeError::New(info.Env(), "devmap native: socket_peercred needs a Float64Array of 3").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(info[0].As<Napi::Number>().Int32Value(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    return Napi::Number::New(info.Env(), -errno);
  }
  out[0] = cred.pid;
  out[1] = cred.uid;
  out[2] = cred.gid;
  return Napi::Number::New(info.Env(), 0);
}

// socket_send(fd, bytes Uint8Array, fds Int32Array | null, dontwait) -> bytes sent | -errno.
// MSG_NOSIGNAL: a peer that went away is -EPIPE, never SIGPIPE.
static Napi::Value SocketSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1) || !info[1].IsTypedArray()) return env.Undefined();
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  iovec iov{data.Data(), data.ByteLength()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (info[2].IsTypedArray()) {
    Napi::Int32Array fds = info[2].As<Napi::Int32Array>();
    size_t n = fds.ElementLength();
    if (n > static_cast<size_t>(kMaxFds)) return Napi::Number::New(env, -E2BIG);
    if (n > 0) {
      std::memset(control, 0, sizeof control);
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * n);
      std::memcpy(CMSG_DATA(c), fds.Data(), sizeof(int) * n);
    }
  }
  int flags = MSG_NOSIGNAL | (info[3].ToBoolean().Value() ? MSG_DONTWAIT : 0);
  ssize_t rc;
  do rc = sendmsg(info[0].As<Napi::Number>().Int32Value(), &msg, flags);
  while (rc < 0 && errno == EINTR);
  return Result(env, rc);
}

// socket_recv(fd, bytes Uint8Array, out Int32Array, dontwait) -> bytes received (0 at end of stream) | -errno.
// out[0] = how many descriptors arrived, out[1] = msg_flags (MSG_CTRUNC: some were dropped by the kernel),
// out[2..] = the descriptors (close-on-exec). The caller owns them, even when it did not want any.
static Napi::Value SocketRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgs(info, 1) || !info[1].IsTypedArray() || !info[2].IsTypedArray()) return env.Undefined();
  Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();
  Napi::Int32Array out = info[2].As<Napi::Int32Array>();
  if (out.ElementLength() < 2) {
    Napi::TypeError::New(env, "devmap native: socket_recv needs an Int32Array of at least 2").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  size_t room = out.ElementLength() - 2;
  if (room > static_cast<size_t>(kMaxFds)) room = kMaxFds;
  iovec iov{data.Data(), data.ByteLength()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * (room == 0 ? 1 : room));
  int flags = MSG_CMSG_CLOEXEC | (info[3].ToBoolean().Value() ? MSG_DONTWAIT : 0);
  ssize_t rc;
  do rc = recvmsg(info[0].As<Napi::Number>().Int32Value(), &msg, flags);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) return Napi::Number::New(env, -errno);
  size_t count = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
    for (size_t i = 0; i < n; i++) {
      if (count < room) out[2 + count++] = fds[i];
      else close(fds[i]);  // cannot be reported: closing is the only way not to leak it
    }
  }
  out[0] = static_cast<int32_t>(count);
  out[1] = msg.msg_flags;
  return Napi::Number::New(env, static_cast<double>(rc));
}

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports["socket_unix"] = Napi::Function::New(env, SocketUnix, "socket_unix");
  exports["socket_bind"] = Napi::Function::New(env, SocketBind, "socket_bind");
  exports["socket_listen"] = Napi::Function::New(env, SocketListen, "socket_listen");
  exports["socket_connect"] = Napi::Function::New(env, SocketConnect, "socket_connect");
  exports["socket_peercred"] = Napi::Function::New(env, SocketPeercred, "socket_peercred");
  exports["socket_send"] = Napi::Function::New(env, SocketSend, "socket_send");
  exports["socket_recv"] = Napi::Function::New(env, SocketRecv, "socket_recv");
}

}  // namespace devmap
