/*
 * Loads the addon. node-gyp-build takes a local build first (build/Release, then build/Debug), so a developer's
 * rebuild wins, and then prebuilds/<platform>-<arch>/ (what an install without a compiler uses); DEVMAP_ADDON
 * overrides both. On a platform other than Linux nothing is loaded: the package still imports, and every call
 * that needs the addon throws ERR_DEVMAP_UNSUPPORTED_PLATFORM.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import nodeGypBuild from 'node-gyp-build';
import { DevmapError } from './errors';

/** The addon's functions: see native/ (addon.h lists the files). Failing system calls return -errno. */
export interface Native {
  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number;
  /**
   * mremap(2) + a row of the range table of `kind` in one call (the row index is left in tables()[1][0]); old_size
   * 0 on a shared mapping makes a second mapping of the same pages.
   */
  mremap_row(addr: number, oldSize: number, newSize: number, flags: number, kind: number): number;
  munmap(addr: number, length: number): number;
  mprotect(addr: number, length: number, prot: number): number;
  msync(addr: number, length: number, flags: number): number;
  madvise(addr: number, length: number, advice: number): number;
  mlock(addr: number, length: number): number;
  munlock(addr: number, length: number): number;
  mincore(addr: number, length: number, out: Uint8Array): number;
  memfd_create(name: string, flags: number): number;
  shm_open(name: string, oflag: number, mode: number): number;
  shm_unlink(name: string): number;
  fsetxattr(fd: number, name: string, value: Uint8Array, flags: number): number;
  fgetxattr(fd: number, name: string, out: Uint8Array): number;
  open(path: string, flags: number, mode: number): number;
  close(fd: number): number;
  /** Fills out with [st_size, st_mode, st_uid, st_gid, st_dev, st_ino]. */
  fstat(fd: number, out: Float64Array): number;
  /** fstat(2)'s st_size alone. */
  fstat_size(fd: number): number;
  ftruncate(fd: number, length: number): number;
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  /** An external ArrayBuffer over [addr, addr + length); its store counts on `counter` (-1: none) until freed. */
  buffer(addr: number, length: number, counter: number): ArrayBuffer;
  /** mmap + a row of the range table of `kind`; the row index is left in tables()[1][0]. */
  mmap_row(addr: number, length: number, prot: number, flags: number, fd: number, offset: number, kind: number): number;
  /** Replaces the pages with private zero pages, read+write (MAP_FIXED). */
  trash(addr: number, length: number): number;
  /** Detaches `buffer` (if given), trashes the pages and sets the row to cover them as `kind`. */
  retire(row: number, addr: number, length: number, kind: number, buffer?: ArrayBuffer): number;
  /** Detaches `buffer` (if given), punches the pages out of a shared anonymous mapping (MADV_REMOVE) and sets the row to cover them as `kind`. */
  punch(row: number, addr: number, length: number, kind: number, buffer?: ArrayBuffer): number;
  row_add(addr: number, length: number, kind: number): number;
  row_set(row: number, addr: number, length: number, kind: number): void;
  row_remove(row: number): void;
  /** munmap + row_remove. */
  row_release(row: number, addr: number, length: number): number;
  /** [flags words of the range table (process-wide), this environment's store counters, the process words (fork count, VMA budget)]. */
  tables(): [ArrayBuffer, ArrayBuffer, ArrayBuffer];
  /** linkat(2) of an O_TMPFILE descriptor's file to `path` (EEXIST when taken). */
  link_fd(fd: number, path: string): number;
  read(addr: number, target: ArrayBufferView): void;
  detach(buffer: ArrayBuffer): void;
  page_size(): number;
  // native/futex.cc, waitv.cc, robust_mutex.cc (lib/sync): words are addresses that lib/sync/word.ts derived
  // from a validated view.
  futex_wait_spin(address: number, expected: number, timeoutMs: number, spin: number, waitersAddress: number): number;
  futex_wake_addr(address: number, count: number): number;
  /** The same word through a new one-page mapping of its page, or -errno; release it with futex_alias_release. */
  futex_alias(address: number): number;
  futex_alias_release(aliasAddress: number): number;
  waitv_init(onComplete: (batch: number[]) => void): number;
  waitv_add(address: number, expected: number, timeoutMs: number, tag: number): number;
  waitv_cancel(id: number): number;
  waitv_threads(): number;
  /** [added, asleep, woke, queued, delivered] of the latest async wait, CLOCK_MONOTONIC ns (bench/sync.mjs). */
  waitv_times(): number[];
  mutex_layout(): [size: number, align: number, lockWordOffset: number];
  mutex_init(address: number): number;
  mutex_lock(address: number): number;
  mutex_trylock(address: number): number;
  mutex_unlock(address: number): number;
  mutex_consistent(address: number): number;
  mutex_wait_value(address: number): number;
  mutex_mark_waiters(address: number): number;
  word_address(array: ArrayBufferView, byteIndex: number): number;
  gettid(): number;
  // native/socket.cc (lib/kernel/remote): Unix sockets, descriptors passed with SCM_RIGHTS.
  socket_unix(nonblocking: boolean): number;
  socket_bind(fd: number, path: string): number;
  socket_listen(fd: number, backlog: number): number;
  socket_connect(fd: number, path: string): number;
  /** Fills out with [pid, uid, gid] of the peer. */
  socket_peercred(fd: number, out: Float64Array): number;
  socket_send(fd: number, bytes: Uint8Array, fds: Int32Array | null, dontwait: boolean): number;
  /** out = [descriptor count, msg_flags, descriptors…]. */
  socket_recv(fd: number, bytes: Uint8Array, out: Int32Array, dontwait: boolean): number;
  // native/uffd.cc (lib/kernel/remote/faults.ts): userfaultfd, descriptor readiness, the client's fault agent.
  uffd_create(flags: number): number;
  uffd_open_device(flags: number): number;
  /** out = [features granted, ioctls available]. */
  uffd_api(fd: number, features: number, out: Float64Array): number;
  uffd_register(fd: number, addr: number, len: number, mode: number): number;
  uffd_unregister(fd: number, addr: number, len: number): number;
  /** Bytes mapped, or -errno (EEXIST: a page was mapped already; EAGAIN: the address space is changing). */
  uffd_continue(fd: number, addr: number, len: number, mode: number): number;
  uffd_wake(fd: number, addr: number, len: number): number;
  uffd_writeprotect(fd: number, addr: number, len: number, mode: number): number;
  /** Events read into out, four numbers each: [event, flags, address, thread id]; -EAGAIN when none. */
  uffd_read(fd: number, out: Float64Array): number;
  fd_watch(fd: number, onReadable: () => void): object | number;
  fd_unwatch(handle: object): number;
  fd_ref(handle: object, ref: boolean): number;
  agent_start(sock: number, uffd: number, base: number, size: number): number;
  agent_stop(id: number): number;
  agent_state(id: number): number;
  agent_call(sock: number, op: number, a: number, b: number, timeoutMs: number): number;
  socket_pair(): [number, number] | number;
}

