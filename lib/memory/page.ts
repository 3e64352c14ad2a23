import { readFileSync } from 'node:fs';

const AT_PAGESZ = 6n;

/** sysconf(_SC_PAGESIZE), read from the process's auxiliary vector so that importing needs no addon. */
function readPageSize(): number {
  try {
    const auxv = readFileSync('/proc/self/auxv');
    for (let i = 0; i + 16 <= auxv.length; i += 16) {
      if (auxv.readBigUInt64LE(i) === AT_PAGESZ) return Number(auxv.readBigUInt64LE(i + 8));
    }
  } catch {
    // Not Linux: every call that needs a page size throws ERR_DEVMAP_UNSUPPORTED_PLATFORM anyway.
  }
  return 4096;
}

/** The machine's page size in bytes. */
export const pageSize: number = readPageSize();

export function roundUpToPage(n: number, granule = pageSize): number {
  return Math.ceil(n / granule) * granule;
}
