/*
 * What devmap relies on that differs between the Node lines it supports (20, 22, 24). Runs on every version
 * (scripts/node-matrix.mjs runs the whole suite under each); each test names the difference it guards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodeGypBuild from 'node-gyp-build';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { Mapping, SharedMemory, mapAnonymous, pageSize } from '../lib';

const root = join(__dirname, '..');
const release = join(root, 'build', 'Release', 'devmap.node');
const prebuild = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'devmap.node');
const major = Number(process.versions.node.split('.')[0]);

/** Runs `code` (CommonJS) in a fresh process on this Node; returns its exit status, signal and output. */
function child(code: string) {
  const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

describe(`Node ${process.version}`, () => {
  it('offers the Node-API version the addon is built for (native/common.gypi NAPI_VERSION)', () => {
    const gyp = readFileSync(join(root, 'native', 'common.gypi'), 'utf8');
    const built = Number(/NAPI_VERSION=(\d+)/.exec(gyp)?.[1]);
    expect(built).toBe(8);
    expect(Number(process.versions.napi)).toBeGreaterThanOrEqual(built);
  });

  // Node loads addons lazily (RTLD_LAZY): a Node-API function this Node lacks would only fail, killing the
  // process with "symbol lookup error", on its first call. RTLD_NOW makes the dynamic linker resolve every one
  // of them at load time, so a missing symbol fails here instead.
  it.each([
    ['build/Release', release],
    ['the prebuild', prebuild],
  ])('loads %s with every Node-API symbol resolved, and maps memory with it', (_name, file) => {
    if (!existsSync(file)) return; // build/Release is absent after a plain install (the prebuild loads)
    const r = child(`
      const os = require('node:os');
      const m = { exports: {} };
      process.dlopen(m, ${JSON.stringify(file)}, os.constants.dlopen.RTLD_NOW);
      const n = m.exports, size = n.page_size();
      const addr = n.mmap(0, size, 3, 0x22, -1, 0); // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
      const ab = n.buffer(addr, size, -1); // -1: no store counter (native/memory.cc)
      new Uint32Array(ab)[0] = 0xfeedface;
      const back = new Uint32Array(ab)[0];
      n.detach(ab);
      console.log(JSON.stringify({ size, back, detached: ab.byteLength, munmap: n.munmap(addr, size) }));
    `);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ size: pageSize, back: 0xfeedface, detached: 0, munmap: 0 });
  });

  it('loads the binary the matrix asked for (PREBUILDS_ONLY=1: the prebuild)', () => {
    const expected = process.env.DEVMAP_NODE_MATRIX_ADDON_EXPECTED;
    // node-gyp-build's resolve(): the file it would load, by its rules (its typings omit it).
    const loaded = (nodeGypBuild as unknown as { resolve(dir: string): string }).resolve(root);
    if (expected === 'prebuild') expect(loaded).toBe(prebuild);
    else if (expected === 'build') expect(loaded).toBe(release);
    else expect([release, prebuild]).toContain(loaded);
  });

  it('runs child processes, `node` on PATH and npm on this same Node', () => {
    // Tests spawn process.execPath; npm scripts (node-gyp-build, node-gyp) spawn `node` from PATH, and `npm`
    // is #!/usr/bin/env node. Under the matrix all three must be the Node under test.
    expect(execFileSync(process.execPath, ['-p', 'process.version'], { encoding: 'utf8' }).trim()).toBe(process.version);
    if (process.env.DEVMAP_NODE_MATRIX_ADDON_EXPECTED === undefined) return;
    expect(execFileSync('node', ['-p', 'process.version'], { encoding: 'utf8' }).trim()).toBe(process.version);
    const npm = JSON.parse(execFileSync('npm', ['version', '--json'], { cwd: tmpdir(), encoding: 'utf8' }));
    expect(npm.node).toBe(process.versions.node);
  });
});

describe('explicit resource management', () => {
  // Node 20 and 22 define Symbol.dispose/asyncDispose themselves; on 24 they are V8's, with `using`,
  // DisposableStack and SuppressedError native. devmap's dispose methods are keyed on the symbol, so it must
  // exist before lib/ is loaded, on every line.
  it('has Symbol.dispose and Symbol.asyncDispose, and Mapping/SharedMemory dispose by them', () => {
    expect(typeof Symbol.dispose).toBe('symbol');
    expect(typeof Symbol.asyncDispose).toBe('symbol');
    const m = mapAnonymous(pageSize);
    expect(typeof m[Symbol.dispose]).toBe('function');
    m[Symbol.dispose]();
    expect(m.mapped).toBe(false);
    m[Symbol.dispose](); // twice is harmless
    const shm = SharedMemory.memfd('node-versions', pageSize);
    shm[Symbol.dispose]();
    expect(() => shm.map()).toThrow();
  });

  // dist/ is compiled by tsc for ES2022: `using` becomes the __addDisposableResource helper, so the
  // published code needs no `using` syntax (Node 20 and 22 have none). Check the emitted code, then run
  // what tsc emits for `using`/`await using` here, on this Node, with devmap objects.
  it('dist/ has no `using` syntax: tsc lowered it', () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (/\.(c|m)?js$/.test(e.name)) files.push(join(dir, e.name));
      }
    };
    walk(join(root, 'dist'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(readFileSync(f, 'utf8'), f).not.toMatch(/^\s*(await\s+)?using\s+[\w$]+\s*=/m);
    expect(readFileSync(join(root, 'dist', 'demo.js'), 'utf8')).toContain('__addDisposableResource');
  });

  it('tsc-lowered `using` and `await using` dispose devmap objects; a throwing dispose gives a SuppressedError', async () => {
    const source = `
      export async function run(devmap: any, pageSize: number) {
        let m: any, shm: any;
        {
          using a = devmap.mapAnonymous(pageSize);
          using s = devmap.SharedMemory.memfd('using', pageSize);
          m = a; shm = s;
          new Uint8Array(a.buffer)[0] = 1;
        }
        let order: string[] = [];
        {
          await using x = { async [Symbol.asyncDispose]() { order.push('async'); } };
          using y = { [Symbol.dispose]() { order.push('sync'); } };
        }
        let suppressed: any;
        try {
          using z = { [Symbol.dispose]() { throw new Error('in dispose'); } };
          throw new Error('in body');
        } catch (e) {
          suppressed = e;
        }
        return { mapped: m.mapped, shm, order, suppressed };
      }`;
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, lib: ['es2022', 'esnext.disposable'] },
    });
    expect(outputText).toContain('__addDisposableResource');
    const mod = { exports: {} as any };
    new Function('module', 'exports', outputText)(mod, mod.exports);
    const r = await mod.exports.run({ mapAnonymous, SharedMemory }, pageSize);
    expect(r.mapped).toBe(false);
    expect(() => r.shm.map()).toThrow();
    expect(r.order).toEqual(['sync', 'async']);
    // Native SuppressedError on Node 24; tsc's stand-in (an Error named SuppressedError) before.
    expect(r.suppressed.name).toBe('SuppressedError');
    expect(r.suppressed.error.message).toBe('in dispose');
    expect(r.suppressed.suppressed.message).toBe('in body');
    if (typeof (globalThis as any).SuppressedError === 'function') expect(r.suppressed).toBeInstanceOf((globalThis as any).SuppressedError);
  });
});

