// The devmap addon (devmap.node): one function per system call, no policy. Each purpose lives in its own file
// (addon.h lists them); this file only registers them. The C baselines that bench/ measures beside devmap are a
// separate addon (native/bench/), so the product carries nothing but product functions.
#include <napi.h>

#include "addon.h"

namespace devmap {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitMemory(env, exports);
  InitFiles(env, exports);
  InitFutex(env, exports);
  InitWaitv(env, exports);
  InitRobustMutex(env, exports);
  return exports;
}

}  // namespace devmap

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return devmap::Init(env, exports); }
NODE_API_MODULE(devmap, InitModule)
