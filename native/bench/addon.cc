// The benchmark addon (devmap_bench.node): the C baselines bench/ and `devmap bench` run beside devmap in the
// same process and run. It is never loaded by the library itself.
#include <napi.h>

#include "baselines.h"

namespace devmap {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitMemoryBaselines(env, exports);
  InitRmapBaselines(env, exports);
  InitSyncBaselines(env, exports);
  InitFaultBaselines(env, exports);
  InitChannelBaselines(env, exports);
  return exports;
}

}  // namespace devmap

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return devmap::Init(env, exports); }
NODE_API_MODULE(devmap_bench, InitModule)
