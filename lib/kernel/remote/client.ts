/*
 * The Node client: this process as a process of a kernel served elsewhere (kernel.listen() in another process).
 *
 * connectKernel(path) connects, says hello, and reserves address space of the size the host's address spaces
 * have (PROT_NONE, as AddressSpace reserves it). Its system calls are those of a simulated Process — open,
 * close, read, write, ioctl, mmap, munmap, mprotect, exit — but mmap gives real pages here, in this process:
 * the host answers with the changes to make at offsets of the reservation and the descriptors of the objects to
 * map, and this side makes them, so the address returned is where the kernel placed the mapping. munmap of part
 * of a mapping really unmaps those pages here, while the host's driver sees the exact split (SPEC A.6, B.1).
 *
 * A system call waits for the host's answer as a process waits for its kernel: the calls return Promises, for
 * the same shape as Process, but the thread blocks until the reply (so a host in this very process would wait
 * for itself, and is refused). fork() is refused: a Node process cannot fork; run a C or Python program under
 * `devmap run` to exercise a driver's fork path.
 *
 * The host is trusted by its clients (it is their kernel), yet every change it asks for is checked to lie inside
 * the reservation, so no answer can make this process map over its own heap.
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { DevmapError, integer, string, systemError, typeError } from '../../errors';
import { MAP_FIXED, MAP_SHARED, PROT_READ, PROT_WRITE } from '../../memory/constants';
import { pageSize } from '../../memory/page';
import { native } from '../../native';
import { AddressSpace, type Piece } from '../as';
import { AGENT_MSG, DM_AGENT_HELLO, encodeAgentMsg, openUserfaultfd } from './agent';
import { servedHere } from './host';
import {
  CHANGE_WORDS, Change, HEADER, UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_WP, MAX_FRAME, MAX_IO, Op, PROTOCOL_VERSION, REPLY, decode, decodeChanges, encode,
  frameSize, iocDir, iocSize, IOC_READ, IOC_WRITE, type Frame,
} from './protocol';

const O_ACCMODE = 3;
const connecting = Symbol('devmap.connectKernel');

/** A process of a remote kernel: this Node process, connected to a host's socket. */
export class RemoteProcess {
  /** The kernel's pid for this process. */
  readonly pid: number;
  /** The device paths the host serves. */
  readonly paths: readonly string[];
  readonly #fd: number;
  readonly #as: AddressSpace;
  #pieces: Piece[] = [];
  #exited = false;
  readonly #recv = new Uint8Array(MAX_FRAME);
  readonly #fdsOut = new Int32Array(2 + 64);
  /** Real faults (SPEC A.9): this process's uffd, its agent's socket and thread; -1 without them. */
  #uffd = -1;
  #agentSock = -1;
  #agent = -1;
  #noFaults = '';
  #faultsStarted = false;

