/**
 * devmap: real shared memory for Node.js on Linux, and the classic UNIX driver mapping interfaces on top of it.
 * Layers (each uses only the ones below): memory → sync → rmap → kernel → ddi / irix. See docs/architecture.md.
 */
export * from './memory';
export { DevmapError } from './errors';
export type { SystemError } from './errors';
