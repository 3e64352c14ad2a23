// The product addon's parts: each file registers the functions of one purpose on the exports object.
#pragma once
#include <napi.h>

namespace devmap {

void InitMemory(Napi::Env env, Napi::Object exports);       // memory.cc: mmap and friends, views
void InitFiles(Napi::Env env, Napi::Object exports);        // files.cc: memfd, shm, files, xattrs
void InitFutex(Napi::Env env, Napi::Object exports);        // futex.cc: spinning wait, wake
void InitWaitv(Napi::Env env, Napi::Object exports);        // waitv.cc: the waiter threads of waitAsync
void InitRobustMutex(Napi::Env env, Napi::Object exports);  // robust_mutex.cc: glibc robust mutexes
void InitSocket(Napi::Env env, Napi::Object exports);       // socket.cc: Unix sockets, SCM_RIGHTS, SO_PEERCRED
void InitUffd(Napi::Env env, Napi::Object exports);         // uffd.cc: userfaultfd, fd readiness, the fault agent

}  // namespace devmap
