import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Examples import 'devmap' as users do; in tests that is the TypeScript source.
  resolve: { alias: { devmap: fileURLToPath(new URL('./lib/index.ts', import.meta.url)) } },
  test: {
    include: ['test/**/*.test.ts'],
    // Real processes, real mappings: forks isolate a test file that kills or crashes a child.
    pool: 'forks',
    // Tests that a dropped Mapping is unmapped need to force a collection.
    execArgv: ['--expose-gc'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    globalSetup: ['test/global-setup.ts'],
  },
});
