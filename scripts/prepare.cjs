/*
 * The `prepare` script: compiles lib/ to dist/ wherever npm runs it.
 *
 * npm runs `prepare` in four places. After `npm ci` or `npm install` in a checkout, and before `npm pack` or
 * `npm publish`, the devDependencies are installed and the compile just runs. Installed as a dependency from a
 * git URL (`npm install git+file:///path/to/clone`), npm clones the repository into a temporary directory,
 * installs its devDependencies there, runs `prepare` and installs the packed result: the compiler is there too.
 * Installed from a directory (`npm install /path/to/clone`), npm 11 links the directory into node_modules and
 * runs its scripts in place without installing anything in it: the checkout has no TypeScript compiler, and
 * at run time it would have no node-gyp-build either, since a linked package resolves its dependencies from
 * its own directory. Only then does this script install the checkout's own dependencies first (`npm ci`,
 * devDependencies included, scripts off so that this script does not run itself again), which is what a
 * developer of the checkout would have done anyway.
 */
'use strict';
const { execFileSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');

function resolvable(id) {
  try {
    require.resolve(id, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

/*
 * The outer npm passes its own configuration to scripts as npm_config_* variables (its prefix, --omit=dev,
 * --global, --install-links, …). Those describe the project being installed into, not this checkout: keep
 * only the ones that say how to reach the registry.
 */
function npmEnvironment() {
  const keep = /^npm_config_(cache|registry|userconfig|globalconfig|offline|prefer_offline|prefer_online|proxy|https_proxy|noproxy|strict_ssl|cafile|ca|fetch_.*)$/i;
  /** @type {NodeJS.ProcessEnv} */
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_config_/i.test(key) || keep.test(key)) env[key] = value;
  }
  return env;
}

if (!resolvable('typescript/package.json') || !resolvable('node-gyp-build')) {
  const command = existsSync(join(root, 'package-lock.json')) ? 'ci' : 'install';
  process.stderr.write(`devmap: no TypeScript compiler in ${root}; running npm ${command} there first\n`);
  execFileSync('npm', [command, '--include=dev', '--ignore-scripts', '--no-audit', '--no-fund'], {
    cwd: root,
    env: npmEnvironment(),
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

execFileSync('npm', ['run', 'compile'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
