// The sha256 of the addon's sources (binding.gyp and native/*). `npm run prebuild` records it beside the
// prebuild (prebuilds/linux-x64/SOURCES), and a test compares, so a stale prebuild cannot ship unnoticed.
//   node scripts/source-hash.cjs          print the hash of the current sources
//   node scripts/source-hash.cjs --write  record it for the prebuild of this platform
const { createHash } = require('node:crypto');
const { readFileSync, readdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const files = ['binding.gyp', ...readdirSync(join(root, 'native')).sort().map((f) => join('native', f))];
const hash = createHash('sha256');
for (const f of files) hash.update(f + '\0').update(readFileSync(join(root, f)));
const digest = hash.digest('hex');

if (process.argv.includes('--write')) {
  writeFileSync(join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'SOURCES'), digest + '\n');
}
process.stdout.write(digest + '\n');
