export * from './constants';
export { pageSize } from './page';
export { Mapping } from './mapping';
export { mapAnonymous, mapFile } from './map';
export type { MapAnonymousOptions, MapFileOptions, MapRegionOptions } from './map';
export { SharedMemory } from './shared-memory';
export type { Seal } from './shared-memory';
