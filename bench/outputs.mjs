// Where `devmap bench` will write (--report FILE, --svg DIR), checked before the first case runs: a minute
// of measurements must not end in ENOENT. The checks are the ones the final write would fail: the file's
// directory exists and is writable, the file (when it exists) is a writable regular file, and the SVG
// directory is a directory or can be made (its nearest existing ancestor is a writable directory).
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** An error naming the option, the path and why; `code` is the system's (ENOENT, EACCES, ENOTDIR, EISDIR). */
function refuse(option, path, code, why) {
  return Object.assign(new Error(`${option} ${path}: ${why}`), { code, path });
}

function statOrNull(path) {
  try {
    return statSync(path);
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
    throw err;
  }
}

function writableDirectory(option, path, dir) {
  const st = statOrNull(dir);
  if (st === null) return refuse(option, path, 'ENOENT', `directory ${dir} does not exist`);
  if (!st.isDirectory()) return refuse(option, path, 'ENOTDIR', `${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    return refuse(option, path, 'EACCES', `directory ${dir} is not writable`);
  }
  return null;
}

/**
 * Throws when a report or SVG path could not be written.
 * @param {{ report?: string, svgDir?: string }} outputs
 */
export function checkOutputs({ report, svgDir } = {}) {
  if (report !== undefined) {
    const file = resolve(report);
    const st = statOrNull(file);
    if (st?.isDirectory()) throw refuse('--report', report, 'EISDIR', 'is a directory; give a file name');
    if (st !== null) {
      try {
        accessSync(file, constants.W_OK);
      } catch {
        throw refuse('--report', report, 'EACCES', 'exists and is not writable');
      }
    } else {
      const err = writableDirectory('--report', report, dirname(file));
      if (err) throw err;
    }
  }
  if (svgDir !== undefined) {
    let dir = resolve(svgDir);
    while (statOrNull(dir) === null && dirname(dir) !== dir) dir = dirname(dir);
    const err = writableDirectory('--svg', svgDir, dir);
    if (err) throw err;
  }
}
