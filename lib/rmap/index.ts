/*
 * Resource maps: the DDI functions of rmalloc(9F) over the ResourceMap class. See map.ts for the design and
 * docs/rmap.md for the reference.
 */
import { typeError } from '../errors';
import { ResourceMap, type ResourceMapOptions, type WaitOptions } from './map';

export { ResourceMap } from './map';
export type { FreeRange, OverflowRule, Policy, ResourceMapOptions, ResourceMapStats, WaitOptions } from './map';
export { ResourceMapPanic } from './panic';
export type { ResourceMapPanicCode, ResourceMapWarning, ResourceMapWarningCode } from './panic';
export { RmapStore } from './store';
export { SharedResourceMap, SRMAP_MAGIC, SRMAP_VERSION } from './shared';
export type {
  SharedResourceMapAttachOptions, SharedResourceMapCreateOptions, SharedResourceMapOpenOptions, SharedResourceMapInfo, SharedResourceMapSizing,
  SharedResourceMapStats,
} from './shared';

function map(mp: unknown): ResourceMap {
  if (!(mp instanceof ResourceMap)) throw typeError('a ResourceMap', 'mp', mp);
  return mp;
}

/** rmallocmap(9F): an empty map with `mapsize` free-range slots (classic; ignored by illumos). */
export function rmallocmap(mapsize: number, options?: ResourceMapOptions): ResourceMap {
  return new ResourceMap(mapsize, options);
}

/** rmallocmap_wait(9F): the same as rmallocmap — making a map never has to wait in a process. */
export function rmallocmap_wait(mapsize: number, options?: ResourceMapOptions): ResourceMap {
  return new ResourceMap(mapsize, options);
}

/** rmalloc(9F): the index of `size` free units, or 0 when none fit. */
export function rmalloc(mp: ResourceMap, size: number): number {
  return map(mp).alloc(size);
}

/** rmalloc_wait(9F): resolves with the index once `size` units fit (see ResourceMap.allocWait). */
export function rmalloc_wait(mp: ResourceMap, size: number, options?: WaitOptions): Promise<number> {
  try {
    return map(mp).allocWait(size, options);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** rmfree(9F): returns [index, index + size) to the map; wakes every waiter. */
export function rmfree(mp: ResourceMap, size: number, index: number): void {
  map(mp).free(size, index);
}

/** rmfreemap(9F): frees the map; waiters are rejected. */
export function rmfreemap(mp: ResourceMap): void {
  map(mp).destroy();
}
