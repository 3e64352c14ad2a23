// srmap-child.cjs peers for the multi-process tests of the shared resource map.
import { spawnLines, type LineChild } from '../sync/lines';

/** Spawns srmap-child.cjs with `args` and extra environment variables (the test hooks DEVMAP_SRMAP_STOP_*). */
export function spawnPeer(args: string[], env: Record<string, string> = {}): LineChild {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return spawnLines('srmap-child.cjs', args);
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
  }
}
