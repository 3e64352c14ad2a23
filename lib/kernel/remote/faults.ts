/*
 * Real faults of a client process, served by the kernel host (SPEC A.9).
 *
 * A client process maps a devmap device whose driver has a devmap_access entry point: its pages must fault into
 * the driver, as seg_dev's do. The client maps the object with its maximal protection and registers the range
 * with a userfaultfd in minor-fault mode, a uffd it made (a uffd belongs to the address space that made it) and
 * handed to the host with its agent hello. A touch of a page that has no translation in the client stops the
 * touching thread and queues a page-fault event on the uffd; the host, whose event loop watches the uffd, runs
 * the segment's fault for that page with the direction the event gives (write when the flags say so) —
 * devmap_access(dhp, pvtp, off, len, DEVMAP_ACCESS, rw) and whatever the driver does in it, devmap_load,
 * devmap_default_access, devmap_do_ctxmgt — and every devmap_load for this process is UFFDIO_CONTINUE over the
 * client's pages: the page-cache page that already holds the bytes is mapped and the thread runs on.
 *
 * What always holds:
 *  - The host's own address space for the client stays the authority: its per-page translation state is what
 *    the framework believes, and the client's page tables follow it — a load is a CONTINUE, an unload is the
 *    agent's MADV_DONTNEED, acknowledged before devmap_unload returns (Linux lets no process zap another's page
 *    tables). The client's range stays registered, so the next touch after an unload is a minor fault again.
 *  - A fault is served on the connection's queue, after the request in flight: a driver never sees a fault in
 *    the middle of that process's mmap or munmap, and a client that dies mid-fault has its exit run after the
 *    fault's entry points return (the CONTINUE into a dead address space fails quietly).
 *  - A refused fault (devmap_access or devmap_contextmgt returned non-zero, no segment, a protection fault) is
 *    what illumos gives: a signal at the access. The agent makes the page PROT_NONE and wakes the thread, whose
 *    retried access is then a real SIGSEGV at that address; the host reports it ('fault' event, and the
 *    kernel's entry trace).
 *
 * Write faults (a DEVMAP_WRITE_FAULTS driver; the range is registered in write-protect mode too): a devmap_load
 * for reading is UFFDIO_CONTINUE_MODE_WP, so the page is mapped write-protected and the client's first write to
 * it is a write-protect fault, served as devmap_access(..., DEVMAP_ACCESS, DEVMAP_WRITE); a devmap_load for
 * writing clears the protection (UFFDIO_WRITEPROTECT, which wakes the writer) before it CONTINUEs the pages
 * not mapped yet. A kernel without UFFDIO_CONTINUE_MODE_WP (before 6.4) answers EINVAL: the pages are then
 * CONTINUEd without waking, write-protected, and woken.
 *
 * The cases of UFFDIO_CONTINUE: success wakes the waiters of the range; EEXIST means a page of the range is
 * mapped already (two threads faulted on one page, or the driver loaded more than the fault) — the page is
 * skipped and its waiters woken, since the kernel wakes nobody then; EAGAIN means the address space is
 * changing under a non-cooperative event, and the call is made again on a later turn of the event loop; any
 * other error means the range or the process is gone.
 */
import { readlinkSync } from 'node:fs';
import { EAGAIN, EEXIST, EFAULT, EINVAL } from '../errno';
import { F_GETFL } from '../../memory/constants';
import { pageSize } from '../../memory/page';
import { native } from '../../native';
import type { Rw, Segment } from '../as';
import type { Process } from '../process';
import { DM_AGENT_HELLO, DM_AGENT_REFUSE, DM_AGENT_UNLOAD, decodeAgentMsg, AGENT_MSG } from './agent';

const O_NONBLOCK = 0o4000;
const UFFD_EVENT_PAGEFAULT = 0x12;
const UFFD_PAGEFAULT_FLAG_WRITE = 1;
const UFFD_PAGEFAULT_FLAG_WP = 2;
const UFFDIO_CONTINUE_MODE_DONTWAKE = 1;
const UFFDIO_CONTINUE_MODE_WP = 2;
const UFFDIO_WRITEPROTECT_MODE_WP = 1;
/** How long the host waits for an agent's acknowledgement before it gives the client up. */
const AGENT_TIMEOUT_MS = 5000;
const MAX_EAGAIN_RETRIES = 1000;

/** True for a userfaultfd that does not block (what a client's hello must carry). */
function isUserfaultfd(fd: number): boolean {
  let target = '';
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return false;
  }
  return target === 'anon_inode:[userfaultfd]' && (native().fcntl(fd, F_GETFL, 0) & O_NONBLOCK) !== 0;
}

