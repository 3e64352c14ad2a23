/**
 * devmap: real shared memory for Node.js on Linux, and the classic UNIX driver mapping interfaces on top of it.
 * Layers (each uses only the ones below): memory → sync, rmap → kernel → irix, ddi. See docs/architecture.md.
 */
export * from './memory';
export * from './sync';
export { SharedResourceMap } from './rmap';
export type {
  SharedResourceMapAttachOptions, SharedResourceMapCreateOptions, SharedResourceMapInfo, SharedResourceMapOpenOptions, SharedResourceMapSizing,
  SharedResourceMapStats,
} from './rmap';
export {
  ResourceMap, ResourceMapPanic, rmallocmap, rmallocmap_wait, rmalloc, rmalloc_wait, rmfree, rmfreemap,
} from './rmap';
export type {
  FreeRange, OverflowRule, Policy, ResourceMapOptions, ResourceMapStats, WaitOptions, ResourceMapPanicCode,
  ResourceMapWarning, ResourceMapWarningCode,
} from './rmap';
export * from './kernel';
export { Kernel } from './system';
export type { Driver } from './system';
export * from './irix';
export * from './ddi';
export { DevmapError } from './errors';
export type { SystemError } from './errors';
export { Channel, Subscriber } from './channel';
export type {
  ChannelOptions, HandleOptions as ChannelHandleOptions, WaitOptions as ChannelWaitOptions, Loan, Message, ChannelStats,
  ChannelReaderInfo, ChannelWriterInfo, ChannelMode, ChannelOverflow,
} from './channel';
