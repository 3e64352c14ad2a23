/*
 * The Solaris/illumos devmap framework on real memory (SPEC Part A, with devmap's decisions 1).
 *
 * 1. Objects
 *    A mapping of a devmap device is a segment (lib/kernel/as.ts) whose pages are tiled, in order, by a chain
 *    of mapping handles (DevmapHandle, the driver's devmap_cookie_t). Each handle is one physically contiguous
 *    piece: device memory (a register set of a DevInfo: a memfd or shm object) or kernel memory (a
 *    ddi_umem_alloc cookie in the arena). Its user pages are a real MAP_SHARED|MAP_FIXED mapping of that object
 *    at dh_uvaddr, so the bytes a user writes are the bytes the driver sees.
 *    Handle state (HState) lives in a private field only this module can read, so drivers see the read-only
 *    dh_* getters.
 *
 * 2. Translations
 *    Each handle keeps one byte per page: unloaded, loaded, or loaded for reading only (a handle set up with
 *    DEVMAP_WRITE_FAULTS whose page devmap_load loaded for a read: its write is a new fault, rw DEVMAP_WRITE;
 *    a read load never takes write permission back, only devmap_unload does), and the page's protection. A
 *    loaded page is really mapped with its protection (less PROT_WRITE when loaded for reading); an unloaded page is really PROT_NONE, so every view of it has been detached
 *    (Mapping.protect detaches) and the next access — proc.access() or taking a view — is a page fault that
 *    goes to the driver's devmap_access (or loads silently without one). devmap_load may only be called for the
 *    process whose fault is being handled (tracked with AsyncLocalStorage across awaits); devmap_unload works
 *    on any process's handle.
 *
 * 3. mmap (SPEC A.3): one devmap(9E) call per handle until the length is covered; each must call a setup
 *    helper exactly once and report maplen equal to the setup length (decision: the emulator requires it).
 *    Any driver error is ENXIO, a bad maplen EINVAL, MAP_PRIVATE without devmap_access EINVAL, handles with
 *    different (dev, devmap_access) contexts ENOTSUP. Only then — devmap_device's place — does MAP_FIXED remove
 *    what the range held, so every refusal above leaves an old mapping intact. Then the pages are mapped at
 *    consecutive addresses and devmap_map runs over the chain in order; a failure unmaps the earlier handles
 *    (devmap_unmap with NULLs) and is ENXIO (the old mapping is gone by then, as in illumos).
 *
 * 4. munmap and exit (SPEC A.6) — the real pages go first, then the map count (which may run close(9E)), then
 *    one devmap_unmap per touched handle in chain order, with the pre-unmap handle state; handle offsets and
 *    lengths are adjusted after the callbacks. One rule per handle covers every segment case:
 *
 *      handle vs. unmapped [a, e)          callback (off, len, new1, new2)         afterwards
 *      -------------------------------     ------------------------------------    ---------------------------
 *      wholly inside                        (uoff, len, NULL, NULL)                 freed
 *      starts before a, ends in (a, e]      (uoff + (a-start), end-a, H, NULL)      tail trimmed: len = a-start
 *      starts in [a, e), ends after e       (uoff, e-start, NULL, H)                head trimmed by e-start
 *      strictly contains [a, e)             (uoff + (a-start), e-a, H, H2)          H keeps the part below a; H2,
 *                                                                                   a byte copy of H during the
 *                                                                                   callback, the part above e
 *      ends at or before a / starts at e+   none                                    unchanged (moves to the upper
 *                                                                                   segment when above)
 *
 *    This is segdev's intended behaviour for whole, head, tail and middle unmaps of single- and multi-handle
 *    mappings; the [BUG?] of A.6 (a tail unmap measured from the first handle) is not reproduced.
 *
 * 5. fork (SPEC A.5): every handle is copied in chain order (the copy's private data aliases the parent's)
 *    and devmap_dup runs; a refusal fails the fork, and the refused copy's devmap_unmap is cleared so the
 *    driver never hears of it. The partial copy is freed at once — the handles copied before the refusal get
 *    their whole-handle devmap_unmap — and the child's earlier segments go afterwards (illumos as_dup: seg_free
 *    of the new segment, then as_free). The child's translations start unloaded when the driver has
 *    devmap_access.
 */
import { internalView } from '../memory/mapping';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DevmapError, integer, typeError } from '../errors';
import { MAP_PRIVATE, PROT_NONE, PROT_READ, PROT_WRITE } from '../memory/constants';
import { pageSize } from '../memory/page';
import { AddressSpace, Segment, type Piece, type Rw, type SegmentOps } from '../kernel/as';
import type { CharDriver, DeviceMapper, EntryResult, MapRequest } from '../kernel/device';
import { EACCES, EFAULT, EINVAL, EIO, ENOMEM, ENOTSUP, ENXIO } from '../kernel/errno';
import { kernelInternals, type Kernel } from '../kernel/kernel';
import { PROT_USER } from '../kernel/process';
import { syscallError } from '../kernel/syscall';
import {
  DDI_FAILURE, DDI_MODEL_LP64, DEVMAP_ACCESS, DEVMAP_ALLOW_REMAP, DEVMAP_EXEC, DEVMAP_MAPPING_INVALID, DEVMAP_OTHER,
  DEVMAP_READ, DEVMAP_SETUP_DONE, DEVMAP_SETUP_FLAGS, DEVMAP_WRITE, DEVMAP_WRITE_FAULTS, FC_HWERR, FC_MAKE_ERR, FC_NOMAP, HZ, UMEM_TRASH,
} from './constants';
import { registerFd, registerOf, type DevInfo, type RegisterSet } from './devinfo';
import { UmemCookie } from './umem';