/** What the fault server needs of its connection. */
export interface FaultClient {
  readonly proc: Process | null;
  /** Runs `job` after the connection's requests in flight (and before later ones). */
  enqueue(job: () => Promise<void>): void;
  /** A 'fault' event of the host. */
  report(event: FaultEvent): void;
  /** The client does not answer its agent socket: the connection ends. */
  lost(why: string): void;
}

export interface FaultEvent {
  pid: number;
  /** Offset of the faulting page in the reservation. */
  off: number;
  rw: Rw;
  /** 0, or the errno the fault was refused with. */
  result: number;
  /** The signal the client got for a refused fault. */
  signal?: 'SIGSEGV';
}

export class FaultServer {
  readonly #client: FaultClient;
  readonly #uffd: number;
  readonly #agent: number;
  readonly #base: number;
  readonly #size: number;
  readonly #events = new Float64Array(64 * 4);
  #watch: object | null = null;
  #closed = false;
  /** The page being served, and whether a devmap_load of this process covered it (then no extra CONTINUE). */
  #serving = -1;
  #served = false;
  /** False once the kernel refused UFFDIO_CONTINUE_MODE_WP (before Linux 6.4). */
  #continueWp = true;

  /**
   * Reads the client's agent hello from the host's end of the agent socket (it arrived before the FAULTS
   * request that asks for this) and starts serving its uffd. Returns a reason string when there is none.
   */
  static accept(client: FaultClient, agentSock: number): FaultServer | string {
    const n = native();
    const buf = new Uint8Array(AGENT_MSG);
    const out = new Int32Array(2 + 4);
    const got = n.socket_recv(agentSock, buf, out, true);
    const fds = Array.from(out.subarray(2, 2 + out[0]));
    const msg = got === AGENT_MSG ? decodeAgentMsg(buf) : null;
    const size = client.proc!.as.size;
    // The client is untrusted: the descriptor must be a userfaultfd (a blocking pipe would stall this event loop).
    if (!msg || msg.op !== DM_AGENT_HELLO || fds.length !== 1 || msg.b !== size || msg.a <= 0 || msg.a % pageSize !== 0 || !isUserfaultfd(fds[0])) {
      for (const fd of fds) n.close(fd);
      return 'the client sent no valid agent hello with its userfaultfd';
    }
    return new FaultServer(client, fds[0], agentSock, msg.a, size);
  }

