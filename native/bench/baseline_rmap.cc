// C baseline of the historical resource-map array walk (Solaris <= 7 rmap.c, SPEC C.2), for bench/rmap.mjs.
//
// The map is the classic array of (size, addr) entries sorted by addr, terminated by an entry of size 0.
// rmalloc walks it for the first entry that fits; rmfree walks it for the insertion point, checks both
// neighbours for overlap, then merges or inserts (shifting). Both are linear in the number of free ranges.
//
// c_rmap_pairs(nRanges, iters) lays out the benchmark's map -- nRanges - 1 free ranges of 2 units at
// 1, 5, 9, ... (allocated 2-unit gaps between them) and a last range of 1000 units -- then times `iters`
// pairs a = rmalloc(3); rmfree(3, a): only the last range fits 3 units, so both calls walk the whole array.
// Returns the CPU time the calling thread spent in the loop, in ns (CLOCK_THREAD_CPUTIME_ID: on a shared
// machine, time spent descheduled is not counted), or -1 when the result is not what the workload expects.
// c_rmap_thread_ns() reads the same clock, so that the JS side of the benchmark measures its loops alike.
#include <cstdlib>
#include <vector>

#include "../common.h"
#include "baselines.h"

namespace devmap {

namespace {

double CpuNs() {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

struct MapEnt {
  unsigned long m_size;
  unsigned long m_addr;
};

struct Map {
  std::vector<MapEnt> ent;  // slots + terminator
  long free_slots;
};

unsigned long RmAlloc(Map& m, unsigned long size) {
  for (MapEnt* bp = m.ent.data(); bp->m_size != 0; bp++) {
    if (bp->m_size >= size) {
      unsigned long addr = bp->m_addr;
      bp->m_addr += size;
      if ((bp->m_size -= size) == 0) {
        do {
          bp++;
          (bp - 1)->m_addr = bp->m_addr;
        } while (((bp - 1)->m_size = bp->m_size) != 0);
        m.free_slots++;
      }
      return addr;
    }
  }
  return 0;
}

// Returns false for "bad rmfree" (zero size or address, overlap with free space) and for overflow.
bool RmFree(Map& m, unsigned long size, unsigned long addr) {
  if (size == 0 || addr == 0) return false;
  MapEnt* start = m.ent.data();
  MapEnt* bp = start;
  while (bp->m_size != 0 && bp->m_addr <= addr) bp++;
  MapEnt* left = bp > start ? bp - 1 : nullptr;
  if (left != nullptr && left->m_addr + left->m_size > addr) return false;
  if (bp->m_size != 0 && addr + size > bp->m_addr) return false;
  if (left != nullptr && left->m_addr + left->m_size == addr) {
    left->m_size += size;
    if (bp->m_size != 0 && addr + size == bp->m_addr) {
      left->m_size += bp->m_size;
      do {
        bp++;
        (bp - 1)->m_addr = bp->m_addr;
      } while (((bp - 1)->m_size = bp->m_size) != 0);
      m.free_slots++;
    }
    return true;
  }
  if (bp->m_size != 0 && addr + size == bp->m_addr) {
    bp->m_addr -= size;
    bp->m_size += size;
    return true;
  }
  if (m.free_slots == 0) return false;
  MapEnt carry = {size, addr};
  do {
    MapEnt t = *bp;
    *bp++ = carry;
    carry = t;
  } while (carry.m_size != 0);
  *bp = carry;  // the terminator moves up one
  m.free_slots--;
  return true;
}

Napi::Value Pairs(const Napi::CallbackInfo& info) {
  if (!CheckArgs(info, 2)) return info.Env().Undefined();
  long ranges = static_cast<long>(info[0].As<Napi::Number>().DoubleValue());
  long iters = static_cast<long>(info[1].As<Napi::Number>().DoubleValue());
  if (ranges < 1 || iters < 0) return Napi::Number::New(info.Env(), -1);
  // The array a sequence of rmfrees would leave (written directly: building it through RmFree would cost
  // O(n^2) per call).
  Map m;
  m.ent.assign(static_cast<size_t>(ranges) + 2, MapEnt{0, 0});
  m.free_slots = 1;
  for (long i = 0; i + 1 < ranges; i++) m.ent[i] = MapEnt{2, 1 + 4 * static_cast<unsigned long>(i)};
  unsigned long last = 1 + 4 * static_cast<unsigned long>(ranges - 1);
  m.ent[ranges - 1] = MapEnt{1000, last};
  volatile unsigned long sink = 0;
  double t0 = CpuNs();
  for (long i = 0; i < iters; i++) {
    unsigned long a = RmAlloc(m, 3);
    if (!RmFree(m, 3, a)) return Napi::Number::New(info.Env(), -1);
    sink = sink + a;
  }
  double elapsed = CpuNs() - t0;
  if (iters > 0 && sink != last * static_cast<unsigned long>(iters)) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), elapsed);
}

Napi::Value ThreadNs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), CpuNs()); }

}  // namespace

void InitRmapBaselines(Napi::Env env, Napi::Object exports) {
  exports["c_rmap_pairs"] = Napi::Function::New(env, Pairs, "c_rmap_pairs");
  exports["c_rmap_thread_ns"] = Napi::Function::New(env, ThreadNs, "c_rmap_thread_ns");
}

}  // namespace devmap
