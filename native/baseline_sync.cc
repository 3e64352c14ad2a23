// C baselines of cross-process ping-pong (filled in with lib/sync).
#include "devmap.h"

namespace devmap {
void InitSyncBaselines(Napi::Env, Napi::Object) {}
}  // namespace devmap