  private constructor(client: FaultClient, uffd: number, agent: number, base: number, size: number) {
    this.#client = client;
    this.#uffd = uffd;
    this.#agent = agent;
    this.#base = base;
    this.#size = size;
    const watch = native().fd_watch(uffd, () => this.#readable());
    if (typeof watch === 'number') throw new Error(`uv_poll_init on a userfaultfd failed (${watch})`);
    this.#watch = watch;
    // The uffd alone does not keep the host alive: its server and connections do.
    native().fd_ref(watch, false);
  }

  /**
   * devmap_load for this process: maps [off, off + len) in the client (UFFDIO_CONTINUE); `wp` for a
   * DEVMAP_WRITE_FAULTS handle: 'protect' maps them write-protected, 'unprotect' makes them writable.
   */
  loaded(off: number, len: number, wp?: 'protect' | 'unprotect'): void {
    if (this.#closed) return;
    if (this.#serving >= off && this.#serving < off + len) this.#served = true;
    this.#map(off, len, wp);
  }

  #map(off: number, len: number, wp?: 'protect' | 'unprotect'): void {
    // Pages mapped write-protected already become writable (and their writers wake) before the others map.
    if (wp === 'unprotect') native().uffd_writeprotect(this.#uffd, this.#base + off, len, 0);
    this.#continue(off, len, 0, wp === 'protect' ? UFFDIO_CONTINUE_MODE_WP : 0);
  }

  /** devmap_unload for this process: the agent drops the pages and acknowledges before this returns. */
  unloaded(off: number, len: number): void {
    if (this.#closed) return;
    const rc = native().agent_call(this.#agent, DM_AGENT_UNLOAD, off, len, AGENT_TIMEOUT_MS);
    if (rc === -110) this.#client.lost('the client did not acknowledge devmap_unload in time'); // ETIMEDOUT
  }

  /** Faults [off, off + len) in as a touch would (for a buffer a system call is about to be given). errno or 0. */
  async prefault(off: number, len: number, rw: Rw): Promise<number> {
    const as = this.#client.proc!.as;
    const seg = as.segmentAt(as.rawBase + off);
    if (!seg) return EFAULT;
    len = Math.min(len, seg.end - as.rawBase - off); // past the segment the copy itself stops with EFAULT
    const rc = await seg.ops.fault(seg, as.rawBase + off, len, rw);
    if (rc === 0) this.#map(Math.floor(off / pageSize) * pageSize, Math.ceil((off % pageSize + len) / pageSize) * pageSize, this.#wpFor(seg, rw));
    return rc;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const n = native();
    if (this.#watch) n.fd_unwatch(this.#watch);
    this.#watch = null;
    n.close(this.#uffd);
    n.close(this.#agent);
  }

  #readable(): void {
    const n = native();
    while (!this.#closed) {
      const count = n.uffd_read(this.#uffd, this.#events);
      if (count <= 0) return; // -EAGAIN: drained
      for (let i = 0; i < count; i++) {
        if (this.#events[i * 4] !== UFFD_EVENT_PAGEFAULT) continue;
        const flags = this.#events[i * 4 + 1];
        const addr = this.#events[i * 4 + 2];
        this.#client.enqueue(() => this.#serve(addr, flags));
      }
    }
  }

  async #serve(addr: number, flags: number): Promise<void> {
    if (this.#closed) return;
    const page = addr - (addr % pageSize);
    const off = page - this.#base;
    if (off < 0 || off >= this.#size) {
      // Only the client registers ranges; one outside its reservation is its own doing.
      native().uffd_wake(this.#uffd, page, pageSize);
      return this.#client.lost('a fault outside the reservation');
    }
    const rw: Rw = flags & (UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP) ? 'write' : 'read';
    const proc = this.#client.proc!;
    const as = proc.as;
    const seg = as.segmentAt(as.rawBase + off);
    this.#serving = off;
    this.#served = false;
    let rc: number;
    try {
      rc = seg ? await seg.ops.fault(seg, as.rawBase + off, pageSize, rw) : EFAULT;
    } finally {
      this.#serving = -1;
    }
    if (this.#closed || proc.exited) return;
    if (rc === 0) {
      // The page was loaded already (in the host's belief): map it as a load in this direction would.
      if (!this.#served) this.#map(off, pageSize, seg ? this.#wpFor(seg, rw) : undefined);
    } else {
      native().agent_call(this.#agent, DM_AGENT_REFUSE, off, pageSize, AGENT_TIMEOUT_MS);
    }
    this.#client.report(rc === 0 ? { pid: proc.pid, off, rw, result: 0 } : { pid: proc.pid, off, rw, result: rc, signal: 'SIGSEGV' });
  }

  /** How a fault in direction `rw` maps a page it found loaded: write-protected unless it is a write. */
  #wpFor(seg: Segment, rw: Rw): 'protect' | 'unprotect' | undefined {
    if (!seg.ops.needsWriteFaults?.(seg)) return undefined;
    return rw === 'write' ? 'unprotect' : 'protect';
  }

  /** UFFDIO_CONTINUE over [off, off + len) of the client, page by page past pages mapped already. */
  #continue(off: number, len: number, tries: number, mode: number): void {
    const n = native();
    let at = this.#base + off;
    const end = at + len;
    while (at < end && !this.#closed) {
      let rc: number;
      if (mode === UFFDIO_CONTINUE_MODE_WP && !this.#continueWp) {
        // Before 6.4: map without waking, write-protect, then wake (the thread must not run between the two).
        rc = n.uffd_continue(this.#uffd, at, end - at, UFFDIO_CONTINUE_MODE_DONTWAKE);
        if (rc > 0) {
          n.uffd_writeprotect(this.#uffd, at, rc, UFFDIO_WRITEPROTECT_MODE_WP);
          n.uffd_wake(this.#uffd, at, rc);
        }
      } else {
        rc = n.uffd_continue(this.#uffd, at, end - at, mode);
        if (rc === -EINVAL && mode === UFFDIO_CONTINUE_MODE_WP && this.#continueWp) {
          this.#continueWp = false;
          continue;
        }
      }
      if (rc > 0) at += rc;
      else if (rc === -EEXIST) {
        n.uffd_wake(this.#uffd, at, pageSize);
        at += pageSize;
      } else if (rc === -EAGAIN) {
        if (tries >= MAX_EAGAIN_RETRIES) {
          n.uffd_wake(this.#uffd, at, end - at); // they fault again, and are served again
          return;
        }
        const rest = at - this.#base;
        setImmediate(() => this.#continue(rest, end - at, tries + 1, mode));
        return;
      } else {
        return; // the range or the process is gone
      }
    }
  }
}