/** An out-parameter: the C `T *` the callee stores through. */
export interface Out<T> {
  value: T;
}

/** struct devmap_callback_ctl: the framework keeps its own copy. */
export interface DevmapCallbackCtl {
  devmap_rev: number;
  devmap_map?(dhp: DevmapHandle, dev: number, flags: number, off: number, len: number, pvtp: Out<unknown>): EntryResult;
  devmap_access?(dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number): EntryResult;
  devmap_dup?(dhp: DevmapHandle, pvtp: unknown, new_dhp: DevmapHandle, new_pvtp: Out<unknown>): EntryResult;
  devmap_unmap?(
    dhp: DevmapHandle, pvtp: unknown, off: number, len: number,
    new_dhp1: DevmapHandle | null, new_pvtp1: Out<unknown> | null, new_dhp2: DevmapHandle | null, new_pvtp2: Out<unknown> | null,
  ): void | Promise<void>;
}

/** devmap_contextmgt(9E). */
export type DevmapContextMgt = (dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number) => EntryResult;

/**
 * A driver mapping through the devmap framework: devmap(9E) reports the handle's length through maplen. The
 * callbacks (devmap_map, devmap_access, ...) are not members: they reach the framework through the setup helpers'
 * callbackops. No other member is an entry point, so a misspelling is a type error.
 */
export interface DevmapDriver extends CharDriver {
  devmap(dev: number, dhp: DevmapHandle, off: number, len: number, maplen: Out<number>, model: number): EntryResult;
}

/** Translation states of a page (HState.loaded). */
const UNLOADED = 0;
const LOADED = 1;
const LOADED_READ = 2;

type Backing = { kind: 'devmem'; reg: RegisterSet } | { kind: 'umem'; cookie: UmemCookie } | null;

/** The device context shared by the handles with the same (dev, devmap_access): devmap_do_ctxmgt's oncpu flag. */
interface Ctx {
  oncpu: boolean;
  waiters: (() => void)[];
  /** The timeout that takes the context off the CPU: unref'd, but ref'd while a fault waits for it. */
  timer: NodeJS.Timeout | undefined;
  refs: number;
  key: [number, Function];
}

interface HState {
  kernel: Kernel;
  as: AddressSpace;
  dev: number;
  seg: Segment | null;
  uoff: number;
  len: number;
  uvaddr: number;
  roff: number;
  backing: Backing;
  pvtp: unknown;
  prot: number;
  maxprot: number;
  origMaxprot: number;
  flags: number;
  timeout: number;
  callbacks: DevmapCallbackCtl | null;
  ctx: Ctx | null;
  type: number;
  /** Per page: UNLOADED, LOADED, or LOADED_READ (no write permission: a write faults). */
  loaded: Uint8Array;
  /** Per page: the protection (PROT_USER included). */
  pprot: Uint8Array;
  dead: boolean;
}

let nextId = 1;
/** The framework's view of a handle's state; set by DevmapHandle's static block, private to this module. */
let stateOf: (h: DevmapHandle) => HState;
let newHandle: (state: HState) => DevmapHandle;
const constructing = Symbol('devmap.ddi');

/** devmap_cookie_t: a mapping handle. Drivers read it; the framework changes it. */
export class DevmapHandle {
  /** A stable id that survives trimming (the framework reuses handle objects). */
  readonly id: number = nextId++;
  // A private field rather than a WeakMap: handles come and go with every mmap, and a WeakMap entry per
  // handle is an ephemeron the collector has to revisit.
  readonly #s: HState;

  static {
    stateOf = (h) => h.#s;
    newHandle = (state) => new DevmapHandle(constructing, state);
  }

  private constructor(token: symbol, state: HState) {
    if (token !== constructing) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'devmap handles are made by the framework');
    this.#s = state;
  }

  get dh_uoff(): number {
    return st(this).uoff;
  }
  get dh_len(): number {
    return st(this).len;
  }
  get dh_uvaddr(): bigint {
    return BigInt(st(this).uvaddr);
  }
  get dh_roff(): number {
    return st(this).roff;
  }
  get dh_pvtp(): unknown {
    return st(this).pvtp;
  }
  get dh_prot(): number {
    return st(this).prot;
  }
  get dh_maxprot(): number {
    return st(this).maxprot;
  }
  get dh_orig_maxprot(): number {
    return st(this).origMaxprot;
  }
  get dh_flags(): number {
    return st(this).flags;
  }
  get dh_dev(): number {
    return st(this).dev;
  }
  get dh_timeout_length(): number {
    return st(this).timeout;
  }
  /** The pid of the process whose mapping this handle is part of. */
  get pid(): number {
    return st(this).as.pid;
  }
  /** False once the handle was freed by an unmap. */
  get live(): boolean {
    return !st(this).dead;
  }
  /** Per page of the handle: is a translation loaded? */
  loadedPages(): boolean[] {
    return Array.from(st(this).loaded, (b) => b !== UNLOADED);
  }

  toString(): string {
    const s = st(this);
    return `dhp#${this.id}{uoff 0x${s.uoff.toString(16)}, len 0x${s.len.toString(16)}, pid ${s.as.pid}}`;
  }
}

function st(dhp: unknown): HState {
  if (!(dhp instanceof DevmapHandle)) throw typeError('a devmap handle (devmap_cookie_t)', 'dhp', dhp);
  return stateOf(dhp);
}

/** The process whose page fault is being handled, across the driver's awaits. */
const faulting = new AsyncLocalStorage<AddressSpace>();

// --- contexts ------------------------------------------------------------------------------------------

