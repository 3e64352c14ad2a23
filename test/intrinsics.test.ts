// lib/intrinsics.ts reads the engine's slots, never the properties a caller can override.
import { describe, expect, it } from 'vitest';
import {
  arrayBufferByteLength, dataViewSlots, isArrayBuffer, typedArrayBuffer, typedArrayByteLength, typedArrayByteOffset,
  typedArrayKind, typedArrayLength, viewSlots,
} from '../lib/intrinsics';
import { trackLeaks } from './helpers/leaks';

trackLeaks();

describe('intrinsics', () => {
  it('reads the real slots of a typed array whatever its own properties say', () => {
    const ab = new ArrayBuffer(64);
    const a = new Int32Array(ab, 8, 4);
    Object.defineProperty(a, 'length', { value: 1e9 });
    Object.defineProperty(a, 'byteOffset', { value: -8 });
    Object.defineProperty(a, 'byteLength', { get: () => 1e9 });
    Object.defineProperty(a, 'buffer', { value: new ArrayBuffer(1e6) });
    expect(a.length).toBe(1e9);
    expect(typedArrayLength(a)).toBe(4);
    expect(typedArrayByteOffset(a)).toBe(8);
    expect(typedArrayByteLength(a)).toBe(16);
    expect(typedArrayBuffer(a)).toBe(ab);
    expect(typedArrayKind(a)).toBe('Int32Array');
  });

  it('sees through subclasses with their own getters', () => {
    class Liar extends Int32Array {
      override get length(): number {
        return 1 << 30;
      }
    }
    const l = new Liar(2);
    expect(l.length).toBe(1 << 30);
    expect(typedArrayLength(l)).toBe(2);
    expect(typedArrayKind(l)).toBe('Int32Array');
  });

  it('brand-checks: look-alikes, proxies and DataViews are not typed arrays', () => {
    const fake = Object.create(Int32Array.prototype);
    expect(fake instanceof Int32Array).toBe(true);
    expect(typedArrayKind(fake)).toBeUndefined();
    expect(typedArrayKind(new Proxy(new Int32Array(4), {}))).toBeUndefined();
    expect(typedArrayKind(new DataView(new ArrayBuffer(4)))).toBeUndefined();
    expect(typedArrayKind(null)).toBeUndefined();
    expect(typedArrayKind(7)).toBeUndefined();
    expect(() => typedArrayLength(fake)).toThrow(TypeError);
  });

  it('keeps working after the prototypes are tampered with', () => {
    const proto = Object.getPrototypeOf(Uint8Array.prototype);
    const saved = Object.getOwnPropertyDescriptor(proto, 'length')!;
    const savedCall = Function.prototype.call;
    try {
      Object.defineProperty(proto, 'length', { get: () => 99, configurable: true });
      Function.prototype.call = () => 42;
      const a = new Uint8Array(3);
      expect(a.length).toBe(99);
      expect(typedArrayLength(a)).toBe(3);
    } finally {
      Object.defineProperty(proto, 'length', saved);
      Function.prototype.call = savedCall;
    }
  });

  it('tells ArrayBuffers from SharedArrayBuffers and look-alikes', () => {
    const ab = new ArrayBuffer(12);
    Object.defineProperty(ab, 'byteLength', { value: 1e9 });
    expect(isArrayBuffer(ab)).toBe(true);
    expect(arrayBufferByteLength(ab)).toBe(12);
    expect(isArrayBuffer(new SharedArrayBuffer(4))).toBe(false);
    expect(isArrayBuffer(Object.create(ArrayBuffer.prototype))).toBe(false);
    expect(isArrayBuffer(undefined)).toBe(false);
    const moved = ab.slice(0);
    structuredClone(moved, { transfer: [moved] });
    expect(arrayBufferByteLength(moved)).toBe(0);
  });

  it('reads DataView slots, and views of either kind', () => {
    const ab = new ArrayBuffer(32);
    const dv = new DataView(ab, 4, 8);
    Object.defineProperty(dv, 'byteLength', { value: 1e9 });
    expect(dataViewSlots(dv)).toEqual({ buffer: ab, byteOffset: 4, byteLength: 8 });
    expect(dataViewSlots(new Uint8Array(4))).toBeUndefined();
    expect(viewSlots(new Uint16Array(ab, 2, 3))).toEqual({ buffer: ab, byteOffset: 2, byteLength: 6 });
    expect(viewSlots(dv)).toEqual({ buffer: ab, byteOffset: 4, byteLength: 8 });
    expect(viewSlots({ buffer: ab, byteOffset: 0, byteLength: 32 })).toBeUndefined();
  });
});