  /** @internal Use connectKernel(). */
  constructor(fd: number, hello: Frame, token?: symbol) {
    if (token !== connecting) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'RemoteProcess is not constructible; use connectKernel(path)');
    this.#fd = fd;
    this.pid = Number(hello.words[1]);
    const size = Number(hello.words[2]);
    if (Number(hello.words[4]) !== pageSize) throw new DevmapError('ERR_DEVMAP_PROTOCOL', 'The host has another page size');
    const text = new TextDecoder().decode(hello.bytes);
    this.paths = text.length > 0 ? text.split('\0') : [];
    this.#as = new AddressSpace(size, this.pid);
  }

  /** The reservation's first address in this process: a mapping's address minus it is its offset at the host. */
  get base(): bigint {
    return this.#as.base;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Why this process cannot map a driver with a devmap_access entry point ('' when it can): its pages fault
   * into the host through a userfaultfd, and making one failed.
   */
  get faultsUnavailable(): string {
    return this.#noFaults;
  }

  /**
   * Faults [addr, addr + len) in now, as a touch for `rw` would, and throws the fault's signal as an error
   * when the driver refuses. Pages of a driver with devmap_access are loaded by touching them; a system call
   * handed such a page while it is unloaded (fs.writeSync over a view, for instance) gets EFAULT when the uffd
   * is user-mode-only (an unprivileged process): prefault the buffer first.
   */
  async prefault(addr: bigint, len: number, rw: 'read' | 'write' = 'read'): Promise<void> {
    this.#assertRunning();
    if (typeof addr !== 'bigint') throw typeError('a bigint', 'addr', addr);
    len = integer(len, 'len', 1);
    if (rw !== 'read' && rw !== 'write') throw typeError("'read' or 'write'", 'rw', rw);
    const off = this.#offsetOf(addr, len);
    if (off < 0) throw systemError(-14, 'prefault');
    const r = this.#call(Op.PREFAULT, [off, len, rw === 'write' ? 1 : 0], undefined, 'prefault');
    void r;
  }

  /** @internal Sets up real faults: the uffd, the agent socket, the hello, the agent thread. */
  startFaults(): void {
    if (this.#faultsStarted) return;
    this.#faultsStarted = true;
    const n = native();
    const u = openUserfaultfd();
    if ('errno' in u) {
      this.#noFaults = u.reason;
      this.#call(Op.FAULTS, [-u.errno], new TextEncoder().encode(u.reason), 'userfaultfd');
      return;
    }
    try {
      const fds: number[] = [];
      this.#call(Op.AGENT, [0], undefined, 'socketpair', -1, fds);
      if (fds.length !== 1) {
        for (const fd of fds) n.close(fd);
        throw new DevmapError('ERR_DEVMAP_PROTOCOL', 'The host sent no agent socket');
      }
      this.#agentSock = fds[0];
      const hello = encodeAgentMsg({ op: DM_AGENT_HELLO, seq: 0, a: this.#as.rawBase, b: this.#as.size });
      const sent = n.socket_send(this.#agentSock, hello, Int32Array.of(u.fd), false);
      if (sent !== AGENT_MSG) throw this.#hostGone(sent < 0 ? sent : 0);
      this.#uffd = u.fd;
      // Word 1: 0 when the uffd has write-protect mode, else -ENOTSUP and the reason in the bytes.
      this.#call(Op.FAULTS, [0, u.noWriteFaults ? -95 : 0], u.noWriteFaults ? new TextEncoder().encode(u.noWriteFaults) : undefined, 'userfaultfd', 1);
      const id = n.agent_start(this.#agentSock, this.#uffd, this.#as.rawBase, this.#as.size);
      if (id < 0) throw systemError(id, 'pthread_create');
      this.#agent = id;
    } catch (err) {
      if (this.#uffd < 0) n.close(u.fd);
      this.#stopFaults();
      throw err;
    }
  }

  #stopFaults(): void {
    const n = native();
    if (this.#agent >= 0) n.agent_stop(this.#agent);
    if (this.#agentSock >= 0) n.close(this.#agentSock);
    if (this.#uffd >= 0) n.close(this.#uffd);
    this.#agent = this.#agentSock = this.#uffd = -1;
  }

  async open(path: string, oflag = 2): Promise<number> {
    this.#assertRunning();
    path = string(path, 'path');
    oflag = integer(oflag, 'oflag', 0, 0x7fffffff);
    if ((oflag & O_ACCMODE) === 3) throw systemError(-22, 'open', path);
    const r = this.#call(Op.OPEN, [oflag], new TextEncoder().encode(path), 'open');
    return Number(r.words[1]);
  }

  async close(fd: number): Promise<void> {
    this.#assertRunning();
    this.#call(Op.CLOSE, [integer(fd, 'fd', 0, 0x7fffffff)], undefined, 'close');
  }

  /**
   * read(2) into `target` (a typed array, whole), or into [addr, addr + len) of a mapping this process made
   * through the kernel. Returns the bytes read; at most 64 KiB move per call (a longer read is short).
   */
  async read(fd: number, target: ArrayBufferView | bigint, len?: number): Promise<number> {
    this.#assertRunning();
    fd = integer(fd, 'fd', 0, 0x7fffffff);
    const [bytes, valid] = this.#userBytes(target, len, PROT_WRITE);
    const want = Math.min(bytes.length, MAX_IO);
    const r = this.#call(Op.READ, [fd, want, Math.min(valid, want), typeof target === 'bigint' ? target : 0n], undefined, 'read');
    const n = Number(r.words[1]);
    bytes.set(r.bytes.subarray(0, Math.min(n, bytes.length)));
    return n;
  }

  /** write(2) from `source` (a typed array) or from [addr, addr + len) of a mapping made through the kernel. */
  async write(fd: number, source: ArrayBufferView | bigint, len?: number): Promise<number> {
    this.#assertRunning();
    fd = integer(fd, 'fd', 0, 0x7fffffff);
    const [bytes, valid] = this.#userBytes(source, len, PROT_READ);
    const want = Math.min(bytes.length, MAX_IO);
    const r = this.#call(Op.WRITE, [fd, want, typeof source === 'bigint' ? source : 0n], bytes.slice(0, Math.min(valid, want)), 'write');
    return Number(r.words[1]);
  }

  /**
   * ioctl(2). For a command that encodes a size (_IOC_SIZE) and a direction, `arg` is a Uint8Array of that
   * size: copied in for _IOC_WRITE, filled from the driver's for _IOC_READ. Otherwise `arg` is an integer.
   */
  async ioctl(fd: number, cmd: number, arg: Uint8Array | number | bigint = 0): Promise<void> {
    this.#assertRunning();
    fd = integer(fd, 'fd', 0, 0x7fffffff);
    cmd = integer(cmd, 'cmd', 0, 0xffffffff);
    const dir = iocDir(cmd);
    const size = dir === 0 ? 0 : iocSize(cmd);
    if (size > 0) {
      if (!(arg instanceof Uint8Array) || arg.length < size) throw typeError(`a Uint8Array of ${size} bytes (the size ioctl command 0x${cmd.toString(16)} encodes)`, 'arg', arg);
      const r = this.#call(Op.IOCTL, [fd, cmd, 0], dir & IOC_WRITE ? arg.slice(0, size) : undefined, 'ioctl');
      if (dir & IOC_READ) arg.set(r.bytes.subarray(0, size));
      return;
    }
    if (typeof arg !== 'number' && typeof arg !== 'bigint') throw typeError('an integer', 'arg', arg);
    if (typeof arg === 'number') integer(arg, 'arg', Number.MIN_SAFE_INTEGER);
    this.#call(Op.IOCTL, [fd, cmd, BigInt(arg)], undefined, 'ioctl');
  }

  /** mmap(2): real pages in this process at the returned address (inside this process's reservation). */
  async mmap(addr: bigint, len: number, prot: number, flags: number, fd: number, off: number): Promise<bigint> {
    this.#assertRunning();
    if (typeof addr !== 'bigint') throw typeError('a bigint', 'addr', addr);
    len = integer(len, 'len');
    prot = integer(prot, 'prot', 0, 0xffffffff);
    flags = integer(flags, 'flags', 0, 0xffffffff);
    fd = integer(fd, 'fd', -1, 0x7fffffff);
    off = integer(off, 'off');
    let hint = -1;
    if (flags & MAP_FIXED) {
      hint = this.#offsetOf(addr, len);
      if (hint < 0) throw systemError(-22, 'mmap');
    }
    const r = this.#call(Op.MMAP, [hint, len, prot, flags, fd, off], undefined, 'mmap', 2);
    return BigInt(this.#as.rawBase + Number(r.words[1]));
  }

  /** munmap(2) of [addr, addr + len) inside the reservation. */
  async munmap(addr: bigint, len: number): Promise<void> {
    this.#assertRunning();
    if (typeof addr !== 'bigint') throw typeError('a bigint', 'addr', addr);
    len = integer(len, 'len');
    const off = this.#offsetOf(addr, len);
    if (off < 0) throw systemError(-22, 'munmap');
    this.#call(Op.MUNMAP, [off, len], undefined, 'munmap', 1);
  }

  async mprotect(addr: bigint, len: number, prot: number): Promise<void> {
    this.#assertRunning();
    if (typeof addr !== 'bigint') throw typeError('a bigint', 'addr', addr);
    len = integer(len, 'len');
    prot = integer(prot, 'prot', 0, 0xffffffff);
    const off = this.#offsetOf(addr, len);
    if (off < 0) throw systemError(-22, 'mprotect');
    this.#call(Op.MPROTECT, [off, len, prot], undefined, 'mprotect', 1);
  }

  /** Refused: a Node process cannot fork. Programs that fork are clients through `devmap run`. */
  async fork(): Promise<never> {
    this.#assertRunning();
    throw new DevmapError('ERR_DEVMAP_REMOTE_FORK', 'A Node process cannot fork; run a C or Python program under `devmap run --kernel PATH` to exercise the fork path');
  }

  /** exit(2): the host unmaps everything (every driver sees its unmaps) and closes every descriptor. */
  async exit(): Promise<void> {
    if (this.#exited) return;
    try {
      this.#call(Op.EXIT, [0], undefined, 'exit');
    } finally {
      this.#teardown();
    }
  }

  /** The Mapping holding [addr, addr + len) (one mapping piece: a partial munmap splits them). */
  view(addr: bigint, len: number): ArrayBuffer {
    this.#assertRunning();
    if (typeof addr !== 'bigint') throw typeError('a bigint', 'addr', addr);
    len = integer(len, 'len', 1);
    const a = Number(addr);
    const p = this.#pieces.find((q) => q.addr <= a && a + len <= q.addr + q.len);
    if (!p) throw new DevmapError('ERR_DEVMAP_NOT_MAPPED', `Nothing mapped at [0x${a.toString(16)}, +${len}) in this process`);
    return p.mapping.view(a - p.addr, len);
  }

  /** The pieces this process has mapped through the kernel: [address, length, protection]. */
  mappings(): [address: bigint, length: number, prot: number][] {
    return this.#pieces.map((p) => [BigInt(p.addr), p.len, p.mapping.protection()]);
  }

  // --- internals -----------------------------------------------------------------------------------

  #offsetOf(addr: bigint, len: number): number {
    const a = Number(addr);
    if (addr < 0n || !this.#as.contains(a, len)) return -1;
    return a - this.#as.rawBase;
  }

  /** The bytes of a typed array, or a copy of the mapped bytes at a bigint address, and how many are reachable. */
  #userBytes(target: ArrayBufferView | bigint, len: number | undefined, need: number): [Uint8Array, number] {
    if (ArrayBuffer.isView(target)) return [new Uint8Array(target.buffer, target.byteOffset, target.byteLength), target.byteLength];
    if (typeof target !== 'bigint') throw typeError('a typed array or a bigint address', 'buffer', target);
    len = integer(len, 'len');
    const a = Number(target);
    const p = this.#pieces.find((q) => q.addr <= a && a < q.addr + q.len);
    if (!p || (p.mapping.protection(a - p.addr) & need) === 0) return [new Uint8Array(len), 0];
    const n = Math.min(len, p.addr + p.len - a);
    return [new Uint8Array(p.mapping.view(a - p.addr, n)), n];
  }

  /** Sends a request and waits for its reply; a reply carrying reservation changes is applied first. */
  #call(op: number, words: (number | bigint)[], bytes: Uint8Array | undefined, syscall: string, changesAt = -1, keepFds?: number[]): Frame {
    const n = native();
    const frame = encode(op, words, bytes);
    let sent = 0;
    while (sent < frame.length) {
      const rc = n.socket_send(this.#fd, frame.subarray(sent), null, false);
      if (rc < 0) throw this.#hostGone(rc);
      sent += rc;
    }
    const [reply, fds] = this.#receive();
    try {
      if (reply.op !== (op | REPLY)) throw new DevmapError('ERR_DEVMAP_PROTOCOL', `The host answered op ${reply.op} to op ${op}`);
      if (changesAt >= 0) this.#apply(reply, changesAt + 0, fds);
    } finally {
      if (keepFds) keepFds.push(...fds);
      else for (const fd of fds) n.close(fd);
    }
    const rc = Number(reply.words[0] ?? -5n);
    if (rc < 0) {
      const err = systemError(rc, syscall);
      const why = reply.bytes.length > 0 && op === Op.MMAP ? new TextDecoder().decode(reply.bytes) : '';
      if (why.startsWith('ERR_DEVMAP_')) {
        const code = why.slice(0, why.indexOf(':'));
        throw Object.assign(new DevmapError(code, why.slice(code.length + 2)), { errno: rc, syscall });
      }
      throw err;
    }
    return reply;
  }

  #receive(): [Frame, number[]] {
    const n = native();
    const fds: number[] = [];
    let have = 0;
    let size: number | null = null;
    try {
      while (size === null || have < size) {
        const rc = n.socket_recv(this.#fd, this.#recv.subarray(have), this.#fdsOut, false);
        for (let i = 0; i < this.#fdsOut[0]; i++) fds.push(this.#fdsOut[2 + i]);
        if (rc <= 0) throw this.#hostGone(rc);
        have += rc;
        if (size === null && have >= HEADER) size = frameSize(this.#recv, 0);
      }
      return [decode(this.#recv, 0, size), fds];
    } catch (err) {
      for (const fd of fds) n.close(fd);
      throw err;
    }
  }

  /** Applies the reservation changes listed in a reply from word `at` on. */
  #apply(reply: Frame, at: number, fds: number[]): void {
    const count = Number(reply.words[at] ?? 0n);
    if (!Number.isInteger(count) || count < 0 || reply.words.length < at + 1 + count * CHANGE_WORDS) {
      throw new DevmapError('ERR_DEVMAP_PROTOCOL', 'The host sent a malformed list of changes');
    }
    const as = this.#as;
    for (const c of decodeChanges(reply.words, at + 1, count)) {
      if (c.off < 0 || c.len <= 0 || c.off % pageSize !== 0 || !as.contains(as.rawBase + c.off, c.len)) {
        throw new DevmapError('ERR_DEVMAP_PROTOCOL', 'The host asked for a change outside the reservation');
      }
      const addr = as.rawBase + c.off;
      if (c.kind === Change.MAP) {
        const fd = c.fdIndex < 0 ? -1 : fds[c.fdIndex];
        if (fd === undefined) throw new DevmapError('ERR_DEVMAP_PROTOCOL', 'The host named a descriptor it did not send');
        this.#drop(addr, c.len);
        const piece = as.mapPiece(addr, c.len, c.prot & 7, c.type === MAP_SHARED ? MAP_SHARED : 2, fd, c.fileOff);
        if (typeof piece === 'number') throw systemError(-piece, 'mmap');
        let i = 0;
        while (i < this.#pieces.length && this.#pieces[i].addr < addr) i++;
        this.#pieces.splice(i, 0, piece);
      } else if (c.kind === Change.RESERVE) {
        this.#drop(addr, c.len);
      } else if (c.kind === Change.PROTECT) {
        for (const p of this.#pieces) {
          const from = Math.max(p.addr, addr);
          const to = Math.min(p.addr + p.len, addr + c.len);
          if (from < to) p.mapping.protect(c.prot & 7, from - p.addr, to - from);
        }
      } else if (c.kind === Change.REGISTER && this.#uffd >= 0) {
        // Its pages fault into the host from now on (they were just mapped, so none is loaded yet).
        const rc = native().uffd_register(this.#uffd, addr, c.len, c.type & (UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP));
        if (rc < 0) throw systemError(rc, 'ioctl(UFFDIO_REGISTER)');
      } else {
        throw new DevmapError('ERR_DEVMAP_PROTOCOL', `The host sent a change of unknown kind ${c.kind}`);
      }
    }
  }

  /** Unmaps (re-reserves) whatever this process mapped in [addr, addr + len); views there go stale (trash pages). */
  #drop(addr: number, len: number): void {
    const end = addr + len;
    const kept: Piece[] = [];
    let covered = 0;
    for (const p of this.#pieces) {
      const pEnd = p.addr + p.len;
      if (pEnd <= addr || p.addr >= end) {
        kept.push(p);
        continue;
      }
      const from = Math.max(p.addr, addr);
      const to = Math.min(pEnd, end);
      covered += to - from;
      for (const m of p.mapping.unmap(from - p.addr, to - from)) kept.push({ addr: m.rawAddress, len: m.length, mapping: m });
    }
    kept.sort((x, y) => x.addr - y.addr);
    this.#pieces = kept;
    if (covered < len) this.#as.rereserve(addr, len);
  }

  #hostGone(rc: number): Error {
    this.#teardown();
    return new DevmapError('ERR_DEVMAP_HOST_GONE', `The kernel host went away (${rc === 0 ? 'connection closed' : systemError(rc, 'socket').code})`);
  }

  #teardown(): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#stopFaults();
    native().close(this.#fd);
    for (const p of this.#pieces) if (p.mapping.mapped) p.mapping.unmap();
    this.#pieces = [];
    this.#as.destroy();
  }

  #assertRunning(): void {
    // The agent saw the host's end first (a thread of ours may have sat in a fault then): the calls stop here.
    if (!this.#exited && this.#agent >= 0 && native().agent_state(this.#agent) === 1) throw this.#hostGone(0);
    if (this.#exited) throw new DevmapError('ERR_DEVMAP_PROCESS_EXITED', `Process ${this.pid} has exited`);
  }
}

/**
 * Connects this process to the kernel host at `path` (kernel.listen() in another process) and returns it as a
 * process of that kernel.
 */
export function connectKernel(path: string): RemoteProcess {
  path = resolve(string(path, 'path'));
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    // connect() reports the missing socket
  }
  if (servedHere.has(path) || servedHere.has(real)) {
    throw new DevmapError('ERR_DEVMAP_SAME_PROCESS', `${path} is served by this very process: a client here would wait for itself; use kernel.spawn() for an in-process process`);
  }
  const n = native();
  const fd = n.socket_unix(false);
  if (fd < 0) throw systemError(fd, 'socket');
  try {
    const rc = n.socket_connect(fd, path);
    if (rc < 0) throw systemError(rc, 'connect', path);
    const hello = encode(Op.HELLO, [PROTOCOL_VERSION, process.pid]);
    if (n.socket_send(fd, hello, null, false) !== hello.length) throw new DevmapError('ERR_DEVMAP_HOST_GONE', 'The kernel host closed the connection');
    const buf = new Uint8Array(MAX_FRAME);
    const out = new Int32Array(2 + 64);
    let have = 0;
    let size: number | null = null;
    while (size === null || have < size) {
      const got = n.socket_recv(fd, buf.subarray(have), out, false);
      for (let i = 0; i < out[0]; i++) n.close(out[2 + i]);
      if (got <= 0) throw new DevmapError('ERR_DEVMAP_HOST_GONE', `The kernel host at ${path} refused this process (uid ${process.getuid?.()})`);
      have += got;
      if (size === null && have >= HEADER) size = frameSize(buf, 0);
    }
    const reply = decode(buf, 0, size);
    if (reply.op !== (Op.HELLO | REPLY) || reply.words[0] !== 0n) throw new DevmapError('ERR_DEVMAP_PROTOCOL', 'The kernel host refused the hello (protocol version?)');
    const proc = new RemoteProcess(fd, reply, connecting);
    proc.startFaults();
    return proc;
  } catch (err) {
    n.close(fd);
    throw err;
  }
}
