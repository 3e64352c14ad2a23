// C baseline of the historical resource-map array walk (filled in with lib/rmap).
#include "devmap.h"

namespace devmap {
void InitRmapBaselines(Napi::Env, Napi::Object) {}
}  // namespace devmap
