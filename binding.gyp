{
  # The product addon: one function per system call (native/*.cc). The benchmark baselines are their own
  # addon, native/bench/binding.gyp, so nothing but product functions ships in devmap.node.
  "includes": ["native/common.gypi"],
  "targets": [
    {
      "target_name": "devmap",
      "sources": [
        "native/addon.cc",
        "native/memory.cc",
        "native/regions.cc",
        "native/files.cc",
        "native/futex.cc",
        "native/waitv.cc",
        "native/robust_mutex.cc",
        "native/socket.cc",
        "native/uffd.cc",
        "native/shim/agent.c"
      ],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "libraries": ["-lrt", "-lpthread"]
    }
  ]
}
