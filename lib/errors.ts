/*
 * Errors and argument checks shared by every layer.
 *
 * Three kinds of failure leave devmap, and callers branch on them by type and `code`, never by message:
 *  - a bad argument: TypeError (wrong type) or RangeError (right type, wrong value), with a message of the
 *    form "Expected <what> for <name> but received <value> of type <type>" and `code` ERR_INVALID_ARG_TYPE /
 *    ERR_OUT_OF_RANGE, as Node's own checks do;
 *  - an OS failure: an Error shaped like Node's system errors (`code` 'EINVAL', `errno` negative, `syscall`,
 *    `path` when there is one);
 *  - a devmap condition (closed object, unsupported platform, kernel panic, ...): a DevmapError with a stable
 *    `code` starting ERR_DEVMAP_.
 */
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/**
 * The one errno table: the platform's numbers by name, positive as in C (`errno.EINVAL` is 22 on Linux). The
 * addon returns them negated (-errno); a system error's `errno` property is negative, as Node's own are.
 */
export const errno: Readonly<Record<string, number>> = constants.errno;
const errnoNames = new Map<number, string>();
for (const [name, n] of Object.entries(errno)) if (!errnoNames.has(n)) errnoNames.set(n, name); // EAGAIN, not EWOULDBLOCK

export class DevmapError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(string(message, 'message'), options);
    string(code, 'code');
    this.name = 'DevmapError';
    this.code = code;
  }
}

/** The shape of a Node system error, as thrown by fs and by devmap for every failed system call. */
export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

let errorMap: Map<number, [string, string]> | undefined;

/** Builds a Node-style system error from a negative errno returned by the addon. */
export function systemError(negErrno: number, syscall: string, path?: string): SystemError {
  errorMap ??= getSystemErrorMap();
  const code = errnoNames.get(-negErrno) ?? `Unknown system error ${-negErrno}`;
  const description = errorMap.get(negErrno)?.[1] ?? 'unknown error';
  const where = path === undefined ? syscall : `${syscall} '${path}'`;
  const err = new Error(`${code}: ${description}, ${where}`) as SystemError;
  err.code = code;
  err.errno = negErrno;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  return err;
}

/** Throws the system error for `rc` when it is negative; returns `rc` otherwise. */
export function check(rc: number, syscall: string, path?: string): number {
  if (rc < 0) throw systemError(rc, syscall, path);
  return rc;
}

export function describe(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (typeof value === 'function') shown = `function ${value.name || '(anonymous)'}`;
  else if (value === null || typeof value !== 'object') shown = String(value);
  else shown = Object.prototype.toString.call(value);
  const type = value === null ? 'null' : typeof value;
  return `${shown} of type ${type}`;
}

function argError<E extends Error>(Ctor: new (m: string) => E, code: string, what: string, name: string, value: unknown): E {
  const err = new Ctor(`Expected ${what} for ${name} but received ${describe(value)}`);
  (err as E & { code: string }).code = code;
  return err;
}

export function typeError(what: string, name: string, value: unknown): TypeError {
  return argError(TypeError, 'ERR_INVALID_ARG_TYPE', what, name, value);
}

export function rangeError(what: string, name: string, value: unknown): RangeError {
  return argError(RangeError, 'ERR_OUT_OF_RANGE', what, name, value);
}

/** A value of the right type that is not acceptable (Node's ERR_INVALID_ARG_VALUE, a TypeError as Node makes it). */
export function invalidArgValue(message: string): TypeError {
  const err = new TypeError(message);
  (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/**
 * An integer in [min, max] (defaults: 0 and 2^53 − 1). Non-numbers are TypeErrors; NaN, fractions and values
 * out of range are RangeErrors.
 */
export function integer(value: unknown, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError('a number', name, value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError(`an integer from ${min} to ${max}`, name, value);
  }
  return value;
}

/** Like integer(), but `undefined` gives `fallback`. */
export function optionalInteger(value: unknown, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  return value === undefined ? fallback : integer(value, name, min, max);
}

export function boolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw typeError('a boolean', name, value);
  return value;
}

export function string(value: unknown, name: string): string {
  if (typeof value !== 'string') throw typeError('a string', name, value);
  return value;
}

export function func<T extends Function>(value: unknown, name: string): T {
  if (typeof value !== 'function') throw typeError('a function', name, value);
  return value as T;
}

/**
 * An options bag: undefined gives {}, anything but a plain object is a TypeError, and a key not in `known`
 * is a TypeError that names the closest known key, so a misspelled option never passes silently.
 *
 * The result is a snapshot: each own option is read exactly once, here, into a fresh object, before the caller
 * validates anything or computes an address. A getter that unmaps, resizes or closes therefore runs before the
 * call has looked at any state, and cannot change a value after it was checked.
 */
export function options<T extends object>(value: unknown, name: string, known: readonly string[]): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw typeError('an object', name, value);
  const keys = Object.keys(value);
  const snapshot: Record<string, unknown> = {};
  for (const key of keys) {
    if (!known.includes(key)) {
      const hint = closest(key, known);
      const err = new TypeError(
        `Unknown option ${JSON.stringify(key)} in ${name}` + (hint ? ` (did you mean ${JSON.stringify(hint)}?)` : '') +
          `; known options: ${known.join(', ')}`,
      );
      (err as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
      throw err;
    }
  }
  for (const key of keys) snapshot[key] = (value as Record<string, unknown>)[key];
  return snapshot as Partial<T>;
}

/** The known name closest to `word` (a did-you-mean hint), or undefined when none is near. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
