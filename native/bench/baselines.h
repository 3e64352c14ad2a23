// The benchmark addon's parts: C baselines for bench/. Each runs a loop in C and returns elapsed nanoseconds,
// so the JS path and the C path are measured in one process and one run.
#pragma once
#include <napi.h>

namespace devmap {

void InitMemoryBaselines(Napi::Env env, Napi::Object exports);  // baseline_memory.cc
void InitRmapBaselines(Napi::Env env, Napi::Object exports);    // baseline_rmap.cc
void InitSyncBaselines(Napi::Env env, Napi::Object exports);    // baseline_sync.cc
void InitFaultBaselines(Napi::Env env, Napi::Object exports);   // baseline_faults.cc
void InitChannelBaselines(Napi::Env env, Napi::Object exports); // baseline_channel.cc

}  // namespace devmap
