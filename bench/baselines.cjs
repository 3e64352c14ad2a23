// The C baselines (native/bench/, the devmap_bench addon): the same work as each benchmark, in C, measured in the
// same process and run. Loaded by bench/ only; the library never loads it. DEVMAP_BENCH_ADDON names a specific
// build (as DEVMAP_ADDON does for the product addon).
const { join } = require('node:path');

module.exports = process.env.DEVMAP_BENCH_ADDON
  ? require(process.env.DEVMAP_BENCH_ADDON)
  : require('node-gyp-build')(join(__dirname, '..', 'native', 'bench'));
