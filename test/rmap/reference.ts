/*
 * Plain reference implementations of the historical algorithms, written for clarity, not speed, straight
 * from SPEC C.2–C.5 and C.7: an array of (addr, size) pairs walked from the start (classic), and lists of
 * segment objects (illumos). The property tests hold lib/rmap to these, step by step.
 */
export class RefPanic extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Range {
  index: number;
  size: number;
}

export interface RefLost extends Range {
  message: string;
}

export interface RefMap {
  alloc(size: number): number;
  rmfree(size: number, index: number): RefLost | null;
  ranges(): Range[];
  slotsFree: number;
}

/** Solaris ≤ 7 array resource map with a pluggable overflow rule (C.2, C.3, C.4 Solaris column). */
export class ClassicRef implements RefMap {
  readonly map: { addr: number; size: number }[] = [];
  slotsFree: number;

  constructor(
    mapsize: number,
    readonly rule: 'solaris' | 'bsd' | 'svr4' = 'solaris',
    readonly name = 'rmallocmap',
  ) {
    this.slotsFree = mapsize;
  }

  alloc(size: number): number {
    for (let i = 0; i < this.map.length; i++) {
      const e = this.map[i];
      if (e.size >= size) {
        const addr = e.addr;
        e.addr += size;
        e.size -= size;
        if (e.size === 0) {
          this.map.splice(i, 1);
          this.slotsFree++;
        }
        return addr;
      }
    }
    return 0;
  }

  rmfree(size: number, addr: number): RefLost | null {
    if (size === 0) throw new RefPanic('ERR_DEVMAP_RMAP_ZERO_SIZE', 'bad rmfree');
    if (addr === 0) throw new RefPanic('ERR_DEVMAP_RMAP_ZERO_INDEX', 'bad rmfree');
    let lost: RefLost | null = null;
    for (;;) {
      let r = this.map.findIndex((e) => e.addr > addr);
      if (r < 0) r = this.map.length;
      const L = r > 0 ? this.map[r - 1] : undefined;
      const R = this.map[r];
      if (L && L.addr + L.size > addr) throw new RefPanic('ERR_DEVMAP_RMAP_OVERLAP', 'bad rmfree');
      if (R && addr + size > R.addr) throw new RefPanic('ERR_DEVMAP_RMAP_OVERLAP', 'bad rmfree');
      if (L && L.addr + L.size === addr) {
        L.size += size;
        if (R && addr + size === R.addr) {
          L.size += R.size;
          this.map.splice(r, 1);
          this.slotsFree++;
        }
        return lost;
      }
      if (R && addr + size === R.addr) {
        R.addr = addr;
        R.size += size;
        return lost;
      }
      if (this.slotsFree === 0) {
        if (this.rule === 'solaris') {
          const n = this.map.length;
          const v = n >= 2 && this.map[n - 2].size < this.map[n - 1].size ? n - 2 : n - 1;
          const e = this.map.splice(v, 1)[0];
          this.slotsFree++;
          lost = { index: e.addr, size: e.size, message: `${this.name}: rmap overflow, lost [${e.addr}, ${e.addr + e.size}]` };
          continue;
        }
        if (this.rule === 'svr4') {
          return { index: addr, size, message: `rmfree map overflow ${this.name}.  Lost ${size} item(s) at ${addr}` };
        }
        // 4.3BSD: insert (the array overflows by one), then drop the second-to-last entry.
        this.map.splice(r, 0, { addr, size });
        const e = this.map.splice(this.map.length - 2, 1)[0];
        return { index: e.addr, size: e.size, message: `${this.name}: rmap ovflo, lost [${e.addr},${e.addr + e.size})` };
      }
      this.map.splice(r, 0, { addr, size });
      this.slotsFree--;
      return lost;
    }
  }

  ranges(): Range[] {
    return this.map.map((e) => ({ index: e.addr, size: e.size }));
  }
}

interface Seg {
  start: number;
  size: number;
  free: boolean;
}

interface Span {
  start: number;
  size: number;
  segs: Seg[];
}

export function highbit(n: number): number {
  let h = 0;
  while (2 ** h <= n) h++;
  return h;
}

/** illumos rmap.c over vmem (C.7): instant fit, LIFO power-of-two lists, spans, exact-match frees. */
export class IllumosRef implements RefMap {
  readonly spans: Span[] = [];
  readonly lists: Seg[][] = Array.from({ length: 53 }, () => []);
  slotsFree = Infinity;

  constructor(readonly name = 'rmap') {}

