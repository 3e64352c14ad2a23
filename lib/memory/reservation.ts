/*
 * Reservation: a range of address space held PROT_NONE, and the mappings placed inside it with MAP_FIXED —
 * the primitives of a simulated address space (lib/kernel/as.ts).
 *
 * Nothing else in the process can land inside a reservation. Pages taken from a mapping placed in it are
 * re-reserved (mmap PROT_NONE over them), never munmapped, so holes stay the reservation's. When a view of
 * devmap's may still reach those pages (a view left attached by unmap, a thread-pool request, a store a BYOB
 * read moved), quarantine.ts holds them first — trash pages, read+write — and re-reserves them only once
 * nothing can reach them. The reservation keeps the list of held ranges, so that a free-range search skips
 * them: a new mapping placed there would show its bytes to the stale views. (A reservation made with
 * `aliasViews` — a simulated process's — has views of its shared and anonymous mappings made over aliases
 * outside it, so only views of private file mappings ever hold pages here, mapping.ts.)
 *
 * A mapping placed explicitly over a held range (MAP_FIXED at a chosen address) takes those pages over: the
 * stale views that still reach them see the new mapping from then on — what a pointer into unmapped memory
 * sees in a process once something is mapped at its address — and are never detached (a Node API may hold
 * one: zlib aborts on that). The held range's late release re-reserves only what was not taken over, so it
 * never lands on the new mapping's pages; when the new mapping gives them back first, they become trash again
 * until that release, so a stale view never meets a PROT_NONE page.
 */
import { check, errno } from '../errors';
import { native } from '../native';
import { MADV_REMOVE, MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE } from './constants';
import { assertMapSlots, takeMapSlots } from './map-count';
import { adoptMapping, type Mapping } from './mapping';
import { takeAway, type Lineage } from './quarantine';

/**
 * Told every real change, in order (a client process mirrors the reservation, lib/kernel/remote). Pages taken
 * away and held for stale views count as reserved from the moment they are taken: only this process can
 * reach its trash pages.
 */
export interface ReservationWatcher {
  placed(addr: number, len: number, prot: number, type: number, fd: number, offset: number): void;
  reserved(addr: number, len: number): void;
}

/** A range that waits in quarantine, and the parts of it a later placement took over. */
interface Held {
  addr: number;
  len: number;
  lineage: Lineage;
  taken: [number, number][];
}

export class Reservation {
  /** The first address. */
  readonly addr: number;
  readonly size: number;
  readonly #whole: Mapping;
  #held: Held[] = [];
  /** Told every placement and re-reservation (set by the owner; null: nobody). */
  watcher: ReservationWatcher | null = null;

  /**
   * mmap(2) of `size` bytes PROT_NONE, MAP_NORESERVE; a system error (with errno) when the kernel refuses.
   * With `aliasViews`, the views of shared mappings placed in it are made over aliases of their pages (see
   * mapping.ts, "Views of a simulated process"); without, over the pages themselves (a client process, whose
   * real faults must happen where it maps them).
   */
  static reserve(size: number, aliasViews = false): Reservation {
    assertMapSlots(1, `A reservation of ${size} bytes`);
    const addr = check(native().mmap(0, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), 'mmap');
    return new Reservation(addr, size, aliasViews);
  }

  readonly #aliasViews: boolean;

  private constructor(addr: number, size: number, aliasViews: boolean) {
    this.addr = addr;
    this.size = size;
    this.#aliasViews = aliasViews;
    this.#whole = adoptMapping({ addr, length: size, prot: PROT_NONE, shared: false });
  }

  /** True until release(). */
  get alive(): boolean {
    return this.#whole.mapped;
  }

