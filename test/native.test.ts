// The two addons keep to their purposes: devmap.node carries product functions only, devmap_bench.node the C
// baselines; and every file of the product addon answers a misaligned or null word the same way (-EINVAL).
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { mapAnonymous } from '../lib';
import { native } from '../lib/native';
import { trackLeaks } from './helpers/leaks';

// The bench loader is plain CommonJS, shared with bench/*.mjs.
const baselines = require('../bench/baselines.cjs') as Record<string, unknown>;

trackLeaks();

const EINVAL = -constants.errno.EINVAL;

describe('native targets', () => {
  it('the product addon exports no C baseline and no dead futex entry point', () => {
    const names = Object.keys(native());
    expect(names.filter((n) => n.startsWith('c_'))).toEqual([]);
    expect(names).not.toContain('futex_wait');
    expect(names).not.toContain('futex_wake');
    expect(names).toContain('futex_wait_spin');
  });

  it('the benchmark addon loads on its own and carries every C baseline bench/ uses', () => {
    for (const name of [
      'c_map_unmap', 'c_shm_cycle', 'c_file_map', 'c_first_touch', 'c_fill', 'c_fixed_map_rereserve',
      'c_rmap_pairs', 'c_rmap_thread_ns', 'c_futex_pingpong', 'c_spin_pingpong',
    ]) {
      expect(typeof baselines[name], name).toBe('function');
    }
    expect(Object.keys(baselines).every((n) => n.startsWith('c_'))).toBe(true);
  });

  it('a misaligned or null word is -EINVAL in every file that takes one', () => {
    const m = mapAnonymous(4096);
    try {
      const odd = Number(m.address) + 1;
      const n = native();
      expect(n.futex_wait_spin(odd, 0, 0, 0, 0)).toBe(EINVAL);
      expect(n.futex_wait_spin(0, 0, 0, 0, 0)).toBe(EINVAL);
      expect(n.futex_wake_addr(odd, 1)).toBe(EINVAL);
      expect(n.mutex_lock(odd)).toBe(EINVAL);
      expect(n.mutex_unlock(0)).toBe(EINVAL);
      expect(n.mutex_wait_value(odd)).toBe(EINVAL);
    } finally {
      m.unmap();
    }
  });
});
