// lib/memory/reservation.ts: the primitives of a simulated address space — a PROT_NONE reservation, MAP_FIXED
// placements inside it, re-reserved holes, and the held (quarantined) ranges a free-range search must skip.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAP_PRIVATE, MAP_SHARED, Mapping, PROT_READ, PROT_WRITE, pageSize } from '../../lib';
import { Reservation } from '../../lib/memory/reservation';
import { trackLeaks } from '../helpers/leaks';

trackLeaks();
const RW = PROT_READ | PROT_WRITE;

/** The kernel's protection of the page at `addr` ("rw", "--", …), or 'unmapped'. */
function realProt(addr: number): string {
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const [range, perms] = line.split(' ');
    const [s, e] = (range ?? '').split('-').map((x) => parseInt(x, 16));
    if (s <= addr && addr < e) return perms.slice(0, 2);
  }
  return 'unmapped';
}

describe('Reservation', () => {
  it('reserves PROT_NONE, places MAP_FIXED inside, re-reserves what is unmapped, releases the whole', () => {
    const r = Reservation.reserve(8 * pageSize);
    expect(realProt(r.addr)).toBe('--');
    const m = r.place(r.addr + pageSize, 2 * pageSize, RW, MAP_PRIVATE, -1, 0) as Mapping;
    expect(m).toBeInstanceOf(Mapping);
    expect(realProt(r.addr + pageSize)).toBe('rw');
    m.unmap(); // never viewed: re-reserved at once
    expect(realProt(r.addr + pageSize)).toBe('--');
    expect(r.held()).toEqual([]);
    r.release();
    expect(r.alive).toBe(false);
    expect(realProt(r.addr)).toBe('unmapped');
  });

  it('a failed placement returns the errno; a failed reservation throws a system error with its errno', () => {
    const r = Reservation.reserve(4 * pageSize);
    expect(r.place(r.addr, pageSize, RW, MAP_SHARED, 12345, 0)).toBe(9); // EBADF
    r.release();
    expect(() => Reservation.reserve(2 ** 52)).toThrow(expect.objectContaining({ code: 'ENOMEM', errno: -12, syscall: 'mmap' }));
  });

  it('a placement below read+write over pages stale views still reach waits for them (the kernel keeps read+write), and is matched to its own release', async () => {
    const r = Reservation.reserve(4 * pageSize);
    const m = r.place(r.addr, 2 * pageSize, RW, MAP_PRIVATE, -1, 0) as Mapping;
    let stale: Uint8Array | undefined = new Uint8Array(m.buffer);
    m.unmap();
    const ro = r.place(r.addr, 2 * pageSize, PROT_READ, MAP_PRIVATE, -1, 0) as Mapping;
    expect(ro.protection(0)).toBe(PROT_READ);
    expect(ro.protectionPending).toBe(true);
    stale[0] = 1; // no fault: the kernel has read+write there until the stale view is gone
    expect(realProt(r.addr)).toBe('rw');
    // Given back first, with the very address and length of the held range: not taken for its release.
    ro.unmap();
    expect(r.held()).toEqual([[r.addr, 2 * pageSize]]);
    stale[1] = 2;
    stale = undefined;
    for (let i = 0; i < 100 && r.held().length > 0; i++) {
      globalThis.gc?.();
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(r.held()).toEqual([]);
    expect(realProt(r.addr)).toBe('--');
    r.release();
  });

  it('holds the pages a live view still reaches; a placement over them takes them over without detaching it, and gives them back as trash', () => {
    const r = Reservation.reserve(4 * pageSize);
    const m = r.place(r.addr, 2 * pageSize, RW, MAP_PRIVATE, -1, 0) as Mapping;
    const stale = new Uint8Array(m.buffer);
    stale[pageSize] = 1;
    m.unmap();
    expect(r.held()).toEqual([[r.addr, 2 * pageSize]]);
    expect(stale[pageSize]).toBe(0); // trash pages, read+write
    r.rereserve(r.addr, 4 * pageSize); // a hole-wide re-reserve leaves the held pages alone
    expect(realProt(r.addr)).toBe('rw');
    expect(stale[0]).toBe(0);
    const again = r.place(r.addr + pageSize, pageSize, RW, MAP_PRIVATE, -1, 0) as Mapping;
    // Never detached (a Node API may hold it): it sees what is mapped at its address now, as a pointer would.
    expect(stale.length).toBe(2 * pageSize);
    new Uint8Array(again.buffer)[0] = 5;
    expect(stale[pageSize]).toBe(5);
    // The new mapping goes first: its pages turn to trash again (the stale view still reaches them), not PROT_NONE.
    again.unmap();
    expect(realProt(r.addr + pageSize)).toBe('rw');
    stale[pageSize] = 6;
    // The same with a mapping nobody viewed (given back at once): trash under the stale view, not PROT_NONE.
    const third = r.place(r.addr, pageSize, RW, MAP_PRIVATE, -1, 0) as Mapping;
    third.unmap();
    expect(realProt(r.addr)).toBe('rw');
    stale[0] = 7;
    expect(r.held()).toContainEqual([r.addr, 2 * pageSize]);
    r.release();
  });
});
