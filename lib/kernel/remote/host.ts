/*
 * The kernel host: a Kernel served to real OS processes over a Unix socket.
 *
 * Every accepted connection is a kernel Process whose credentials are the peer's (SO_PEERCRED): the uid and gid
 * the driver's open(9E) sees are the client's. The socket file is created 0600 (bound under a temporary name,
 * given its mode, then linked to its path exclusively), so only the host's uid can connect; SO_PEERCRED is
 * checked again at accept, and `allowUids` opens both doors to more users.
 *
 * A client's address space is the ordinary AddressSpace with a mirror (as.ts): the host's reservation holds the
 * real pages (so every segment driver, split and trim works unchanged), and each change there — an object
 * mapped at an offset, a range reserved again — is recorded and sent with the reply, with the descriptors it
 * needs, so that the client makes the same change at the same offset of its own reservation. Protection the
 * segment driver set after mapping is read back from the pages and sent too.
 *
 * Requests of one connection run one at a time, in order, on the host's event loop; connections run side by
 * side as processes do. The connection's end — exit(), a crash, SIGKILL, exec (the socket is close-on-exec) —
 * is the process's exit: every segment is unmapped through its driver, every descriptor closed. A request in
 * flight when the client dies runs to its end first, so a driver never sees a half-made call. close() ends
 * every connection the same way.
 *
 * A client is untrusted. Every word of a request is range-checked before use; a frame that breaks the protocol
 * (too big, malformed, an unknown op, a second hello) ends that connection only. A failing system call is an
 * errno in the reply. A client that does not read its replies is disconnected rather than buffered for.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmodSync, linkSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { DevmapError, options as readOptions, rangeError, string, systemError, typeError } from '../../errors';
import { F_DUPFD_CLOEXEC, PROT_READ, PROT_WRITE } from '../../memory/constants';
import { pageSize } from '../../memory/page';
import { native } from '../../native';
import type { AddressSpaceMirror } from '../as';
import { EINVAL, EIO, ENOTSUP } from '../errno';
import type { Kernel } from '../kernel';
import type { Process } from '../process';
import { FaultServer, type FaultClient, type FaultEvent } from './faults';
import {
  Change, MAX_IO, Op, PROTOCOL_VERSION, ProtocolError, REPLY, decode, encode, encodeChanges, frameSize, iocDir,
  iocSize, IOC_READ, IOC_WRITE, UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_WP, word, type Frame, type ReservationChange,
} from './protocol';

export interface ListenOptions {
  /** uids besides the host's own that may connect. The socket file is then 0666 and SO_PEERCRED decides. */
  allowUids?: readonly number[];
  /** listen(2) backlog. Default 128. */
  backlog?: number;
}

/** A connected client, as `host.clients` lists it. */
export interface ClientInfo {
  /** The kernel's pid for it. */
  pid: number;
  /** The OS process (SO_PEERCRED at connect; for a forked child, what it reported). */
  osPid: number;
  uid: number;
  gid: number;
}

/** The reason an exit event gives. */
export type ExitReason = 'exit' | 'disconnect' | 'protocol' | 'host-close';

const FALLOC_FL_KEEP_SIZE = 1;
const MAX_FORK_WAIT_MS = 10_000;
const listening = Symbol('devmap.listen');
const MAX_PATH = 4096;
/** Buffered, unprocessed request bytes beyond which a client is cut off (it does not wait for replies). */
const MAX_BUFFERED = 1024 * 1024;
/** Requests queued behind the one running beyond which a client is cut off: a process waits for its system call. */
const MAX_QUEUED = 64;

/** Paths served by hosts in this process: a client here would wait for itself (connectKernel refuses it). */
export const servedHere = new Set<string>();

export class KernelHost extends EventEmitter {
  readonly kernel: Kernel;
  readonly path: string;
  readonly #server: Server;
  readonly #allow: Set<number>;
  readonly #connections = new Set<Connection>();
  /** @internal Fork children waiting for their connection, by token. */
  readonly pending = new Map<bigint, { child: Process; parent: Connection; timer: NodeJS.Timeout }>();
  #closing: Promise<void> | null = null;