const contexts = new Map<number, Map<Function, Ctx>>();

function ctxRef(dev: number, access: Function): Ctx {
  let byFn = contexts.get(dev);
  if (!byFn) contexts.set(dev, (byFn = new Map()));
  let ctx = byFn.get(access);
  if (!ctx) byFn.set(access, (ctx = { oncpu: false, waiters: [], timer: undefined, refs: 0, key: [dev, access] }));
  ctx.refs++;
  return ctx;
}

function ctxUnref(ctx: Ctx | null): void {
  if (ctx && --ctx.refs === 0) {
    const byFn = contexts.get(ctx.key[0]);
    byFn?.delete(ctx.key[1]);
    if (byFn?.size === 0) contexts.delete(ctx.key[0]);
  }
}

function ctxRelease(ctx: Ctx): void {
  ctx.oncpu = false;
  ctx.waiters.shift()?.();
}

// --- setup helpers (called from devmap(9E)) ------------------------------------------------------------

function copyCallbacks(ops: DevmapCallbackCtl | null | undefined): DevmapCallbackCtl | null {
  if (ops === null || ops === undefined) return null;
  if (typeof ops !== 'object') throw typeError('a devmap_callback_ctl object or null', 'callbackops', ops);
  const copy: DevmapCallbackCtl = { devmap_rev: ops.devmap_rev };
  for (const k of ['devmap_map', 'devmap_access', 'devmap_dup', 'devmap_unmap'] as const) {
    if (typeof ops[k] === 'function') (copy as unknown as Record<string, unknown>)[k] = (ops[k] as Function).bind(ops);
  }
  // The access function's identity keys the device context: keep the driver's own function for that.
  if (typeof ops.devmap_access === 'function') accessIdentity.set(copy, ops.devmap_access);
  return copy;
}
const accessIdentity = new WeakMap<DevmapCallbackCtl, Function>();

/** The checks both setup helpers share (SPEC A.3.4); returns false to fail the call with DDI_FAILURE. */
function setupCommon(s: HState, maxprot: number, flags: number): boolean {
  if (s.flags & DEVMAP_SETUP_DONE) return false;
  if (!Number.isInteger(maxprot) || !Number.isInteger(flags)) return false;
  if ((s.prot & s.origMaxprot & maxprot) !== s.prot) return false;
  if ((flags & DEVMAP_MAPPING_INVALID) && !(flags & DEVMAP_ALLOW_REMAP)) return false;
  return true;
}

function finishSetup(s: HState, callbackops: DevmapCallbackCtl | null | undefined, roff: number, len: number, maxprot: number, flags: number): number {
  s.len = Math.ceil(len / pageSize) * pageSize;
  s.roff = Math.floor(roff / pageSize) * pageSize;
  s.maxprot = maxprot & s.origMaxprot;
  s.flags |= (flags & (DEVMAP_SETUP_FLAGS | DEVMAP_WRITE_FAULTS)) | DEVMAP_SETUP_DONE;
  s.callbacks = copyCallbacks(callbackops);
  return 0;
}

/** devmap_devmem_setup(9F): export register set `rnumber` of `dip` from `roff` for `len` bytes. 0 or DDI_FAILURE. */
export function devmap_devmem_setup(
  dhp: DevmapHandle, dip: DevInfo, callbackops: DevmapCallbackCtl | null, rnumber: number, roff: number, len: number,
  maxprot: number, flags: number, _accattrp?: unknown,
): number {
  const s = st(dhp);
  if (!setupCommon(s, maxprot, flags)) return DDI_FAILURE;
  const reg = registerOf(dip, rnumber);
  if (!reg || !Number.isInteger(roff) || !Number.isInteger(len) || roff < 0 || len <= 0) return DDI_FAILURE;
  if (Math.floor(roff / pageSize) * pageSize + Math.ceil(len / pageSize) * pageSize > reg.size) return DDI_FAILURE;
  s.backing = flags & DEVMAP_MAPPING_INVALID ? null : { kind: 'devmem', reg };
  return finishSetup(s, callbackops, roff, len, maxprot, flags);
}

/** devmap_umem_setup(9F): export kernel memory `cookie` from `koff` for `len` bytes. 0 or DDI_FAILURE. */
export function devmap_umem_setup(
  dhp: DevmapHandle, _dip: DevInfo | null, callbackops: DevmapCallbackCtl | null, cookie: UmemCookie, koff: number,
  len: number, maxprot: number, flags: number, _accattrp?: unknown,
): number {
  const s = st(dhp);
  if (!setupCommon(s, maxprot, flags)) return DDI_FAILURE;
  if (!(cookie instanceof UmemCookie) || cookie.freed) return DDI_FAILURE;
  if (!Number.isInteger(koff) || !Number.isInteger(len) || koff < 0 || len <= 0 || koff + len > cookie.size) return DDI_FAILURE;
  s.backing = flags & DEVMAP_MAPPING_INVALID ? null : { kind: 'umem', cookie };
  return finishSetup(s, callbackops, koff, len, maxprot, flags);
}

// --- real pages ----------------------------------------------------------------------------------------

/** The descriptor and offset behind byte `rel` of a handle. */
function source(s: HState, rel: number): [fd: number, off: number] {
  const b = s.backing!;
  if (b.kind === 'devmem') return [registerFd(b.reg), s.roff + rel];
  const arena = s.kernel.arena;
  if (b.cookie.type === UMEM_TRASH) return [arena.fd, b.cookie.base - arena.base];
  return [arena.fd, b.cookie.base - arena.base + s.roff + rel];
}

