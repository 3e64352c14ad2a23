/*
 * Walks every export of the package (found by enumerating the module, so a new export is covered the day it
 * lands) and calls every function, constructor, static method, method and getter with hostile values. The
 * process must survive and every error must be a TypeError, a RangeError, or carry a string `code`.
 * An exported class must have a factory below, so that its instances are probed too.
 */
import { describe, expect, it } from 'vitest';
import * as devmap from '../lib';
import { trackLeaks } from './helpers/leaks';

trackLeaks();

const detached = (() => {
  const m = devmap.mapAnonymous(devmap.pageSize);
  const ab = m.buffer;
  m.unmap();
  return ab;
})();

class HostileGetterError extends TypeError {}
const throwingGetters = new Proxy(
  {},
  {
    get() {
      throw new HostileGetterError('hostile getter');
    },
    ownKeys() {
      throw new HostileGetterError('hostile ownKeys');
    },
  },
);

const HOSTILE: [string, unknown][] = [
  ['undefined', undefined], ['null', null], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity],
  ['-1', -1], ['2^53', 2 ** 53], ['1.5', 1.5], ['0', 0], ['huge', Number.MAX_VALUE], ['empty string', ''],
  ['string', 'hostile'], ['object', {}], ['array', []], ['throwing getters', throwingGetters],
  ['detached buffer', detached], ['symbol', Symbol('x')], ['bigint', 10n], ['function', () => 1],
];

/** Factories for instances of every exported class, some live and some closed or unmapped. */
const INSTANCES: Record<string, (() => object)[]> = {
  Mapping: [() => devmap.mapAnonymous(2 * devmap.pageSize), () => {
    const m = devmap.mapAnonymous(devmap.pageSize);
    m.unmap();
    return m;
  }],
  SharedMemory: [() => devmap.SharedMemory.memfd('hostile', devmap.pageSize), () => {
    const s = devmap.SharedMemory.memfd('hostile-closed', devmap.pageSize);
    s.close();
    return s;
  }],
  DevmapError: [() => new devmap.DevmapError('ERR_X', 'x')],
};

const isClass = (f: Function) => /^class\b/.test(Function.prototype.toString.call(f));

function acceptable(err: unknown): boolean {
  if (err instanceof HostileGetterError) return true; // the caller's own exception, passed through
  if (err instanceof TypeError || err instanceof RangeError) return true;
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
}

/** Releases whatever a successful hostile call created. */
function release(result: unknown): void {
  if (result && typeof result === 'object') {
    const dispose = (result as { [Symbol.dispose]?: () => void })[Symbol.dispose];
    if (typeof dispose === 'function') dispose.call(result);
    if (Array.isArray(result)) result.forEach(release);
  }
}

async function probe(label: string, call: () => unknown, failures: string[]): Promise<void> {
  try {
    let result = call();
    if (result instanceof Promise) result = await Promise.race([result, new Promise((r) => setTimeout(r, 20))]);
    release(result);
  } catch (err) {
    if (!acceptable(err)) failures.push(`${label}: ${(err as Error)?.constructor?.name} ${(err as Error)?.message}`);
  }
}

function argLists(): [string, unknown[]][] {
  const lists: [string, unknown[]][] = [['()', []]];
  for (const [name, v] of HOSTILE) {
    lists.push([`(${name})`, [v]], [`(${name}, ${name})`, [v, v]], [`(1, ${name})`, [1, v]], [`(${name}, 1, ${name})`, [v, 1, v]]);
  }
  return lists;
}

describe('hostile input', () => {
  it('every exported class has instances to probe', () => {
    const classes = Object.entries(devmap).filter(([, v]) => typeof v === 'function' && isClass(v)).map(([k]) => k);
    expect(classes.filter((c) => !(c in INSTANCES))).toEqual([]);
  });

  it('survives hostile arguments to every exported function, constructor and static method', async () => {
    const failures: string[] = [];
    for (const [name, value] of Object.entries(devmap)) {
      if (typeof value !== 'function') continue;
      const fn = value as (...a: unknown[]) => unknown;
      for (const [shown, args] of argLists()) {
        if (isClass(fn)) {
          await probe(`new ${name}${shown}`, () => Reflect.construct(fn, args), failures);
          for (const key of Object.getOwnPropertyNames(fn)) {
            const member = (fn as unknown as Record<string, unknown>)[key];
            if (typeof member === 'function' && !['length', 'name', 'prototype'].includes(key)) {
              await probe(`${name}.${key}${shown}`, () => (member as Function).apply(fn, args), failures);
            }
          }
        } else {
          await probe(`${name}${shown}`, () => fn(...args), failures);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('survives hostile arguments to every method and getter of every instance', async () => {
    const failures: string[] = [];
    for (const [cls, factories] of Object.entries(INSTANCES)) {
      for (const make of factories) {
        for (const [shown, args] of argLists()) {
          const obj = make() as Record<string | symbol, unknown>;
          let proto = Object.getPrototypeOf(obj);
          while (proto && proto !== Object.prototype && proto !== Error.prototype) {
            for (const key of Reflect.ownKeys(proto)) {
              if (key === 'constructor') continue;
              const desc = Object.getOwnPropertyDescriptor(proto, key)!;
              if (desc.get) await probe(`${cls}#${String(key)}`, () => desc.get!.call(obj), failures);
              // dispose and unmap end the object; they run last, below.
              if (typeof desc.value === 'function' && key !== Symbol.dispose && key !== 'unmap' && key !== 'close') {
                await probe(`${cls}#${String(key)}${shown}`, () => desc.value.apply(obj, args), failures);
              }
            }
            proto = Object.getPrototypeOf(proto);
          }
          for (const end of ['unmap', 'close']) {
            if (typeof obj[end] === 'function') await probe(`${cls}#${end}${shown}`, () => (obj[end] as Function).apply(obj, args), failures);
          }
          release(obj);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});
