{
  # Settings every devmap addon target shares (the product addon, the benchmark baselines).
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "_GNU_SOURCE"],
    "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags_cc!": ["-fno-exceptions"],
    "variables": { "sanitize%": "<!(node -p \"process.env.DEVMAP_SANITIZE || ''\")" },
    "conditions": [
      ["sanitize!=''", {
        "cflags_cc": ["-fsanitize=<(sanitize)", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g", "-O1"],
        "ldflags": ["-fsanitize=<(sanitize)"]
      }]
    ]
  }
}