  alloc(size: number): number {
    if (size === 0) throw new RefPanic('ERR_DEVMAP_RMAP_ZERO_SIZE', 'vmem_xalloc(): size == 0');
    const hb = highbit(size);
    let x: Seg | undefined;
    const firstNonEmpty = (from: number) => this.lists.slice(from).find((l) => l.length > 0)?.[0];
    if (size === 2 ** (hb - 1)) x = firstNonEmpty(hb - 1);
    else x = firstNonEmpty(hb) ?? this.lists[hb - 1].find((s) => s.size >= size);
    if (!x) return 0;
    const index = x.start;
    const rest = x.size - size;
    const span = this.spans.find((sp) => sp.segs.includes(x))!;
    const pos = span.segs.indexOf(x);
    if (rest > 0 && highbit(rest) === highbit(x.size)) {
      x.start += size;
      x.size = rest;
      span.segs.splice(pos, 0, { start: index, size, free: false });
      return index;
    }
    this.unlist(x);
    x.free = false;
    x.size = size;
    if (rest > 0) {
      const r = { start: index + size, size: rest, free: true };
      span.segs.splice(pos + 1, 0, r);
      this.list(r);
    }
    return index;
  }

  rmfree(size: number, index: number): RefLost | null {
    const span = this.spans.find((sp) => index >= sp.start && index + size - 1 < sp.start + sp.size);
    if (span) {
      const i = span.segs.findIndex((s) => !s.free && s.start === index);
      const at = `vmem_hash_delete(${this.name}, ${index.toString(16)}, ${size})`;
      if (i < 0) throw new RefPanic('ERR_DEVMAP_RMAP_BAD_FREE', `${at}: bad free`);
      let seg = span.segs[i];
      if (seg.size !== size) throw new RefPanic('ERR_DEVMAP_RMAP_WRONG_SIZE', `${at}: wrong size (expect ${seg.size})`);
      const next = span.segs[i + 1];
      if (next?.free) {
        this.unlist(next);
        seg.size += next.size;
        span.segs.splice(i + 1, 1);
      }
      const prev = span.segs[i - 1];
      if (prev?.free) {
        this.unlist(prev);
        prev.size += seg.size;
        span.segs.splice(i, 1);
        seg = prev;
      }
      seg.free = true;
      this.list(seg);
      return null;
    }
    const at = `vmem_add(${this.name}, 0x${index.toString(16)}, ${size})`;
    if (index === 0) throw new RefPanic('ERR_DEVMAP_RMAP_ZERO_INDEX', `${at}: bad arguments`);
    if (size === 0) throw new RefPanic('ERR_DEVMAP_RMAP_ZERO_SIZE', `${at}: bad arguments`);
    if (this.spans.some((sp) => index < sp.start + sp.size && sp.start < index + size)) {
      throw new RefPanic('ERR_DEVMAP_RMAP_OVERLAP', `${at}: range overlaps an existing span`);
    }
    const seg = { start: index, size, free: true };
    this.spans.push({ start: index, size, segs: [seg] });
    this.spans.sort((a, b) => a.start - b.start);
    this.list(seg);
    return null;
  }

  ranges(): Range[] {
    return this.spans.flatMap((sp) => sp.segs.filter((s) => s.free).map((s) => ({ index: s.start, size: s.size })));
  }

  private list(s: Seg): void {
    this.lists[highbit(s.size) - 1].unshift(s);
  }

  private unlist(s: Seg): void {
    const l = this.lists[highbit(s.size) - 1];
    l.splice(l.indexOf(s), 1);
  }
}

/** C.5: a map plus waiters; every successful rmfree retries every waiter in queue order. */
export class WaitingRef {
  readonly waiters: { id: number; size: number }[] = [];
  readonly granted = new Map<number, number>();

  constructor(
    readonly map: RefMap,
    readonly fifo = false,
  ) {}

  wait(id: number, size: number): number | undefined {
    if (!(this.fifo && this.waiters.length > 0)) {
      const i = this.map.alloc(size);
      if (i !== 0) return i;
    }
    this.waiters.push({ id, size });
    return undefined;
  }

  rmfree(size: number, index: number): RefLost | null {
    const lost = this.map.rmfree(size, index);
    this.wake();
    return lost;
  }

  /** A cancelled wait leaves the queue; under fifo the waiters behind it get their chance. */
  abort(id: number): void {
    this.waiters.splice(this.waiters.findIndex((w) => w.id === id), 1);
    if (this.fifo) this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.slice()) {
      const i = this.map.alloc(w.size);
      if (i === 0) {
        if (this.fifo) break;
        continue;
      }
      this.waiters.splice(this.waiters.indexOf(w), 1);
      this.granted.set(w.id, i);
    }
  }
}