/** Maps the handle's pages [fromPage, toPage) at its user address, with their current translations. */
function mapPages(seg: Segment, s: HState, fromPage: number, toPage: number): number {
  if (s.backing === null) return 0; // DEVMAP_MAPPING_INVALID: nothing behind the pages yet
  const trash = s.backing.kind === 'umem' && s.backing.cookie.type === UMEM_TRASH;
  const step = trash ? 1 : toPage - fromPage;
  for (let p = fromPage; p < toPage; p += step) {
    const [fd, off] = source(s, p * pageSize);
    const prot = translationProt(s, p);
    const piece = seg.as.mapPiece(s.uvaddr + p * pageSize, step * pageSize, prot, s.type, fd, off);
    if (typeof piece === 'number') return piece;
    if (step > 1) for (let q = p + 1; q < toPage; q++) protectPage(piece, s, q, p);
    insertPiece(seg, piece);
  }
  return 0;
}

/** The real protection of a handle's page: its own when loaded, less PROT_WRITE when loaded for reading. */
function translationProt(s: HState, page: number): number {
  const state = s.loaded[page];
  if (state === UNLOADED) return PROT_NONE;
  return state === LOADED_READ ? s.pprot[page] & 7 & ~PROT_WRITE : s.pprot[page] & 7;
}

/** True when page `p` of the handle needs no fault for an access in direction `rw`. */
function loadedFor(s: HState, p: number, rw: Rw): boolean {
  return s.loaded[p] === LOADED || (s.loaded[p] === LOADED_READ && rw !== 'write');
}

function protectPage(piece: Piece, s: HState, page: number, firstPage: number): void {
  const want = translationProt(s, page);
  const at = (page - firstPage) * pageSize;
  if (piece.mapping.protection(at) !== want) piece.mapping.protect(want, at, pageSize);
}

function insertPiece(seg: Segment, piece: Piece): void {
  let i = 0;
  while (i < seg.pieces.length && seg.pieces[i].addr < piece.addr) i++;
  seg.pieces.splice(i, 0, piece);
}

/** Gives the real protection of every page in [from, to) of the handle its translation state. */
function applyTranslations(s: HState, from: number, to: number): void {
  const seg = s.seg;
  if (!seg) return;
  for (const piece of seg.pieces) {
    const pStart = (piece.addr - s.uvaddr) / pageSize;
    const pEnd = pStart + piece.len / pageSize;
    for (let p = Math.max(from, pStart); p < Math.min(to, pEnd); p++) protectPage(piece, s, p, pStart);
  }
}

/** Drops the real pages of a whole handle (they become reserved again). */
function dropPages(s: HState): void {
  const seg = s.seg;
  if (!seg) return;
  const end = s.uvaddr + s.len;
  seg.pieces = seg.pieces.filter((p) => {
    if (p.addr >= s.uvaddr && p.addr + p.len <= end) {
      p.mapping.unmap();
      return false;
    }
    return true;
  });
}

// --- load / unload -------------------------------------------------------------------------------------

/** The pages [from, to) of the handle that [off, off + len) touches, or a fault code (SPEC A.4). */
function pagesOf(s: HState, off: unknown, len: unknown): [number, number] | number {
  if (!Number.isInteger(off) || !Number.isInteger(len) || (len as number) < 0) return FC_MAKE_ERR(EINVAL);
  const rel = (off as number) - s.uoff;
  const soff = Math.floor(rel / pageSize) * pageSize;
  if (soff < 0 || soff >= s.len) return FC_MAKE_ERR(EINVAL);
  const end = len === 0 ? s.len : Math.ceil((rel + (len as number)) / pageSize) * pageSize;
  if (end > s.len) return FC_MAKE_ERR(EINVAL);
  return [soff / pageSize, end / pageSize];
}

/** devmap_load(9F): validates translations for [off, off + len) — only for the faulting process. 0 or a fault code. */
export function devmap_load(dhp: DevmapHandle, off: number, len: number, _type: number, rw: number): number {
  const s = st(dhp);
  if (s.dead || faulting.getStore() !== s.as) return FC_MAKE_ERR(EINVAL);
  const pages = pagesOf(s, off, len);
  if (typeof pages === 'number') return pages;
  if (s.backing === null) return FC_NOMAP;
  // DEVMAP_WRITE_FAULTS: anything but a write loads for reading; a page loaded for writing stays so.
  const forRead = (s.flags & DEVMAP_WRITE_FAULTS) !== 0 && rw !== DEVMAP_WRITE;
  for (let p = pages[0]; p < pages[1]; p++) if (!forRead || s.loaded[p] !== LOADED) s.loaded[p] = forRead ? LOADED_READ : LOADED;
  applyTranslations(s, pages[0], pages[1]);
  const wp = (s.flags & DEVMAP_WRITE_FAULTS) === 0 ? undefined : forRead ? 'protect' : 'unprotect';
  s.as.mirror?.loaded?.(s.uvaddr - s.as.rawBase + pages[0] * pageSize, (pages[1] - pages[0]) * pageSize, wp);
  return 0;
}

/** devmap_unload(9F): invalidates translations for [off, off + len) of any process's handle; its views detach. */
export function devmap_unload(dhp: DevmapHandle, off: number, len: number): number {
  const s = st(dhp);
  if (s.dead) return FC_MAKE_ERR(EINVAL);
  const pages = pagesOf(s, off, len);
  if (typeof pages === 'number') return pages;
  s.loaded.fill(0, pages[0], pages[1]);
  applyTranslations(s, pages[0], pages[1]);
  // A client process's pages are in its own address space: its agent drops them before this returns.
  s.as.mirror?.unloaded?.(s.uvaddr - s.as.rawBase + pages[0] * pageSize, (pages[1] - pages[0]) * pageSize);
  return 0;
}