  /**
   * Places `len` bytes of an object (`fd` at `offset`, or anonymous memory when fd is -1) at `addr` inside the
   * reservation with MAP_FIXED: a Mapping whose pages are re-reserved when released, or a positive errno.
   */
  place(addr: number, len: number, prot: number, type: number, fd: number, offset: number): Mapping | number {
    // With aliasViews, private anonymous memory is shared anonymous memory for real: nothing else can map it
    // (it has no descriptor, and a simulated fork copies its bytes), and shared pages can be aliased.
    const real = this.#aliasViews && fd < 0 && type === MAP_PRIVATE ? MAP_SHARED : type;
    // Over pages stale views still reach, the kernel gets read+write first: the protection asked for waits
    // for them like any lower protection (mapping.ts), through reachedElsewhere.
    const over = this.#heldOver(addr, len);
    // A placement splits what it lands in (in three at most): past the VMA budget the simulated mmap fails as a
    // real one does at the limit, with ENOMEM — before the real table is full (map-count.ts).
    if (!takeMapSlots(2)) return errno.ENOMEM;
    // (An object that cannot be mapped read+write is refused there: EACCES, never a fault under a stale view.)
    const rc = native().mmap(addr, len, over ? PROT_READ | PROT_WRITE : prot, real | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0), fd, offset);
    if (rc < 0) return -rc;
    this.#takeOver(addr, len);
    this.watcher?.placed(addr, len, prot, type, fd, offset);
    const m = adoptMapping({
      addr, length: len, prot: over ? PROT_READ | PROT_WRITE : prot, shared: type === MAP_SHARED,
      release: real === type ? this.#rereserveHeld : this.#punchAndRereserve, hold: this.#hold, finalize: false, anchor: this.#whole,
      aliasViews: this.#aliasViews && real === MAP_SHARED, reachedElsewhere: this.#heldOver,
    });
    if (over && prot !== (PROT_READ | PROT_WRITE)) m.protect(prot);
    return m;
  }

  /** Re-reserves [addr, addr + len) (pages no Mapping holds; held ones are left to their release): 0 or a negative errno. */
  rereserve(addr: number, len: number): number {
    let rc = 0;
    for (const [a, l] of this.#handBack(addr, len)) rc = this.#reserveAgain(a, l) || rc;
    if (rc === 0) this.watcher?.reserved(addr, len);
    return rc;
  }

  /**
   * Of [addr, addr + len), which its mapping gives back, the parts to re-reserve now: those no held range
   * covers. A part a held range covers is still reached by that range's stale views; if a placement had taken
   * it over (it is that mapping's pages being given back), it becomes trash again and the held range's own
   * release will re-reserve it.
   */
  #handBack(addr: number, len: number): [number, number][] {
    const free: [number, number][] = [];
    let cursor = addr;
    for (const h of [...this.#held].sort((x, y) => x.addr - y.addr)) {
      if (h.addr + h.len <= cursor || h.addr >= addr + len) continue;
      if (h.addr > cursor) free.push([cursor, h.addr - cursor]);
      const from = Math.max(cursor, h.addr);
      const to = Math.min(addr + len, h.addr + h.len);
      const kept: [number, number][] = [];
      for (const [ta, tl] of h.taken) {
        const s = Math.max(ta, from);
        const e = Math.min(ta + tl, to);
        if (s >= e) {
          kept.push([ta, tl]);
          continue;
        }
        takeAway(s, e - s);
        if (ta < s) kept.push([ta, s - ta]);
        if (ta + tl > e) kept.push([e, ta + tl - e]);
      }
      h.taken = kept;
      cursor = Math.max(cursor, to);
    }
    if (cursor < addr + len) free.push([cursor, addr + len - cursor]);
    return free;
  }

  #reserveAgain(addr: number, len: number): number {
    const rc = native().mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    return rc < 0 ? rc : 0;
  }

  /** The ranges waiting in quarantine, as [addr, len] in address order: a free-range search must skip them. */
  held(): [number, number][] {
    return this.#held.map((h) => [h.addr, h.len] as [number, number]).sort((a, b) => a[0] - b[0]);
  }

  /** Gives the whole range back (every mapping placed in it goes with it). */
  release(): void {
    if (this.#whole.mapped) this.#whole.unmap();
    this.#held = [];
  }

  readonly #hold = (addr: number, len: number, held: boolean, lineage: Lineage): void => {
    if (!held) return;
    this.#held.push({ addr, len, lineage, taken: [] });
    this.watcher?.reserved(addr, len);
  };

  /** True when part of [addr, addr + len) is held for stale views. */
  readonly #heldOver = (addr: number, len: number): boolean => this.#held.some((h) => h.addr < addr + len && h.addr + h.len > addr);

  /** The release of a held range: re-reserve what no placement took over since (and no other held range covers). */
  readonly #rereserveHeld = (addr: number, len: number, lineage?: Lineage): number => {
    const i = this.#held.findIndex((h) => h.addr === addr && h.len === len && h.lineage === lineage);
    if (i < 0) return this.#whole.mapped ? this.rereserve(addr, len) : 0;
    const [h] = this.#held.splice(i, 1);
    if (!this.#whole.mapped) return 0;
    let cursor = addr;
    let rc = 0;
    const give = (a: number, l: number) => {
      for (const [fa, fl] of this.#handBack(a, l)) rc = this.#reserveAgain(fa, fl) || rc;
    };
    for (const [a, l] of h.taken.sort((x, y) => x[0] - y[0])) {
      if (a > cursor) give(cursor, a - cursor);
      cursor = Math.max(cursor, a + l);
    }
    if (cursor < addr + len) give(cursor, addr + len - cursor);
    return rc;
  };

  /**
   * The release of private anonymous memory that is shared for real (place()): its pages are freed first —
   * the object lives on while other pieces of it (or aliases) map the rest, and re-reserving alone would keep
   * them. No view is over them any more: views are over aliases, whose part here is trash already.
   */
  readonly #punchAndRereserve = (addr: number, len: number, lineage: Lineage): number => {
    native().madvise(addr, len, MADV_REMOVE);
    return this.#rereserveHeld(addr, len, lineage);
  };

  /**
   * A placement over held pages: their stale views see the new mapping there from now on — as a pointer into
   * unmapped memory does in a process once something is mapped at its address — and are never detached (a
   * Node API may hold one). Their held range's late release skips those pages; when the new mapping gives them
   * back first, they turn to trash again until that release (#handBack).
   */
  #takeOver(addr: number, len: number): void {
    for (const h of this.#held) {
      const from = Math.max(h.addr, addr);
      const to = Math.min(h.addr + h.len, addr + len);
      if (from < to) h.taken.push([from, to - from]);
    }
  }
}