  /** @internal Use kernel.listen(). */
  constructor(kernel: Kernel, path: string, server: Server, allow: Set<number>, token?: symbol) {
    super();
    if (token !== listening) throw new DevmapError('ERR_DEVMAP_NOT_CONSTRUCTIBLE', 'KernelHost is not constructible; use kernel.listen(path)');
    this.kernel = kernel;
    this.path = path;
    this.#server = server;
    this.#allow = allow;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** The connected client processes. */
  get clients(): ClientInfo[] {
    const out: ClientInfo[] = [];
    for (const c of this.#connections) if (c.proc && !c.proc.exited) out.push(c.info());
    return out;
  }

  /** True once close() was called. */
  get closing(): boolean {
    return this.#closing !== null;
  }

  /**
   * Stops serving: no new connections; every connected process exits (its drivers see every unmap and close).
   * One whose memory holds a Mutex this thread locked stays, for kernel.shutdown() once it is unlocked.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // The server stops accepting at once; its callback waits for the connections, which end here.
      const stopped = new Promise<void>((done) => this.#server.close(() => done()));
      servedHere.delete(this.path);
      unlinkQuietly(this.path);
      await Promise.all([...this.#connections].map((c) => c.end('host-close')));
      for (const [token, p] of this.pending) await this.dropPending(token, p);
      await stopped;
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal */
  async dropPending(token: bigint, p: { child: Process; timer: NodeJS.Timeout }): Promise<void> {
    if (!this.pending.delete(token)) return;
    clearTimeout(p.timer);
    await p.child.exit();
  }

  /** @internal */
  forget(c: Connection): void {
    this.#connections.delete(c);
  }

  get closed(): boolean {
    return this.#closing !== null;
  }

  #accept(socket: Socket): void {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const cred = new Float64Array(3);
    if (this.#closing || typeof fd !== 'number' || fd < 0 || native().socket_peercred(fd, cred) !== 0) {
      socket.destroy();
      return;
    }
    const [osPid, uid, gid] = cred;
    if (!this.#allow.has(uid)) {
      this.emit('refused', { osPid, uid, gid });
      socket.destroy();
      return;
    }
    this.#connections.add(new Connection(this, socket, fd, { osPid, uid, gid }));
  }
}

/** Serves `kernel` on a new Unix socket at `path` (which must not exist). */
export async function listen(kernel: Kernel, path: string, opts?: ListenOptions): Promise<KernelHost> {
  path = resolve(string(path, 'path'));
  const o = readOptions<ListenOptions>(opts, 'options', ['allowUids', 'backlog']);
  const allow = new Set<number>([process.getuid?.() ?? 0]);
  if (o.allowUids !== undefined) {
    if (!Array.isArray(o.allowUids)) throw typeError('an array of uids', 'options.allowUids', o.allowUids);
    for (const u of [...o.allowUids]) {
      if (!Number.isInteger(u) || u < 0 || u > 0xfffffffe) throw rangeError('a uid', 'options.allowUids[]', u);
      allow.add(u);
    }
  }
  const backlog = o.backlog === undefined ? 128 : o.backlog;
  if (!Number.isInteger(backlog) || backlog < 1 || backlog > 65535) throw rangeError('an integer in 1..65535', 'options.backlog', backlog);
  const mode = allow.size > 1 ? 0o666 : 0o600;
  const fd = bindSocket(path, mode, backlog);
  const server = createServer({ allowHalfOpen: false, pauseOnConnect: false });
  try {
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen({ fd }, () => {
        server.off('error', fail);
        done();
      });
    });
  } catch (err) {
    native().close(fd);
    unlinkQuietly(path);
    throw err;
  }
  servedHere.add(path);
  return new KernelHost(kernel, path, server, allow, listening);
}

