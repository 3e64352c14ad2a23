// The sha256 of the addons' sources (binding.gyp and everything under native/ but build output and prebuilds).
// `npm run prebuild` records it beside the prebuild (prebuilds/linux-x64/SOURCES), and a test compares, so a
// stale prebuild of any native target cannot ship unnoticed.
//   node scripts/source-hash.cjs          print the hash of the current sources
//   node scripts/source-hash.cjs --write  record it for the prebuild of this platform
const { createHash } = require('node:crypto');
const { readFileSync, readdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const skip = new Set(['build', 'prebuilds']);

/** Source files below `dir` (relative to the root), sorted, depth first. */
function sources(dir) {
  return readdirSync(join(root, dir), { withFileTypes: true })
    .filter((e) => !skip.has(e.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : [join(dir, e.name)]));
}

const hash = createHash('sha256');
for (const f of ['binding.gyp', ...sources('native')]) hash.update(f + '\0').update(readFileSync(join(root, f)));
const digest = hash.digest('hex');

if (process.argv.includes('--write')) {
  writeFileSync(join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'SOURCES'), digest + '\n');
}
process.stdout.write(digest + '\n');
