{
  # The preload shim (native/shim/shim.c): a plain C shared library that LD_PRELOAD loads into any program.
  # It links against libc alone and uses no Node symbol; node-gyp builds it (as build/Release/devmap_shim.node)
  # only because that is the tool the package already has. `npm run prebuild` puts the stripped build in
  # native/shim/prebuilds/<platform>-<arch>/, where lib/cli/run.ts finds it through node-gyp-build.
  "targets": [
    {
      "target_name": "devmap_shim",
      "sources": ["shim.c", "agent.c"],
      "cflags": ["-std=c11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags!": ["-fno-exceptions"],
      "ldflags": ["-Wl,--no-undefined"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
