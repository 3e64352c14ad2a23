// Writes dist/index.mjs: an ES module re-exporting every named export of the CommonJS build, so that
// `import { mapAnonymous } from 'devmap'` and `require('devmap')` give the same objects.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');

const dist = join(__dirname, '..', 'dist');
const names = Object.keys(require(join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule');
const lines = [
  "import cjs from './index.js';",
  ...names.map((n) => `export const ${n} = cjs.${n};`),
  'export default cjs;',
  '',
];
writeFileSync(join(dist, 'index.mjs'), lines.join('\n'));