const root = join(__dirname, '..');

function unsupported(): Native {
  const fail = () => {
    throw new DevmapError(
      'ERR_DEVMAP_UNSUPPORTED_PLATFORM',
      `devmap needs Linux (memfd, futex, /dev/shm); this is ${process.platform}-${process.arch}`,
    );
  };
  return new Proxy({} as Native, { get: () => fail });
}

function load(): Native {
  if (process.platform !== 'linux') return unsupported();
  try {
    // DEVMAP_ADDON names a specific build (the sanitizer and Node-matrix runs use it); otherwise node-gyp-build.
    const forced = process.env.DEVMAP_ADDON;
    if (forced) return require(forced) as Native;
    return nodeGypBuild(root) as Native;
  } catch (cause) {
    const tried = [
      ...(process.env.DEVMAP_ADDON ? [process.env.DEVMAP_ADDON] : []),
      join(root, 'prebuilds', `${process.platform}-${process.arch}`),
      join(root, 'build', 'Release', 'devmap.node'),
      join(root, 'build', 'Debug', 'devmap.node'),
    ].map((p) => `  ${p}${existsSync(p) ? '' : ' (missing)'}`);
    throw new DevmapError(
      'ERR_DEVMAP_ADDON_LOAD',
      `devmap could not load its native addon for ${process.platform}-${process.arch} on Node ${process.version}.\n` +
        `Tried:\n${tried.join('\n')}\n` +
        'To fix: run `npm rebuild devmap` (needs python3, make and a C++ compiler), or install a release that ships ' +
        'a prebuild for this platform; on musl (Alpine) the glibc prebuild does not load, rebuild from source.',
      { cause },
    );
  }
}

let loaded: Native | undefined;

/** The addon, loaded on first use so that importing devmap never throws. */
export function native(): Native {
  return (loaded ??= load());
}