/** devmap_default_access(9F): just devmap_load. */
export function devmap_default_access(dhp: DevmapHandle, _pvtp: unknown, off: number, len: number, type: number, rw: number): number {
  return devmap_load(dhp, off, len, type, rw);
}

/** devmap_set_ctx_timeout(9F): context-switch hysteresis in clock ticks (HZ per second). */
export function devmap_set_ctx_timeout(dhp: DevmapHandle, ticks: number): void {
  st(dhp).timeout = integer(ticks, 'ticks', 0, 2 ** 31 - 1);
}

/**
 * devmap_do_ctxmgt(9F): runs the driver's devmap_contextmgt, serialized per device context when the handle has
 * a context timeout: the context stays "on the CPU" for that many ticks after a successful switch.
 */
export async function devmap_do_ctxmgt(
  dhp: DevmapHandle, pvtp: unknown, off: number, len: number, type: number, rw: number, ctxmgt: DevmapContextMgt | null,
): Promise<number> {
  const s = st(dhp);
  if (typeof ctxmgt !== 'function') return FC_HWERR;
  const ctx = s.ctx;
  const hysteresis = s.timeout > 0 && ctx !== null;
  if (hysteresis) {
    while (ctx.oncpu) {
      // A fault waiting for the timeout is work under way: it must keep the process alive until it is served.
      ctx.timer?.ref();
      await new Promise<void>((r) => ctx.waiters.push(r));
    }
    ctx.oncpu = true;
  }
  const rc = await kernelInternals(s.kernel).call(s.as.pid, { devmap_contextmgt: ctxmgt }, 'devmap_contextmgt', [dhp, pvtp, off, len, type, rw]);
  if (rc !== 0) {
    if (hysteresis) ctxRelease(ctx);
    return FC_HWERR;
  }
  if (hysteresis) {
    ctx.timer = setTimeout(() => {
      ctx.timer = undefined;
      ctxRelease(ctx);
    }, Math.min((s.timeout * 1000) / HZ, 2 ** 31 - 1)); // (setTimeout's own limit, about 24.8 days)
    // Nobody waits yet: a context left on the CPU does not keep the process alive by itself.
    if (ctx.waiters.length === 0) ctx.timer.unref();
  }
  return 0;
}

// --- remap ---------------------------------------------------------------------------------------------

function remapCommon(s: HState, maxprot: number, flags: number, allowed: number): boolean {
  if (!(s.flags & DEVMAP_SETUP_DONE) || !(s.flags & DEVMAP_ALLOW_REMAP) || s.dead) return false;
  if (!Number.isInteger(flags) || (flags & ~allowed) !== 0) return false;
  return Number.isInteger(maxprot) && (s.prot & s.origMaxprot & maxprot) === s.prot;
}

function rebind(s: HState, backing: Backing, roff: number, maxprot: number, flags: number): number {
  dropPages(s);
  s.backing = backing;
  s.roff = Math.floor(roff / pageSize) * pageSize;
  s.maxprot = maxprot & s.origMaxprot;
  s.flags = (s.flags & ~DEVMAP_MAPPING_INVALID) | (flags & DEVMAP_MAPPING_INVALID);
  s.loaded.fill(0); // the next touch faults again
  if (s.seg && mapPages(s.seg, s, 0, s.len / pageSize) !== 0) return DDI_FAILURE;
  return 0;
}

/** devmap_devmem_remap(9F): rebinds a DEVMAP_ALLOW_REMAP handle to other device memory (or to none). */
export function devmap_devmem_remap(
  dhp: DevmapHandle, dip: DevInfo, rnumber: number, roff: number, len: number, maxprot: number, flags: number, _accattrp?: unknown,
): number {
  const s = st(dhp);
  if (!remapCommon(s, maxprot, flags, DEVMAP_MAPPING_INVALID)) return DDI_FAILURE;
  if (!Number.isInteger(len) || Math.ceil(len / pageSize) * pageSize !== s.len) return DDI_FAILURE;
  if (flags & DEVMAP_MAPPING_INVALID) return rebind(s, null, 0, maxprot, flags);
  const reg = registerOf(dip, rnumber);
  if (!reg || !Number.isInteger(roff) || roff < 0 || Math.floor(roff / pageSize) * pageSize + s.len > reg.size) return DDI_FAILURE;
  return rebind(s, { kind: 'devmem', reg }, roff, maxprot, flags);
}

/** devmap_umem_remap(9F): rebinds a DEVMAP_ALLOW_REMAP handle to other kernel memory; flags must be 0. */
export function devmap_umem_remap(
  dhp: DevmapHandle, _dip: DevInfo | null, cookie: UmemCookie, koff: number, len: number, maxprot: number, flags: number, _accattrp?: unknown,
): number {
  const s = st(dhp);
  if (!remapCommon(s, maxprot, flags, 0)) return DDI_FAILURE;
  if (!(cookie instanceof UmemCookie) || cookie.freed || !Number.isInteger(koff) || koff < 0) return DDI_FAILURE;
  if (!Number.isInteger(len) || Math.ceil(len / pageSize) * pageSize !== s.len || koff + s.len > cookie.size) return DDI_FAILURE;
  return rebind(s, { kind: 'umem', cookie }, koff, maxprot, flags);
}

// --- the segment driver --------------------------------------------------------------------------------

interface DevmapSegment {
  handles: DevmapHandle[];
}
const chainOf = (seg: Segment) => (seg.data as DevmapSegment).handles;

