/** The shared resource map: see map.ts for the design. */
export { SharedResourceMap } from './map';
export { SRMAP_MAGIC, SRMAP_VERSION } from './layout';
export type { SharedResourceMapStats } from './layout';
export type { SharedResourceMapInfo } from './inspect';
export type { SharedResourceMapAttachOptions, SharedResourceMapCreateOptions, SharedResourceMapOpenOptions, SharedResourceMapSizing } from './options';
