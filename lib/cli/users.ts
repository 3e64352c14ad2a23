/*
 * User names for uids, as ls(1) shows them: from /etc/passwd, read once. A uid with no entry (a container's
 * user, a deleted account) has no name, and the uid alone is shown.
 */
import { readFileSync } from 'node:fs';

let names: Map<number, string> | undefined;

/** The login name of `uid`, or undefined when /etc/passwd has none. */
export function userName(uid: number): string | undefined {
  if (names === undefined) {
    names = new Map();
    let passwd = '';
    try {
      passwd = readFileSync('/etc/passwd', 'utf8');
    } catch {
      // no passwd file: uids only
    }
    for (const line of passwd.split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id !== undefined && /^\d+$/.test(id) && !names.has(Number(id))) names.set(Number(id), name);
    }
  }
  return names.get(uid);
}
