// The comparison both property tests make: an engine call against the reference's, step by step.
import { expect } from 'vitest';
import { ResourceMapPanic } from '../../lib/rmap';
import { RefPanic } from './reference';

/** Runs `fn` on both sides; both must return the same value or panic with the same code and message. */
export function same<T>(engine: () => T, reference: () => T): { ok: true; value: T } | { ok: false } {
  let want: { ok: true; value: T } | { ok: false; code: string; message: string };
  try {
    want = { ok: true, value: reference() };
  } catch (err) {
    if (!(err instanceof RefPanic)) throw err;
    want = { ok: false, code: err.code, message: err.message };
  }
  try {
    const value = engine();
    expect(want).toEqual({ ok: true, value });
    return { ok: true, value };
  } catch (err) {
    if (!(err instanceof ResourceMapPanic)) throw err;
    expect({ ok: false, code: err.code, message: err.message }).toEqual(want);
    return { ok: false };
  }
}