const RW_CODE: Record<Rw, number> = { read: DEVMAP_READ, write: DEVMAP_WRITE, exec: DEVMAP_EXEC, other: DEVMAP_OTHER };

function freeHandle(h: DevmapHandle): void {
  const s = st(h);
  s.dead = true;
  s.seg = null;
  ctxUnref(s.ctx);
}

/** A byte copy of a handle (a new id; private data aliased), for a middle cut or a fork. */
function copyHandle(s: HState, overrides: Partial<HState>): DevmapHandle {
  const copy: HState = { ...s, loaded: s.loaded.slice(), pprot: s.pprot.slice(), ...overrides };
  if (copy.ctx) copy.ctx.refs++;
  return newHandle(copy);
}

interface Cut {
  h: DevmapHandle;
  off: number;
  len: number;
  new1: DevmapHandle | null;
  new2: DevmapHandle | null;
  apply: () => void;
}

const ops: SegmentOps = {
  kind: 'devmap',

  async unmap(seg, a, n) {
    const e = a + n;
    const lower: DevmapHandle[] = [];
    const upper: DevmapHandle[] = [];
    const cuts: Cut[] = [];
    for (const h of chainOf(seg)) {
      const s = st(h);
      const start = s.uvaddr;
      const end = start + s.len;
      if (end <= a) lower.push(h);
      else if (start >= e) upper.push(h);
      else if (start >= a && end <= e) {
        cuts.push({ h, off: s.uoff, len: s.len, new1: null, new2: null, apply: () => freeHandle(h) });
      } else if (start < a && end > e) {
        const keep = (a - start) / pageSize;
        const skip = (e - start) / pageSize;
        // new_dhp2 is a byte copy of H: the driver sees the pre-cut offset and length in it (SPEC A.6); both
        // handles are reduced after the callback returns.
        const h2 = copyHandle(s, {});
        lower.push(h);
        upper.push(h2);
        cuts.push({
          h, off: s.uoff + (a - start), len: n, new1: h, new2: h2,
          apply: () => {
            const s2 = st(h2);
            s2.uoff = s.uoff + (e - start);
            s2.len = end - e;
            s2.uvaddr = e;
            s2.roff = s.roff + (e - start);
            s2.loaded = s.loaded.slice(skip);
            s2.pprot = s.pprot.slice(skip);
            s.len = a - start;
            s.loaded = s.loaded.slice(0, keep);
            s.pprot = s.pprot.slice(0, keep);
          },
        });
      } else if (start < a) {
        const keep = (a - start) / pageSize;
        lower.push(h);
        cuts.push({
          h, off: s.uoff + (a - start), len: end - a, new1: h, new2: null,
          apply: () => {
            s.len = a - start;
            s.loaded = s.loaded.slice(0, keep);
            s.pprot = s.pprot.slice(0, keep);
          },
        });
      } else {
        const cut = e - start;
        upper.push(h);
        cuts.push({
          h, off: s.uoff, len: cut, new1: null, new2: h,
          apply: () => {
            s.uoff += cut;
            s.len -= cut;
            s.uvaddr += cut;
            s.roff += cut;
            s.loaded = s.loaded.slice(cut / pageSize);
            s.pprot = s.pprot.slice(cut / pageSize);
          },
        });
      }
    }
    // The pages go first (views detach), then the map count, which may run close(9E) (SPEC A.6 prologue).
    const kernel = kernelInternals(st(chainOf(seg)[0]).kernel);
    const dev = seg.dev!;
    const upperSeg = seg.as.trim(seg, a, n);
    if (kernel.countMapped(dev, -n / pageSize)) await kernel.closeDevice(dev, seg.as.pid);
    for (const c of cuts) {
      const s = st(c.h);
      const unmap = s.callbacks?.devmap_unmap;
      if (unmap) {
        const out1 = c.new1 ? { value: s.pvtp } : null;
        const out2 = c.new2 ? { value: st(c.new2).pvtp } : null;
        await kernel.call(seg.as.pid, { devmap_unmap: unmap }, 'devmap_unmap', [c.h, s.pvtp, c.off, c.len, c.new1, out1, c.new2, out2]);
        if (c.new1 && out1) st(c.new1).pvtp = out1.value;
        if (c.new2 && out2) st(c.new2).pvtp = out2.value;
      }
      c.apply();
    }
    if (upperSeg) {
      seg.data = { handles: lower } satisfies DevmapSegment;
      upperSeg.data = { handles: upper } satisfies DevmapSegment;
      for (const h of upper) st(h).seg = upperSeg;
    } else if (seg.len > 0) {
      seg.data = { handles: lower.length > 0 ? lower : upper } satisfies DevmapSegment;
    }
  },

  async dup(seg, child) {
    const handles: DevmapHandle[] = [];
    const at = child.rawBase + (seg.base - seg.as.rawBase);
    const copy = new Segment(child, at, seg.len, seg.prot, seg.maxprot, seg.type, seg.off, seg.dev, ops, [], { handles } satisfies DevmapSegment);
    child.insert(copy);
    const kernel = kernelInternals(st(chainOf(seg)[0]).kernel);
    kernel.countMapped(seg.dev!, seg.len / pageSize);
    // A refusal frees this partial copy before the fork fails, as as_dup() calls seg_free() on the new segment
    // before as_free() unmaps the child's earlier segments (usr/src/uts/common/vm/vm_as.c); seg_free() runs
    // segdev_free(), which gives every handle already copied its whole-handle devmap_unmap (seg_dev.c). The
    // refused copy gets none (SPEC A.5), and no handle after it was made.
    const freeCopy = async () => {
      child.remove(copy);
      for (const p of copy.pieces) p.mapping.unmap();
      copy.pieces = [];
      copy.len = 0;
      kernel.countMapped(seg.dev!, -seg.len / pageSize);
      for (const nh of handles) {
        const ns = st(nh);
        const unmap = ns.callbacks?.devmap_unmap;
        if (unmap) await kernel.call(child.pid, { devmap_unmap: unmap }, 'devmap_unmap', [nh, ns.pvtp, ns.uoff, ns.len, null, null, null, null]);
        freeHandle(nh);
      }
    };
    for (const h of chainOf(seg)) {
      const s = st(h);
      const fresh = s.callbacks?.devmap_access ? 0 : 1;
      const nh = copyHandle(s, { as: child, seg: copy, uvaddr: child.rawBase + (s.uvaddr - seg.as.rawBase), loaded: new Uint8Array(s.loaded.length).fill(fresh) });
      const ns = st(nh);
      handles.push(nh);
      const rc = mapPages(copy, ns, 0, ns.len / pageSize);
      if (rc === 0 && s.type === MAP_PRIVATE) copyPrivatePages(seg, s, copy, ns);
      if (rc !== 0) {
        ns.callbacks = ns.callbacks && { ...ns.callbacks, devmap_unmap: undefined }; // the driver never heard of it
        await freeCopy();
        throw syscallError(ENOMEM, 'fork', seg.as.pid);
      }
      const dupFn = s.callbacks?.devmap_dup;
      if (dupFn) {
        const out = { value: s.pvtp };
        const err = await kernel.call(seg.as.pid, { devmap_dup: dupFn }, 'devmap_dup', [h, s.pvtp, nh, out]);
        if (err !== 0) {
          // SPEC A.5: the driver never sees an unmap for a handle it refused.
          ns.callbacks = { ...ns.callbacks!, devmap_unmap: undefined };
          await freeCopy();
          throw syscallError(err, 'fork', seg.as.pid);
        }
        ns.pvtp = out.value;
      }
    }
  },

  setprot(seg, a, n, prot) {
    const want = prot | PROT_USER;
    const touched = chainOf(seg).filter((h) => st(h).uvaddr < a + n && st(h).uvaddr + st(h).len > a);
    for (const h of touched) if ((st(h).maxprot & want) !== want) return EACCES;
    for (const h of touched) {
      const s = st(h);
      const from = Math.max(0, (a - s.uvaddr) / pageSize);
      const to = Math.min(s.len, a + n - s.uvaddr) / pageSize;
      s.pprot.fill(want, from, to);
      applyTranslations(s, from, to);
    }
    return 0;
  },

  async fault(seg, addr, len, rw) {
    const end = addr + len;
    for (const h of chainOf(seg)) {
      const s = st(h);
      const start = Math.max(addr, s.uvaddr);
      const stop = Math.min(end, s.uvaddr + s.len);
      if (start >= stop) continue;
      const from = Math.floor((start - s.uvaddr) / pageSize);
      const to = Math.ceil((stop - s.uvaddr) / pageSize);
      const need = rw === 'write' ? PROT_WRITE : PROT_READ;
      for (let p = from; p < to; p++) if ((s.pprot[p] & need) === 0) return EFAULT; // FC_PROT: the driver is not asked
      if (s.backing === null) return EFAULT; // DEVMAP_MAPPING_INVALID: FC_NOMAP, a SIGSEGV
      let first = from;
      while (first < to && loadedFor(s, first, rw)) first++;
      if (first === to) continue;
      const access = s.callbacks?.devmap_access;
      if (access) {
        const off = s.uoff + first * pageSize;
        const rc = await faulting.run(seg.as, () =>
          kernelInternals(s.kernel).call(seg.as.pid, { devmap_access: access }, 'devmap_access', [h, s.pvtp, off, (to - first) * pageSize, DEVMAP_ACCESS, RW_CODE[rw]]),
        );
        if (rc !== 0) return rc;
        for (let p = first; p < to; p++) if (!loadedFor(s, p, rw)) return EIO; // the driver did not load the pages
      } else {
        s.loaded.fill(LOADED, first, to);
        applyTranslations(s, first, to);
      }
    }
    return 0;
  },

  label(seg, addr) {
    const h = chainOf(seg).find((x) => st(x).uvaddr <= addr && addr < st(x).uvaddr + st(x).len);
    return h ? `dhp#${h.id}` : '-';
  },

  clientProt(seg, addr) {
    const h = chainOf(seg).find((x) => st(x).uvaddr <= addr && addr < st(x).uvaddr + st(x).len);
    return h ? st(h).pprot[Math.floor((addr - st(h).uvaddr) / pageSize)] & 7 : PROT_NONE;
  },

  needsFaults(seg) {
    return chainOf(seg).some((h) => typeof st(h).callbacks?.devmap_access === 'function');
  },

  needsWriteFaults(seg) {
    return chainOf(seg).some((h) => typeof st(h).callbacks?.devmap_access === 'function' && (st(h).flags & DEVMAP_WRITE_FAULTS) !== 0);
  },
};

