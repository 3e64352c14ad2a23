/*
 * The arguments of create(), attach() and bytesFor(): each read once, checked, and turned into the numbers
 * the layout is computed from.
 */
import { DevmapError, integer, rangeError, typeError } from '../../errors';
import { Mapping } from '../../memory/mapping';
import type { OverflowRule } from '../classic';
import type { ResourceMapWarning } from '../panic';
import type { Policy } from '../store';
import { DEFAULT_ILLUMOS_CAPACITY, DEFAULT_OWNERS, MAX_OWNERS } from './layout';

export interface SharedResourceMapSizing {
  /** classic: free-range slots (rmallocmap's mapsize). illumos: ignored (default 0). */
  mapsize?: number;
  policy?: Policy;
  /** Store nodes. classic: at least mapsize (default mapsize); illumos: segments + spans (default 256). */
  capacity?: number;
  /** Owner records: allocations outstanding at once that reclaim() can return (default 1024; 0: none). */
  owners?: number;
}

export interface SharedResourceMapCreateOptions extends SharedResourceMapSizing {
  /** Byte offset of the region in the mapping (a multiple of 8; default 0). */
  offset?: number;
  overflow?: OverflowRule;
  /** Stored in the region (at most 64 bytes of UTF-8); used in warnings and panics. */
  name?: string;
  onWarning?: (message: string, warning: ResourceMapWarning) => void;
}

export interface SharedResourceMapAttachOptions {
  offset?: number;
  /** This process's name for the map (default: the name stored by create). */
  name?: string;
  onWarning?: (message: string, warning: ResourceMapWarning) => void;
}

export interface SharedResourceMapOpenOptions extends SharedResourceMapCreateOptions {
  /** Milliseconds to wait for another process's format to finish (default: no limit). */
  timeout?: number;
}

export type WarnFn = (message: string, warning: ResourceMapWarning) => void;
export const CREATE_KEYS = ['offset', 'mapsize', 'policy', 'overflow', 'name', 'capacity', 'owners', 'onWarning'] as const;
export const OPEN_KEYS = [...CREATE_KEYS, 'timeout'] as const;
export const ATTACH_KEYS = ['offset', 'name', 'onWarning'] as const;

export function checkMapping(mapping: unknown): Mapping {
  if (!(mapping instanceof Mapping)) throw typeError('a Mapping', 'mapping', mapping);
  if (!mapping.mapped) throw new DevmapError('ERR_DEVMAP_UNMAPPED', 'The mapping has been unmapped');
  if (!mapping.shared) {
    throw new DevmapError(
      'ERR_DEVMAP_NOT_SHARED',
      'A shared resource map needs a shared mapping (MAP_SHARED); this one is copy-on-write ({ shared: false })',
    );
  }
  return mapping;
}

export function checkOffset(value: unknown, room: number, need: number): number {
  const offset = value === undefined ? 0 : integer(value, 'options.offset');
  if (offset % 8 !== 0 || offset + need > room) {
    throw rangeError(`a multiple of 8 from 0 to ${Math.max(0, room - need)} (the region needs ${need} bytes; the mapping has ${room})`, 'options.offset', value);
  }
  return offset;
}

function policyOf(value: unknown): Policy {
  if (value === undefined) return 'classic';
  if (typeof value !== 'string') throw typeError('a string', 'options.policy', value);
  if (value !== 'classic' && value !== 'illumos') throw rangeError("'classic' or 'illumos'", 'options.policy', value);
  return value;
}

export interface Sizing {
  policy: Policy;
  mapsize: number;
  capacity: number;
  owners: number;
}

export function sizing(o: SharedResourceMapSizing): Sizing {
  const policy = policyOf(o.policy);
  const mapsize = o.mapsize === undefined ? 0 : integer(o.mapsize, 'options.mapsize', 0, 0x7fffffff);
  const capDefault = policy === 'classic' ? Math.max(1, mapsize) : DEFAULT_ILLUMOS_CAPACITY;
  const capacity = o.capacity === undefined ? capDefault : integer(o.capacity, 'options.capacity', 1, 0x3fffffff);
  if (policy === 'classic' && capacity < mapsize) throw rangeError(`at least mapsize (${mapsize})`, 'options.capacity', capacity);
  const owners = o.owners === undefined ? DEFAULT_OWNERS : integer(o.owners, 'options.owners', 0, MAX_OWNERS);
  return { policy, mapsize, capacity, owners };
}
