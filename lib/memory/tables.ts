// The addon's shared tables (native/regions.cc), as typed arrays made once per environment.
import { native } from '../native';

let tables: { flags: Int32Array; counts: Int32Array; process: Int32Array } | undefined;

function load(): { flags: Int32Array; counts: Int32Array; process: Int32Array } {
  const [flags, counts, process] = native().tables();
  return (tables = { flags: new Int32Array(flags), counts: new Int32Array(counts), process: new Int32Array(process) });
}

/**
 * The addon's process-wide words, shared by every environment: [0] the fork count, [1] the VMA budget and [2] the
 * most mappings devmap lets the table hold (map-count.ts; the SIGBUS handler reads both).
 */
export function processWords(): Int32Array {
  return (tables ?? load()).process;
}

/**
 * How many fork(2)s this process has begun (any thread; the addon's pthread_atfork handler counts them before
 * the address space is copied). A shared anonymous object made at count `born` is shared with no child when
 * the count is still `born`.
 */
export function forkCount(): number {
  return Atomics.load(processWords(), 0);
}

/** The range table's flags words (process-wide): FLAG_TRUNCATED per row. */
export function rowFlags(): Int32Array {
  return (tables ?? load()).flags;
}

/**
 * This environment's store counters; word 0 is the scratch word mmap_row leaves a row index in, word 1 counts
 * the counters that fell to zero and the last ZERO_RING words log them (native/regions.cc).
 */
export function storeCounts(): Int32Array {
  return (tables ?? load()).counts;
}
