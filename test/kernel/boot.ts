// Kernels for a test file: boot() makes one (64 pages of address space per process unless told), and after each
// test every kernel made is shut down and every DevInfo handed to keep() is detached.
import { afterEach } from 'vitest';
import { DevInfo, Kernel, pageSize } from '../../lib';

export function kernelsForTests(defaults: { arenaSize?: number; addressSpacePages?: number } = {}) {
  const kernels: Kernel[] = [];
  const dips: DevInfo[] = [];
  afterEach(async () => {
    for (const k of kernels.splice(0)) await k.shutdown();
    for (const d of dips.splice(0)) d.detach();
  });
  return {
    boot(arenaSize = defaults.arenaSize ?? 2 ** 20): Kernel {
      const k = new Kernel({ arenaSize, addressSpaceSize: (defaults.addressSpacePages ?? 64) * pageSize });
      kernels.push(k);
      return k;
    },
    /** Detaches `dip` after the test. */
    keep(...dip: DevInfo[]): void {
      dips.push(...dip);
    },
  };
}
