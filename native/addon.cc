// The devmap addon (devmap.node): one function per system call, no policy. Each purpose lives in its own file
// (addon.h lists them); this file only registers them. The C baselines that bench/ measures beside devmap are a
// separate addon (native/bench/), so the product carries nothing but product functions.
#include <napi.h>

#include "addon.h"
#include "regions.h"

namespace devmap {

// A Worker can be terminated while it loads the addon. Every step here then fails quietly (the C API's status
// codes; node-addon-api built with NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS), so a terminating environment
// gets a partial exports object it will never use, and the process never aborts.
static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // First: the per-environment state, so that its teardown hook runs after every other (hooks run in reverse).
  if (!InitEnvState(env)) return exports;
  InitMemory(env, exports);
  InitFiles(env, exports);
  InitFutex(env, exports);
  InitWaitv(env, exports);
  InitRobustMutex(env, exports);
  InitSocket(env, exports);
  InitUffd(env, exports);
  return exports;
}

}  // namespace devmap

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return devmap::Init(env, exports); }
NODE_API_MODULE(devmap, InitModule)
