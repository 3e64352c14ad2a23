{
  "targets": [
    {
      "target_name": "devmap",
      "sources": [
        "native/devmap.cc",
        "native/baseline_memory.cc",
        "native/baseline_rmap.cc",
        "native/sync.cc",
        "native/baseline_sync.cc",
        "native/socket.cc",
        "native/uffd.cc",
        "native/shim/agent.c"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lrt"],
      "variables": { "sanitize%": "<!(node -p \"process.env.DEVMAP_SANITIZE || ''\")" },
      "conditions": [
        ["sanitize!=''", {
          "cflags_cc": ["-fsanitize=<(sanitize)", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g", "-O1"],
          "ldflags": ["-fsanitize=<(sanitize)"]
        }]
      ]
    }
  ]
}
