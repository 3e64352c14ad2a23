/*
 * The real internal slots of typed arrays and ArrayBuffers, read through getters captured when devmap loads.
 *
 * A value JavaScript hands devmap is hostile until read: `array.length` may be an own property, a subclass
 * getter or a Proxy trap; `array.buffer` may be spoofed; `x instanceof Int32Array` is true for
 * Object.create(Int32Array.prototype) and for anything once someone defines Int32Array[Symbol.hasInstance].
 * None of those can fake the engine's own slots ([[ArrayLength]], [[ByteOffset]], [[ViewedArrayBuffer]],
 * [[ArrayBufferByteLength]]), and the built-in accessors on %TypedArray%.prototype and ArrayBuffer.prototype
 * read exactly those slots — or throw a TypeError for anything that does not have them. So devmap captures
 * the accessors here, once, before any user code can replace them (the module is evaluated when devmap is
 * required), and every address devmap computes from an array comes from these functions, each read once.
 *
 * typedArrayKind() is the brand check: %TypedArray%.prototype[Symbol.toStringTag] returns the element type's
 * name for a real typed array and undefined for everything else (a DataView, a plain object with the right
 * prototype, a Proxy around a typed array). It never throws.
 *
 * Calls go through Reflect.apply captured here too, so replacing Function.prototype.call later changes nothing.
 */

type Getter = (this: unknown) => unknown;

const apply = Reflect.apply;
const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
const getPrototypeOf = Object.getPrototypeOf;

function getter(proto: object, key: PropertyKey): Getter {
  const get = getOwnPropertyDescriptor(proto, key)?.get;
  if (typeof get !== 'function') throw new Error(`devmap: the built-in accessor ${String(key)} is missing`);
  return get as Getter;
}

/** %TypedArray%.prototype: the prototype every typed array constructor's prototype inherits from. */
const TypedArrayPrototype: object = getPrototypeOf(Uint8Array.prototype);

const taLength = getter(TypedArrayPrototype, 'length');
const taByteLength = getter(TypedArrayPrototype, 'byteLength');
const taByteOffset = getter(TypedArrayPrototype, 'byteOffset');
const taBuffer = getter(TypedArrayPrototype, 'buffer');
const taTag = getter(TypedArrayPrototype, Symbol.toStringTag);
const abByteLength = getter(ArrayBuffer.prototype, 'byteLength');
const sabByteLength = getter(SharedArrayBuffer.prototype, 'byteLength');
const dvByteLength = getter(DataView.prototype, 'byteLength');
const dvByteOffset = getter(DataView.prototype, 'byteOffset');
const dvBuffer = getter(DataView.prototype, 'buffer');

export type TypedArrayKind =
  | 'Int8Array' | 'Uint8Array' | 'Uint8ClampedArray' | 'Int16Array' | 'Uint16Array' | 'Int32Array' | 'Uint32Array'
  | 'Float32Array' | 'Float64Array' | 'BigInt64Array' | 'BigUint64Array';

/** The element type of a real typed array ('Int32Array', …), or undefined for anything else. Never throws. */
export function typedArrayKind(value: unknown): TypedArrayKind | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  return apply(taTag, value, []) as TypedArrayKind | undefined;
}

/** [[ArrayLength]]: elements (0 once the buffer is detached). The array must be a real typed array. */
export function typedArrayLength(array: ArrayBufferView): number {
  return apply(taLength, array, []) as number;
}

/** [[ByteLength]] of a real typed array (0 once detached). */
export function typedArrayByteLength(array: ArrayBufferView): number {
  return apply(taByteLength, array, []) as number;
}

/** [[ByteOffset]] of a real typed array (0 once detached). */
export function typedArrayByteOffset(array: ArrayBufferView): number {
  return apply(taByteOffset, array, []) as number;
}

/** [[ViewedArrayBuffer]] of a real typed array. */
export function typedArrayBuffer(array: ArrayBufferView): ArrayBuffer | SharedArrayBuffer {
  return apply(taBuffer, array, []) as ArrayBuffer | SharedArrayBuffer;
}

/** True for a real ArrayBuffer (not a SharedArrayBuffer, not a look-alike). Never throws. */
export function isArrayBuffer(value: unknown): value is ArrayBuffer {
  if (value === null || typeof value !== 'object') return false;
  try {
    apply(abByteLength, value, []);
    return true;
  } catch {
    return false;
  }
}

/** [[ArrayBufferByteLength]] of a real ArrayBuffer (0 once detached); TypeError for anything else. */
export function arrayBufferByteLength(buffer: ArrayBuffer): number {
  return apply(abByteLength, buffer, []) as number;
}

/** [[ArrayBufferByteLength]] of a real SharedArrayBuffer; TypeError for anything else. */
export function sharedArrayBufferByteLength(buffer: SharedArrayBuffer): number {
  return apply(sabByteLength, buffer, []) as number;
}

/** The DataView's [[ViewedArrayBuffer]], [[ByteOffset]] and [[ByteLength]], or undefined for a non-DataView. */
export function dataViewSlots(value: unknown): { buffer: ArrayBuffer | SharedArrayBuffer; byteOffset: number; byteLength: number } | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  try {
    const buffer = apply(dvBuffer, value, []) as ArrayBuffer | SharedArrayBuffer;
    return { buffer, byteOffset: apply(dvByteOffset, value, []) as number, byteLength: apply(dvByteLength, value, []) as number };
  } catch {
    return undefined;
  }
}

/**
 * The bytes a view (typed array or DataView) covers, from its internal slots: its buffer, byte offset and byte
 * length. undefined for anything that is not a real view.
 */
export function viewSlots(value: unknown): { buffer: ArrayBuffer | SharedArrayBuffer; byteOffset: number; byteLength: number } | undefined {
  if (typedArrayKind(value) !== undefined) {
    const array = value as ArrayBufferView;
    return { buffer: typedArrayBuffer(array), byteOffset: typedArrayByteOffset(array), byteLength: typedArrayByteLength(array) };
  }
  return dataViewSlots(value);
}
