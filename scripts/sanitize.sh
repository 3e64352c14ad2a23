#!/usr/bin/env bash
# npm run test:asan — builds the addon with AddressSanitizer and UndefinedBehaviorSanitizer in a scratch copy
# (the normal build/ is left alone) and runs the tests that exercise the native layer against it.
#   SANITIZE=address,undefined (default) | VALGRIND=1 to run the same subset under valgrind memcheck instead.
#   Arguments are passed to vitest (e.g. a JSON reporter, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d /tmp/devmap-sanitize-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r binding.gyp native package.json "$work/"
ln -s "$root/node_modules" "$work/node_modules"
# test/faults.test.ts is left out: ASan's shadow memory cannot live under RLIMIT_AS, and ASan takes SIGBUS itself.
tests=(test/memory test/hostile.test.ts test/kernel test/irix test/ddi test/rmap)
[ -d test/sync ] && tests+=(test/sync)

if [ "${VALGRIND:-}" = 1 ]; then
  (cd "$work" && npm_config_debug=true npm run rebuild --silent >/dev/null)
  addon="$work/build/Debug/devmap.node"
  # The addon runs in vitest's worker processes, so valgrind follows children; the subset is smaller because
  # everything runs 20-50x slower. V8 writes code at run time, hence --smc-check.
  vtests=(test/memory/mapping.test.ts test/hostile.test.ts test/kernel test/ddi/devmap.test.ts)
  echo "valgrind memcheck over ${vtests[*]} with $addon"
  DEVMAP_ADDON="$addon" valgrind --trace-children=yes --error-exitcode=99 --leak-check=no \
    --smc-check=all-non-file --suppressions="$root/scripts/valgrind-node.supp" \
    node node_modules/vitest/vitest.mjs run --pool=forks --no-file-parallelism --testTimeout=600000 "${vtests[@]}"
  exit $?
fi

sanitize=${SANITIZE:-address,undefined}
(cd "$work" && DEVMAP_SANITIZE="$sanitize" npm run rebuild --silent >/dev/null)
addon="$work/build/Release/devmap.node"
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
echo "sanitizers: $sanitize; addon: $addon"
DEVMAP_ADDON="$addon" LD_PRELOAD="$preload" \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  npx vitest run "${tests[@]}" "$@"
