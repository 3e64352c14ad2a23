/*
 * Slots: which process holds a writer or reader place in a channel, and whether it still runs.
 *
 * A slot names its owner by (pid, start time) — lib/identity.ts's rule: dead only on the kernel's word — and a
 * generation that every claim bumps. A *tag* (slot | generation << 8) is what records and lock words carry, so
 * a record reserved by a writer that died, whose slot a new process has since claimed, is still seen as the dead
 * writer's: the generations differ.
 *
 * Claiming is three steps: CAS the pid word from 0 (free) or from a dead owner's pid to -1 (being claimed),
 * write generation and start time (and, for a broadcast reader, its cursor), then store the pid. Anyone who
 * sees -1 treats the slot as owned and alive; a process killed inside those few instructions leaves the slot
 * at -1 for good (one slot lost, never a slot owned twice).
 */
import { isAlive, selfIdentityOf } from '../identity';
import { S } from './layout';

export const GEN_MASK = 0x7fffff;
export const tagOf = (slot: number, gen: number) => slot | ((gen & GEN_MASK) << 8);

/**
 * Claims a slot among `count` slots whose first word is `base(i)`, free or held by a dead process. Returns the
 * slot index with its pid word at -1 (the caller initializes it, then calls publish), or -1 when every slot is
 * held by a live process.
 */
export function claimSlot(i32: Int32Array, count: number, base: (i: number) => number): number {
  const me = selfIdentityOf();
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < count; i++) {
      const b = base(i);
      const pid = Atomics.load(i32, b + S.PID);
      // First pass: free slots only; second: also slots of dead owners (costs a liveness check each).
      if (pid !== 0 && (pass === 0 || pid === -1 || isOwnerAlive(i32, b))) continue;
      if (Atomics.compareExchange(i32, b + S.PID, pid, -1) !== pid) continue;
      Atomics.store(i32, b + S.GEN, (Atomics.load(i32, b + S.GEN) + 1) & GEN_MASK);
      i32[b + S.START_LO] = me.startTime % 0x100000000;
      i32[b + S.START_HI] = Math.floor(me.startTime / 0x100000000);
      return i;
    }
  }
  return -1;
}

/** Makes a claimed slot visible as owned by this process. */
export function publish(i32: Int32Array, b: number): void {
  Atomics.store(i32, b + S.PID, selfIdentityOf().pid);
}

/** Gives a slot this process holds back. */
export function releaseSlot(i32: Int32Array, b: number): void {
  Atomics.compareExchange(i32, b + S.PID, selfIdentityOf().pid, 0);
}

function startOf(i32: Int32Array, b: number): number {
  return (i32[b + S.START_LO] >>> 0) + (i32[b + S.START_HI] >>> 0) * 0x100000000;
}

/** Whether the current owner of the slot at `b` may still run (a slot being claimed counts as alive). */
export function isOwnerAlive(i32: Int32Array, b: number): boolean {
  const pid = Atomics.load(i32, b + S.PID);
  if (pid === -1) return true;
  if (pid <= 0) return false;
  const start = startOf(i32, b);
  return isAlive(pid, start === 0 ? null : start);
}

/** Whether the owner named by `tag` is gone: its slot was re-claimed or released, or its process died. */
export function isTagDead(i32: Int32Array, b: number, tag: number): boolean {
  if ((Atomics.load(i32, b + S.GEN) & GEN_MASK) !== tag >>> 8) return true;
  const pid = Atomics.load(i32, b + S.PID);
  if (pid === -1) return false;
  return !isOwnerAlive(i32, b);
}

/** The owner of a slot as plain data (for stats and inspect). */
export function ownerOf(i32: Int32Array, b: number): { pid: number; startTime: number; generation: number } {
  return { pid: Atomics.load(i32, b + S.PID), startTime: startOf(i32, b), generation: i32[b + S.GEN] & GEN_MASK };
}
