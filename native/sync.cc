// Asynchronous futex waits (filled in with lib/sync).
#include "devmap.h"

namespace devmap {
void InitSync(Napi::Env, Napi::Object) {}
}  // namespace devmap