/** socket → bind (a temporary name) → chmod → listen → link to `path` (exclusive) → unlink the temporary. */
function bindSocket(path: string, mode: number, backlog: number): number {
  const n = native();
  const tmp = join(dirname(path), `.devmap-${process.pid}-${randomBytes(6).toString('hex')}.sock`);
  const fd = n.socket_unix(true);
  if (fd < 0) throw systemError(fd, 'socket');
  try {
    let rc = n.socket_bind(fd, tmp);
    if (rc < 0) throw systemError(rc, 'bind', tmp);
    try {
      chmodSync(tmp, mode);
      rc = n.socket_listen(fd, backlog);
      if (rc < 0) throw systemError(rc, 'listen', tmp);
      linkSync(tmp, path);
    } finally {
      unlinkQuietly(tmp);
    }
    return fd;
  } catch (err) {
    n.close(fd);
    throw err;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** The errno a failed system call of the kernel gives, for the reply. */
function errnoOf(err: unknown): number {
  const e = (err as { errno?: unknown }).errno;
  if (typeof e === 'number' && Number.isInteger(e) && e !== 0) return Math.abs(e);
  if (err instanceof TypeError || err instanceof RangeError) return EINVAL;
  return EIO;
}

/** One client connection: one kernel Process, its requests in order, its reservation's changes. */
class Connection implements AddressSpaceMirror, FaultClient {
  readonly #host: KernelHost;
  readonly #socket: Socket;
  readonly #fd: number;
  readonly #cred: { osPid: number; uid: number; gid: number };
  proc: Process | null = null;
  #buffered: Uint8Array = new Uint8Array(0);
  #queue: Promise<void> = Promise.resolve();
  #queued = 0;
  #ended: Promise<void> | null = null;
  /** Changes of the reservation not yet sent, and the descriptors they need (duplicates, closed after). */
  #changes: ReservationChange[] = [];
  #fds: number[] = [];
  #fdIndex = new Map<number, number>();
  /** Real faults (faults.ts): the host's end of the agent socket until the FAULTS request, then the server. */
  #agentSock = -1;
  #faults: FaultServer | null = null;
  #noFaults = 'the client set up no userfaultfd';
  /** '' when the client's uffd has write-protect mode (DEVMAP_WRITE_FAULTS drivers), else why not. */
  #noWriteFaults = 'the client set up no userfaultfd';

  constructor(host: KernelHost, socket: Socket, fd: number, cred: { osPid: number; uid: number; gid: number }) {
    this.#host = host;
    this.#socket = socket;
    this.#fd = fd;
    this.#cred = cred;
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => void this.end('disconnect'));
  }

  info(): ClientInfo {
    return { pid: this.proc!.pid, osPid: this.#cred.osPid, uid: this.#cred.uid, gid: this.#cred.gid };
  }

  // --- AddressSpaceMirror ------------------------------------------------------------------------------

  mapped(off: number, len: number, prot: number, type: number, fd: number, fileOff: number): void {
    let fdIndex = -1;
    if (fd >= 0) {
      const known = this.#fdIndex.get(fd);
      if (known !== undefined) fdIndex = known;
      else {
        // A duplicate: the object must still be there when the reply goes, whatever the driver closes meanwhile.
        const dup = native().fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0) throw systemError(dup, 'fcntl');
        fdIndex = this.#fds.push(dup) - 1;
        this.#fdIndex.set(fd, fdIndex);
      }
    }
    this.#changes.push({ kind: Change.MAP, off, len, prot, type, fdIndex, fileOff });
  }

  reserved(off: number, len: number): void {
    this.#changes.push({ kind: Change.RESERVE, off, len, prot: 0, type: 0, fdIndex: -1, fileOff: 0 });
  }

  loaded(off: number, len: number, wp?: 'protect' | 'unprotect'): void {
    this.#faults?.loaded(off, len, wp);
  }

  unloaded(off: number, len: number): void {
    this.#faults?.unloaded(off, len);
  }

  // --- FaultClient ---------------------------------------------------------------------------------------

  enqueue(job: () => Promise<void>): void {
    if (this.#ended) return;
    this.#queue = this.#queue.then(job).catch((err) => void this.#host.emit('error', err));
  }

  report(event: FaultEvent): void {
    if (this.#host.listenerCount('fault') > 0) this.#host.emit('fault', event);
    if (event.signal) {
      this.#host.kernel.emit('entry', {
        entry: event.signal, driver: 'fault', pid: event.pid, args: [event.off, event.rw], result: event.result, durationNs: 0,
      });
    }
  }

  lost(why: string): void {
    this.#protocolError(new ProtocolError(why));
  }

  // --- the connection's life ---------------------------------------------------------------------------

  /**
   * Ends the connection and runs the exit path once (after the request in flight, if any). Never rejects: it
   * runs from socket events (`void this.end(…)`), where a rejection would end the host; what fails is a warning.
   */
  end(reason: 'exit' | 'disconnect' | 'protocol' | 'host-close'): Promise<void> {
    this.#ended ??= (async () => {
      this.#socket.destroy();
      await this.#queue;
      this.#faults?.close();
      if (this.#agentSock >= 0 && !this.#faults) native().close(this.#agentSock);
      this.#faults = null;
      this.#agentSock = -1;
      const proc = this.proc;
      if (proc) {
        proc.as.mirror = null;
        // The client is gone: its exit waits for an unlock. Closing the host does not wait (a held Mutex in
        // the client's memory leaves the process to kernel.shutdown(), which refuses until the unlock).
        if (reason === 'host-close') await proc.exit();
        else await exitOnceUnlocked(proc, () => this.#host.closing);
      }
      this.#dropFds();
      for (const [token, p] of this.#host.pending) if (p.parent === this) await this.#host.dropPending(token, p);
      this.#host.forget(this);
      if (proc) this.#host.emit('exit', { ...this.info(), reason });
    })().catch((err: unknown) => {
      process.emitWarning(`devmap: ending client ${this.proc?.pid ?? '?'} failed: ${(err as Error)?.message ?? String(err)}`, 'DevmapWarning');
    });
    return this.#ended;
  }

  #receive(chunk: Buffer): void {
    if (this.#ended) return;
    const all = new Uint8Array(this.#buffered.length + chunk.length);
    all.set(this.#buffered);
    all.set(chunk, this.#buffered.length);
    let at = 0;
    try {
      for (;;) {
        const size = frameSize(all, at);
        if (size === null || all.length - at < size) break;
        const frame = decode(all, at, size);
        at += size;
        if (++this.#queued > MAX_QUEUED) throw new ProtocolError('client does not wait for its replies');
        this.#queue = this.#queue.then(() => this.#serve(frame)).finally(() => void this.#queued--);
      }
    } catch (err) {
      this.#protocolError(err);
      return;
    }
    this.#buffered = all.slice(at);
    if (this.#buffered.length > MAX_BUFFERED) this.#protocolError(new ProtocolError('client does not wait for its replies'));
  }

  #protocolError(err: unknown): void {
    this.#host.emit('protocol-error', { osPid: this.#cred.osPid, pid: this.proc?.pid ?? null, error: err });
    void this.end('protocol');
  }

  async #serve(f: Frame): Promise<void> {
    if (this.#ended) return;
    try {
      if (this.proc === null) {
        if (f.op === Op.HELLO) return this.#hello(f);
        if (f.op === Op.ADOPT) return await this.#adopt(f);
        throw new ProtocolError(`op ${f.op} before hello`);
      }
      if (this.proc.exited) throw new ProtocolError('request after exit');
      switch (f.op) {
        case Op.OPEN: return await this.#open(f);
        case Op.CLOSE: {
          const fd = word(f, 0, 'fd', 0, 0x7fffffff);
          return await this.#call(f, () => this.proc!.close(fd));
        }
        case Op.READ: return await this.#read(f);
        case Op.WRITE: return await this.#write(f);
        case Op.IOCTL: return await this.#ioctl(f);
        case Op.MMAP: return await this.#mmap(f);
        case Op.MUNMAP: return await this.#munmap(f);
        case Op.MPROTECT: return await this.#mprotect(f);
        case Op.FORK: return await this.#fork(f);
        case Op.EXIT: return await this.#exit(f);
        case Op.AGENT: return this.#agent(f);
        case Op.FAULTS: return this.#startFaults(f);
        case Op.PREFAULT: return await this.#prefault(f);
        default: throw new ProtocolError(`unknown op ${f.op}`);
      }
    } catch (err) {
      if (err instanceof ProtocolError) this.#protocolError(err);
      else this.#host.emit('error', err); // a defect of the host itself: surfaced, the connection goes on
    }
  }

  /** Sends a reply with the pending reservation changes (when `withChanges`) and their descriptors. */
  #reply(f: Frame, words: (number | bigint)[], bytes?: Uint8Array, withChanges = false): void {
    let fds: Int32Array | null = null;
    if (withChanges) {
      words.push(this.#changes.length, ...encodeChanges(this.#changes));
      if (this.#fds.length > 0) fds = Int32Array.from(this.#fds);
      this.#changes = [];
    }
    const frame = encode(f.op | REPLY, words, bytes);
    const rc = this.#ended ? -1 : native().socket_send(this.#fd, frame, fds, true);
    if (withChanges) this.#dropFds();
    // A reply that does not fit at once: the client is not waiting for it (it pipelines); cut it off.
    if (rc >= 0 && rc < frame.length) this.#protocolError(new ProtocolError('client does not read its replies'));
  }

  #dropFds(): void {
    for (const fd of this.#fds) native().close(fd);
    this.#fds = [];
    this.#fdIndex.clear();
  }

  async #call(f: Frame, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
      this.#reply(f, [0]);
    } catch (err) {
      this.#reply(f, [-errnoOf(err)]);
    }
  }

  #welcome(f: Frame, proc: Process): void {
    proc.cred.uid = this.#cred.uid;
    proc.cred.gid = this.#cred.gid;
    proc.as.mirror = this;
    this.proc = proc;
    const paths = new TextEncoder().encode(this.#host.kernel.nodePaths().join('\0'));
    this.#reply(f, [0, proc.pid, proc.as.size, MAX_IO, pageSize], paths);
    this.#host.emit('connect', this.info());
  }

  #hello(f: Frame): void {
    const version = word(f, 0, 'version', 0, 0xffff);
    if (version !== PROTOCOL_VERSION) {
      this.#reply(f, [-EINVAL]);
      throw new ProtocolError(`protocol version ${version}; this host speaks ${PROTOCOL_VERSION}`);
    }
    if (this.#host.closed) throw new ProtocolError('host is closing');
    this.#welcome(f, this.#host.kernel.spawn());
  }

  async #adopt(f: Frame): Promise<void> {
    const token = f.words[0];
    const pending = token === undefined ? undefined : this.#host.pending.get(token);
    if (!pending || pending.parent.#cred.uid !== this.#cred.uid) throw new ProtocolError('adopt with an unknown token');
    this.#host.pending.delete(token!);
    clearTimeout(pending.timer);
    const osPid = word(f, 1, 'pid', 0, 0x7fffffff);
    if (osPid > 0) this.#cred.osPid = osPid;
    this.#welcome(f, pending.child);
  }

  async #open(f: Frame): Promise<void> {
    const oflag = word(f, 0, 'oflag', 0, 0x7fffffff);
    if (f.bytes.length === 0 || f.bytes.length > MAX_PATH) return this.#reply(f, [-EINVAL]);
    const path = new TextDecoder('utf-8', { fatal: false }).decode(f.bytes);
    try {
      // The access mode alone: O_CREAT, O_CLOEXEC and the rest are the client's business.
      const fd = await this.proc!.open(path, oflag & 3);
      this.#reply(f, [0, fd]);
    } catch (err) {
      this.#reply(f, [-errnoOf(err)]);
    }
  }

  async #read(f: Frame): Promise<void> {
    const fd = word(f, 0, 'fd', 0, 0x7fffffff);
    const len = Math.min(word(f, 1, 'len', 0, Number.MAX_SAFE_INTEGER), MAX_IO);
    const valid = Math.min(word(f, 2, 'valid', 0, Number.MAX_SAFE_INTEGER), len);
    const addr = f.words[3] ?? 0n;
    const copy = { bytes: new Uint8Array(len), valid };
    try {
      const n = await this.proc!.read(fd, addr, len, copy);
      this.#reply(f, [0, n], copy.bytes.subarray(0, n));
    } catch (err) {
      this.#reply(f, [-errnoOf(err), 0]);
    }
  }

  async #write(f: Frame): Promise<void> {
    const fd = word(f, 0, 'fd', 0, 0x7fffffff);
    const len = Math.min(word(f, 1, 'len', 0, Number.MAX_SAFE_INTEGER), MAX_IO);
    if (f.bytes.length > len) throw new ProtocolError('write carries more bytes than its length');
    const bytes = new Uint8Array(len);
    bytes.set(f.bytes);
    try {
      const n = await this.proc!.write(fd, f.words[2] ?? 0n, len, { bytes, valid: f.bytes.length });
      this.#reply(f, [0, n]);
    } catch (err) {
      this.#reply(f, [-errnoOf(err), 0]);
    }
  }

  async #ioctl(f: Frame): Promise<void> {
    const fd = word(f, 0, 'fd', 0, 0x7fffffff);
    const cmd = word(f, 1, 'cmd', 0, 0xffffffff);
    const dir = iocDir(cmd);
    const size = dir === 0 ? 0 : iocSize(cmd);
    // The argument the driver gets: the bytes _IOC_SIZE names (copied in for _IOC_WRITE), else the integer.
    let arg: unknown;
    if (size > 0) {
      if (f.bytes.length !== (dir & IOC_WRITE ? size : 0)) throw new ProtocolError('ioctl bytes do not match the command size');
      const buf = new Uint8Array(size);
      buf.set(f.bytes);
      arg = buf;
    } else {
      const w = f.words[2] ?? 0n;
      arg = w >= BigInt(Number.MIN_SAFE_INTEGER) && w <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(w) : w;
    }
    try {
      await this.proc!.ioctl(fd, cmd, arg);
      this.#reply(f, [0], size > 0 && dir & IOC_READ ? (arg as Uint8Array) : undefined);
    } catch (err) {
      this.#reply(f, [-errnoOf(err)]);
    }
  }

  async #mmap(f: Frame): Promise<void> {
    const proc = this.proc!;
    const size = proc.as.size;
    // Lengths and offsets only need to be integers here: the system call judges them (EINVAL, ENOMEM).
    const hint = word(f, 0, 'addr', -1, size);
    const len = word(f, 1, 'len', 0, Number.MAX_SAFE_INTEGER);
    const prot = word(f, 2, 'prot', 0, 0xffffffff);
    const flags = word(f, 3, 'flags', 0, 0xffffffff);
    const fd = word(f, 4, 'fd', -1, 0x7fffffff);
    const off = word(f, 5, 'off', 0, Number.MAX_SAFE_INTEGER);
    let at: bigint;
    try {
      at = await proc.mmap(BigInt(hint < 0 ? 0 : proc.as.rawBase + hint), len, prot, flags, fd, off);
    } catch (err) {
      return this.#reply(f, [-errnoOf(err), 0], undefined, true);
    }
    const addr = Number(at);
    const length = Math.ceil(len / pageSize) * pageSize;
    const seg = proc.as.segmentAt(addr);
    if (seg && seg.ops.needsFaults?.(seg)) {
      if (!this.#faults) {
        // Its pages must fault into devmap_access, and this client has no userfaultfd (SPEC A.9).
        await proc.munmap(at, length).catch(() => undefined);
        const why = `ERR_DEVMAP_NO_USERFAULTFD: this driver has a devmap_access entry point, so its pages must fault into ` +
          `the host, and ${this.#noFaults}`;
        return this.#reply(f, [-ENOTSUP, 0], new TextEncoder().encode(why), true);
      }
      if (this.#noWriteFaults && seg.ops.needsWriteFaults?.(seg)) {
        await proc.munmap(at, length).catch(() => undefined);
        const why = `ERR_DEVMAP_NO_WRITE_FAULTS: this driver set up its mapping with DEVMAP_WRITE_FAULTS, so writes to its ` +
          `pages loaded for reading must fault into the host, and ${this.#noWriteFaults}`;
        return this.#reply(f, [-ENOTSUP, 0], new TextEncoder().encode(why), true);
      }
      this.#faultServed(addr, length);
    } else {
      this.#settle(addr, length);
    }
    this.#reply(f, [0, addr - proc.as.rawBase], undefined, true);
  }

  async #munmap(f: Frame): Promise<void> {
    const proc = this.proc!;
    const off = word(f, 0, 'addr', 0, proc.as.size);
    const len = word(f, 1, 'len', 0, Number.MAX_SAFE_INTEGER);
    try {
      await proc.munmap(BigInt(proc.as.rawBase + off), len);
      this.#reply(f, [0], undefined, true);
    } catch (err) {
      this.#reply(f, [-errnoOf(err)], undefined, true);
    }
  }

  async #mprotect(f: Frame): Promise<void> {
    const proc = this.proc!;
    const off = word(f, 0, 'addr', 0, proc.as.size);
    const len = word(f, 1, 'len', 0, Number.MAX_SAFE_INTEGER);
    const prot = word(f, 2, 'prot', 0, 0xffffffff);
    try {
      await proc.mprotect(BigInt(proc.as.rawBase + off), len, prot);
      this.#settle(proc.as.rawBase + off, Math.min(Math.ceil(len / pageSize) * pageSize, proc.as.size - off));
      this.#reply(f, [0], undefined, true);
    } catch (err) {
      this.#reply(f, [-errnoOf(err)], undefined, true);
    }
  }

  /**
   * The pending changes of a mapping whose faults the host serves: its pages are mapped in the client with
   * their maximal protection (seg_dev loads translations so) and registered with the client's uffd.
   */
  #faultServed(addr: number, len: number): void {
    const as = this.proc!.as;
    const seg = as.segmentAt(addr)!;
    const off = addr - as.rawBase;
    for (const c of this.#changes) {
      if (c.kind !== Change.MAP || c.off < off || c.off + c.len > off + len) continue;
      c.prot = seg.ops.clientProt!(seg, as.rawBase + c.off);
      // A minor fault needs the page in the page cache: a sparse object's holes would load silently instead.
      if (c.fdIndex >= 0) native().fallocate(this.#fds[c.fdIndex], FALLOC_FL_KEEP_SIZE, c.fileOff, c.len);
    }
    // A driver that asked to see write faults gets write-protect mode too: a page loaded for reading is mapped
    // write-protected (UFFDIO_CONTINUE_MODE_WP), and a write to it is a fault.
    const type = UFFDIO_REGISTER_MODE_MINOR | (seg.ops.needsWriteFaults?.(seg) ? UFFDIO_REGISTER_MODE_WP : 0);
    this.#changes.push({ kind: Change.REGISTER, off, len, prot: 0, type, fdIndex: -1, fileOff: 0 });
  }

  /** AGENT: a socket pair for the client's agent; the client gets its end with the reply. */
  #agent(f: Frame): void {
    if (this.#agentSock >= 0) throw new ProtocolError('a second agent request');
    const pair = native().socket_pair();
    if (typeof pair === 'number') return this.#reply(f, [pair]);
    this.#agentSock = pair[0];
    const frame = encode(f.op | REPLY, [0]);
    native().socket_send(this.#fd, frame, Int32Array.of(pair[1]), true);
    native().close(pair[1]);
  }

  /** FAULTS: the client's uffd came with its agent hello; serve it. Or the client says why it has none. */
  #startFaults(f: Frame): void {
    if (this.#faults) throw new ProtocolError('a second faults request');
    const status = word(f, 0, 'status', -4095, 0);
    if (status < 0 || this.#agentSock < 0) {
      const why = new TextDecoder('utf-8', { fatal: false }).decode(f.bytes.subarray(0, 1024));
      this.#noFaults = `the client has no userfaultfd: ${why || `errno ${-status}`}`;
      return this.#reply(f, [0], undefined, true);
    }
    const server = FaultServer.accept(this, this.#agentSock);
    if (typeof server === 'string') {
      this.#noFaults = server;
      return this.#reply(f, [-EINVAL], undefined, true);
    }
    this.#faults = server;
    const wp = f.words.length > 1 ? word(f, 1, 'wp', -4095, 0) : -ENOTSUP;
    this.#noWriteFaults = wp === 0 ? '' : new TextDecoder('utf-8', { fatal: false }).decode(f.bytes.subarray(0, 1024)) || 'the client\'s userfaultfd has no write-protect mode';
    // A forked child's mappings came with the real fork: they register now and start unloaded (SPEC A.5).
    const as = this.proc!.as;
    for (const seg of as.segments) if (seg.ops.needsFaults?.(seg)) this.#faultServed(seg.base, seg.len);
    this.#reply(f, [0], undefined, true);
  }

  /** PREFAULT: [off, len, write] faulted in as a touch would, before the client hands them to a system call. */
  async #prefault(f: Frame): Promise<void> {
    const as = this.proc!.as;
    const off = word(f, 0, 'off', 0, as.size - 1);
    const len = word(f, 1, 'len', 1, as.size - off);
    const rw = word(f, 2, 'write', 0, 1) === 1 ? 'write' : 'read';
    const rc = this.#faults ? await this.#faults.prefault(off, len, rw) : 0;
    this.#reply(f, [rc === 0 ? 0 : -rc]);
  }

  /**
   * Adds a protection change for each run of pages in [addr, addr + len) whose real protection here is not
   * what the changes already listed give them (a segment driver may protect pages after mapping them).
   */
  #settle(addr: number, len: number): void {
    const as = this.proc!.as;
    const base = as.rawBase;
    const listed = (page: number, prot: number) => {
      for (let i = this.#changes.length - 1; i >= 0; i--) {
        const c = this.#changes[i];
        if (page >= c.off && page < c.off + c.len) return c.kind !== Change.RESERVE && c.prot === prot;
      }
      return false;
    };
    let run: { off: number; len: number; prot: number } | null = null;
    const flush = () => {
      if (run) this.#changes.push({ kind: Change.PROTECT, off: run.off, len: run.len, prot: run.prot, type: 0, fdIndex: -1, fileOff: 0 });
      run = null;
    };
    for (const seg of as.overlapping(addr, len)) {
      const served = this.#faults !== null && seg.ops.needsFaults?.(seg) === true;
      for (const p of seg.pieces) {
        const from = Math.max(p.addr, addr);
        const to = Math.min(p.addr + p.len, addr + len);
        for (let a = from; a < to; a += pageSize) {
          const prot = served ? seg.ops.clientProt!(seg, a) : p.mapping.protection(a - p.addr) & (PROT_READ | PROT_WRITE | 4);
          if (listed(a - base, prot)) {
            flush();
            continue;
          }
          if (run && run.prot === prot && run.off + run.len === a - base) run.len += pageSize;
          else {
            flush();
            run = { off: a - base, len: pageSize, prot };
          }
        }
        flush();
      }
    }
  }

  async #fork(f: Frame): Promise<void> {
    const proc = this.proc!;
    let child: Process;
    try {
      child = await proc.fork();
    } catch (err) {
      return this.#reply(f, [-errnoOf(err), 0, 0]);
    }
    const token = randomBytes(8).readBigInt64LE(0);
    const timer = setTimeout(() => void this.#host.dropPending(token, { child, timer }), MAX_FORK_WAIT_MS);
    timer.unref();
    this.#host.pending.set(token, { child, parent: this, timer });
    this.#reply(f, [0, token, child.pid]);
  }

  async #exit(f: Frame): Promise<void> {
    const proc = this.proc!;
    proc.as.mirror = null;
    await proc.exit();
    this.#reply(f, [0]);
    void this.end('exit');
  }
}

/**
 * A client's exit: the process is gone, so its exit path must run, but not while this thread holds a Mutex in
 * its memory (exit() refuses then: the Mutex's words are on the thread's robust list). It waits for the unlock,
 * looking every 50 ms, until the host closes; the pages stay mapped until then.
 */
async function exitOnceUnlocked(proc: Process, closing: () => boolean): Promise<void> {
  for (;;) {
    try {
      return await proc.exit();
    } catch (err) {
      // (Once the host closes, it stops waiting: the process is left to kernel.shutdown().)
      if ((err as { code?: unknown }).code !== 'ERR_DEVMAP_BUSY' || closing()) throw err;
      await new Promise((r) => setTimeout(r, 50).unref()); // (a held Mutex alone does not keep Node alive)
    }
  }
}
