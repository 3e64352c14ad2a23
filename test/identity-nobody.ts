// Runs a Node script as uid/gid 65534 (nobody), optionally inside a private mount namespace whose /proc is
// mounted hidepid=2 (other users' processes invisible): the two views of the machine in which liveness must
// not be guessed "dead" (issue 12, class 7). Used by test/identity.test.ts and test/rmap/shared-liveness.test.ts.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

export interface NobodyResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The built module `rel` of dist/ as a JSON string literal, for require() in a script. */
export const distModule = (rel: string) => JSON.stringify(join(__dirname, '..', 'dist', rel));

export function asNobody(script: string, hidepid: boolean): NobodyResult {
  const drop = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script];
  const r = hidepid
    ? spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t proc -o hidepid=2 proc /proc && exec "$@"', 'sh', ...drop], { encoding: 'utf8' })
    : spawnSync(drop[0], drop.slice(1), { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const isRoot = process.getuid?.() === 0;
/**
 * Root can drop to nobody, and nobody can run this Node, read dist/ and load the addon this run uses — not so
 * under a private checkout, with a Node binary in root's home (the Node-matrix cache) or a sanitizer build in a
 * private scratch directory.
 */
const loadsAddon = `require(${distModule('native.js')}).native().page_size()`;
export const nobodyCanRun =
  isRoot &&
  // Both ways the tests drop to another uid: setpriv (which may keep capabilities that let it reach a binary
  // under root's 0700 home) and Node's own spawn({ uid, gid }), which does not.
  asNobody(loadsAddon, false).status === 0 &&
  spawnSync(process.execPath, ['-e', loadsAddon], { uid: 65534, gid: 65534 }).status === 0;
/** ... and a hidepid=2 /proc can be mounted in a private mount namespace (not in every container). */
export const hidepidWorks = nobodyCanRun && asNobody(`process.exit(require('fs').existsSync('/proc/1/stat') ? 1 : 0)`, true).status === 0;