describe('ArrayBuffers over mapped memory', () => {
  it('leaves views attached over trash pages on unmap (reads give zeros), and Mapping.of says they are stale', () => {
    const m = mapAnonymous(2 * pageSize);
    const ab = m.buffer;
    const u32 = new Uint32Array(ab);
    u32[0] = 7;
    m.unmap();
    expect(ab.byteLength).toBe(2 * pageSize);
    expect(u32[0]).toBe(0);
    u32[1] = 5;
    expect(u32[1]).toBe(5);
    expect(Mapping.of(u32)?.mapped).toBe(false);
    if ('detached' in ArrayBuffer.prototype) expect((ab as any).detached).toBe(false);
    else expect(major).toBeLessThan(21);
  });

  // Node 22 and 24 (V8 11.4+) have ArrayBuffer.prototype.transfer(): it MOVES an external backing store into
  // a new ArrayBuffer devmap does not know about; unmapping then leaves that buffer over unmapped pages, and
  // the next read kills the process (SIGSEGV). Node 20 has no transfer(). Run in a child: a crash must not
  // take the test worker with it.
  it('never leaves a transferred view over unmapped pages (ArrayBuffer.prototype.transfer, Node 22+)', () => {
    if (typeof (ArrayBuffer.prototype as any).transfer !== 'function') {
      expect(major).toBeLessThan(21);
      return;
    }
    for (const method of ['transfer', 'transferToFixedLength']) {
      const r = child(`
        const devmap = require('./dist');
        const m = devmap.mapAnonymous(devmap.pageSize);
        new Uint8Array(m.buffer)[0] = 42;
        let moved, refused = null;
        try { moved = m.buffer.${method}(); } catch (e) { refused = e.code || e.name; }
        const fromProto = (() => { try { return ArrayBuffer.prototype.${method}.call(m.view(0, devmap.pageSize)); } catch (e) { return null; } })();
        m.unmap();
        const after = moved === undefined ? null : [moved.byteLength, new Uint8Array(moved)[0] ?? null];
        const after2 = fromProto === null ? null : [fromProto.byteLength, new Uint8Array(fromProto)[0] ?? null];
        console.log(JSON.stringify({ refused, after, after2 }));
      `);
      expect(r.signal, `${method}() then unmap: the child died reading unmapped memory`).toBeNull();
      expect({ method, status: r.status, stderr: r.stderr }).toEqual({ method, status: 0, stderr: '' });
      const out = JSON.parse(r.stdout);
      // Refused, or the new buffer reads the trash pages that replaced the unmapped ones (zeros).
      if (out.refused === null) expect([[0, null], [pageSize, 0]]).toContainEqual(out.after);
      if (out.after2 !== null) expect([[0, null], [pageSize, 0]]).toContainEqual(out.after2);
    }
  });

  // structuredClone/postMessage with a transfer list: Node 20 copies an external buffer, Node 22 and 24
  // refuse it (DataCloneError). Either is safe; neither may leave a buffer over unmapped pages.
  it('structuredClone with a transfer list copies or refuses a mapped buffer, never moves it', () => {
    const r = child(`
      const devmap = require('./dist');
      const m = devmap.mapAnonymous(devmap.pageSize);
      new Uint8Array(m.buffer)[0] = 42;
      let clone = null, refused = null;
      try { clone = structuredClone(m.buffer, { transfer: [m.buffer] }); } catch (e) { refused = e.name; }
      m.unmap();
      console.log(JSON.stringify({ refused, clone: clone && [clone.byteLength, new Uint8Array(clone)[0]] }));
    `);
    expect(r.signal, 'structuredClone then unmap: the child died reading unmapped memory').toBeNull();
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
    const out = JSON.parse(r.stdout);
    if (out.refused !== null) expect(out.refused).toBe('DataCloneError');
    else expect(out.clone).toEqual([pageSize, 42]);
  });

  it('has process.getuid/getgid (the simulated kernel credits processes with them)', () => {
    expect(typeof process.getuid).toBe('function');
    expect(typeof process.getgid).toBe('function');
    expect(Mapping).toBeTypeOf('function');
  });
});