/** A forked MAP_PRIVATE mapping starts as a copy of the parent's loaded pages (what copy-on-write shows). */
function copyPrivatePages(seg: Segment, s: HState, childSeg: Segment, ns: HState): void {
  for (let p = 0; p < s.loaded.length; p++) {
    if (!s.loaded[p] || !(s.pprot[p] & PROT_READ)) continue;
    const addr = s.uvaddr + p * pageSize;
    const src = seg.pieces.find((q) => q.addr <= addr && addr < q.addr + q.len);
    const dst = childSeg.pieces.find((q) => q.addr <= ns.uvaddr + p * pageSize && ns.uvaddr + p * pageSize < q.addr + q.len);
    if (!src || !dst) continue;
    const dOff = ns.uvaddr + p * pageSize - dst.addr;
    const was = dst.mapping.protection(dOff);
    dst.mapping.protect(PROT_READ | PROT_WRITE, dOff, pageSize);
    new Uint8Array(internalView(dst.mapping, dOff, pageSize)).set(src.mapping.read(addr - src.addr, pageSize));
    dst.mapping.protect(was, dOff, pageSize);
  }
}

async function devmapMmap(req: MapRequest): Promise<Segment | number> {
  const { proc, dev, addr, len, off, maxprot, type, flags } = req;
  const kernel = kernelInternals(req.kernel);
  const driver = req.driver as DevmapDriver;
  const prot = req.prot | PROT_USER; // SPEC A.3.1: mmap(2) adds PROT_USER
  const handles: DevmapHandle[] = [];
  const fail = (errno: number) => {
    for (const h of handles) freeHandle(h);
    return errno;
  };
  let mapOff = off;
  let resid = len;
  while (resid > 0) {
    const h = newHandle({
      kernel: req.kernel, as: proc.as, dev, seg: null, uoff: mapOff, len: 0, uvaddr: 0, roff: 0, backing: null, pvtp: undefined,
      prot, maxprot, origMaxprot: maxprot, flags: 0, timeout: 0, callbacks: null, ctx: null, type,
      loaded: new Uint8Array(0), pprot: new Uint8Array(0), dead: false,
    });
    handles.push(h);
    const maplen: Out<number> = { value: 0 };
    const rc = await kernel.call(proc.pid, driver, 'devmap', [dev, h, mapOff, resid, maplen, DDI_MODEL_LP64]);
    const s = st(h);
    if (rc !== 0 || !(s.flags & DEVMAP_SETUP_DONE)) return fail(ENXIO);
    const ml = maplen.value;
    if (!Number.isInteger(ml) || ml <= 0) return fail(ENXIO); // SPEC A.3.3: a zero maplen would loop for ever
    if (ml % pageSize !== 0 || ml !== s.len || ml > resid) return fail(EINVAL);
    const access = s.callbacks ? accessIdentity.get(s.callbacks) : undefined;
    if (!access && type === MAP_PRIVATE) return fail(EINVAL);
    if (access) {
      s.ctx = ctxRef(dev, access);
      if (st(handles[0]).ctx !== s.ctx) return fail(ENOTSUP);
    }
    mapOff += ml;
    resid -= ml;
  }
  // devmap_device (SPEC A.3.3): only now, with every devmap(9E) call accepted, does MAP_FIXED remove what the
  // range held; a refusal above returned with the old mapping intact.
  await req.replace();
  const seg = new Segment(proc.as, addr, len, req.prot, maxprot, type, off, dev, ops, [], { handles } satisfies DevmapSegment);
  let cursor = addr;
  for (const h of handles) {
    const s = st(h);
    s.seg = seg;
    s.uvaddr = cursor;
    const pages = s.len / pageSize;
    s.loaded = new Uint8Array(pages).fill(s.callbacks?.devmap_access ? 0 : 1);
    s.pprot = new Uint8Array(pages).fill(prot);
    if (mapPages(seg, s, 0, pages) !== 0) {
      for (const p of seg.pieces) p.mapping.unmap();
      return fail(ENOMEM);
    }
    cursor += s.len;
  }
  proc.as.insert(seg);
  kernel.countMapped(dev, len / pageSize);
  for (let i = 0; i < handles.length; i++) {
    const s = st(handles[i]);
    const mapFn = s.callbacks?.devmap_map;
    if (!mapFn) continue;
    const pvtp: Out<unknown> = { value: undefined };
    const rc = await kernel.call(proc.pid, { devmap_map: mapFn }, 'devmap_map', [handles[i], dev, flags, s.uoff, s.len, pvtp]);
    if (rc !== 0) {
      for (const h of handles.slice(0, i)) {
        const e = st(h);
        const unmap = e.callbacks?.devmap_unmap;
        if (unmap) await kernel.call(proc.pid, { devmap_unmap: unmap }, 'devmap_unmap', [h, e.pvtp, e.uoff, e.len, null, null, null, null]);
      }
      proc.as.trim(seg, seg.base, seg.len);
      kernel.countMapped(dev, -len / pageSize);
      return fail(ENXIO);
    }
    s.pvtp = pvtp.value;
  }
  return seg;
}

/** The Solaris devmap framework, the mapping interface of drivers with a `devmap` entry point (hand it to the Kernel). */
export const devmapInterface: DeviceMapper = {
  name: 'devmap framework',
  entryPoints: ['devmap'],
  handles: (driver) => typeof (driver as DevmapDriver).devmap === 'function',
  mmap: devmapMmap,
};

/** For tests and pmap-like tools: the handle chain of the devmap mapping at `addr` in `as` (a process's `as`; public, exported from the package root). */
export function handlesAt(as: AddressSpace, addr: bigint): DevmapHandle[] {
  if (!(as instanceof AddressSpace)) throw typeError('an AddressSpace (proc.as)', 'as', as);
  if (typeof addr !== 'bigint') throw typeError('a bigint address', 'addr', addr);
  const seg = addr >= 0n && addr <= BigInt(Number.MAX_SAFE_INTEGER) ? as.segmentAt(Number(addr)) : undefined;
  if (!seg || seg.ops !== ops) throw new DevmapError('ERR_DEVMAP_NOT_DEVMAP', 'No devmap mapping at that address');
  return [...chainOf(seg)];
}

