/*
 * Which 32-bit words the sync layer accepts, and how a (typed array, index) pair becomes a word.
 *
 * A futex shared between processes must live in memory that is mapped MAP_SHARED, so the array has to be an
 * Int32Array over one of devmap's views (Mapping#buffer or Mapping#view) of a shared Mapping. Anything else
 * is refused before the addon is called:
 *  - not an Int32Array, or an Int32Array over an ordinary ArrayBuffer / SharedArrayBuffer: TypeError
 *    (ERR_INVALID_ARG_TYPE);
 *  - a view of a copy-on-write mapping ({ shared: false }): DevmapError ERR_DEVMAP_NOT_SHARED;
 *  - a view whose pages were unmapped (its Mapping is no longer mapped; the view reads trash pages) or that
 *    was detached (devmap's own views): DevmapError ERR_DEVMAP_UNMAPPED;
 *  - an index that is not an integer inside the array: TypeError / RangeError (ERR_OUT_OF_RANGE);
 *  - a word that is not aligned (possible with Mapping#view at an odd offset): RangeError ERR_OUT_OF_RANGE.
 *
 * The addon takes words as addresses (as mmap and munmap do), so this module is what keeps them valid. What
 * we learn about an array the first time we see it (the address of its element 0, its Mapping, its tag) holds
 * while that Mapping is mapped, so each call costs one WeakMap lookup and a `mapped` check: element i of the
 * array at `base` is at `base + 4 * i`, and the caller's reference to the array keeps its Mapping (and so
 * the pages) alive for the duration of the call. A partial unmap hands a view wholly inside a surviving
 * piece to that piece: the array is described again, keeping its tag (a pending waitAsync still matches).
 *
 * Every fact about the array comes from its internal slots, through the getters lib/intrinsics.ts captured
 * at load — never from its properties. An own `length` property, a subclass's `length` getter, a spoofed
 * `buffer`, a Proxy or an object that merely inherits from Int32Array.prototype cannot make an address out
 * of range: the brand check refuses all but real Int32Arrays, and [[ArrayLength]] reads 0 once detached
 * whatever `length` says. Callers read their options before they call address(), so nothing the caller
 * controls runs between the check and the system call.
 */
import { DevmapError, integer, rangeError, typeError } from '../errors';
import { arrayBufferByteLength, isArrayBuffer, typedArrayBuffer, typedArrayKind, typedArrayLength } from '../intrinsics';
import { ownerOf, type Mapping } from '../memory/mapping';
import { native } from '../native';

export interface ArrayInfo {
  /** Address of element 0. */
  base: number;
  /** Names the object behind the array, so equal addresses of two mappings never share an async wait. */
  tag: number;
  /** The Mapping the array's pages belonged to when it was described. */
  mapping: Mapping;
}

const arrays = new WeakMap<Int32Array, ArrayInfo>();
const tags = new WeakMap<Mapping, number>();
let nextTag = 1;

function unmapped(): DevmapError {
  return new DevmapError('ERR_DEVMAP_UNMAPPED', 'The array is detached: the pages under it have been unmapped');
}

function notDevmap(array: unknown): TypeError {
  return typeError('an Int32Array over a devmap mapping (Mapping#buffer or Mapping#view)', 'array', array);
}

function describeArray(array: unknown, before?: ArrayInfo): ArrayInfo {
  if (typedArrayKind(array) !== 'Int32Array') throw typeError('an Int32Array over a devmap mapping', 'array', array);
  const buffer = typedArrayBuffer(array as Int32Array);
  if (!isArrayBuffer(buffer)) throw notDevmap(array); // a SharedArrayBuffer: memory of this process only
  if (arrayBufferByteLength(buffer) === 0) throw unmapped();
  const mapping = ownerOf(buffer);
  if (mapping === undefined) {
    throw notDevmap(array);
  }
  if (!mapping.mapped) throw unmapped();
  if (!mapping.shared) {
    throw new DevmapError(
      'ERR_DEVMAP_NOT_SHARED',
      'wait, notify and Mutex need a word in a shared mapping (MAP_SHARED); this view is of a copy-on-write mapping ({ shared: false })',
    );
  }
  let tag = tags.get(mapping);
  if (tag === undefined) tags.set(mapping, (tag = before?.tag ?? nextTag++));
  const info = { base: native().word_address(array as Int32Array, 0), tag, mapping };
  arrays.set(array as Int32Array, info);
  return info;
}

/**
 * Validates `array[index]` as a shared, attached, `align`-aligned word (align 4 for futex words, 8 for a
 * Mutex) with `words` 32-bit words available from `index`, and returns its address.
 */
export function address(array: Int32Array, index: unknown, align = 4, words = 1): number {
  let info = arrays.get(array);
  // (A view of a simulated process's memory changes owner while its Mapping stays mapped when its pages are
  // taken away from it, alias.ts: asked again each time.)
  if (info === undefined || !info.mapping.mapped || (info.mapping.aliasedViews && mappingOf(array) !== info.mapping)) info = describeArray(array, info);
  const length = typedArrayLength(array);
  if (length === 0 && arrayBufferByteLength(typedArrayBuffer(array) as ArrayBuffer) === 0) throw unmapped();
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index + words > length) {
    integer(index, 'index', 0, length - words);
  }
  const addr = info.base + 4 * (index as number);
  if (addr % align !== 0) throw rangeError(`an index whose word is ${align}-byte aligned in memory`, 'index', index);
  return addr;
}

/** [[ArrayLength]] of an array that address() has accepted: 0 once its pages are unmapped. */
export function wordsOf(array: Int32Array): number {
  return typedArrayLength(array);
}

/** The Mapping under an array that address() has accepted (its [[ViewedArrayBuffer]]'s owner now). */
export function mappingOf(array: Int32Array): Mapping | undefined {
  return ownerOf(typedArrayBuffer(array) as ArrayBuffer);
}

/** The tag of an array that address() has accepted. */
export function tagOf(array: Int32Array): number {
  return arrays.get(array)!.tag;
}

/** A signed 32-bit integer (what an Int32Array element holds). */
export function int32(value: unknown, name: string): number {
  return integer(value, name, -0x80000000, 0x7fffffff);
}

/** A timeout in milliseconds: undefined or Infinity mean none (-1 for the addon); otherwise a number >= 0. */
export function timeoutMs(value: unknown, name: string): number {
  if (value === undefined || value === Infinity) return -1;
  if (typeof value !== 'number') throw typeError('a number of milliseconds', name, value);
  if (!(value >= 0)) throw rangeError('a number of milliseconds >= 0 (or Infinity)', name, value);
  return value;
}
