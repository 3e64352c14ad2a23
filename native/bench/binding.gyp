{
  # The benchmark addon: C baselines that bench/ and `devmap bench` run beside devmap in the same process.
  "includes": ["../common.gypi"],
  "targets": [
    {
      "target_name": "devmap_bench",
      "sources": ["addon.cc", "baseline_memory.cc", "baseline_rmap.cc", "baseline_sync.cc", "baseline_channel.cc", "baseline_faults.cc"]
    }
  ]
}
