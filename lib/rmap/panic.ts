/*
 * ResourceMapPanic — what a kernel panic inside rmalloc/rmfree becomes in devmap (SPEC decision 3, C.4).
 *
 * The message is the historical panic text of the policy's source ("bad rmfree" for Solaris ≤ 7, the vmem
 * messages for illumos); `code` is stable and is what callers and tests branch on. A panic is thrown before
 * the map is touched, so the map is exactly as it was before the call.
 */
import { integer, rangeError, string } from '../errors';

export type ResourceMapPanicCode =
  | 'ERR_DEVMAP_RMAP_ZERO_SIZE'
  | 'ERR_DEVMAP_RMAP_ZERO_INDEX'
  | 'ERR_DEVMAP_RMAP_OVERLAP'
  | 'ERR_DEVMAP_RMAP_BAD_FREE'
  | 'ERR_DEVMAP_RMAP_WRONG_SIZE'
  | 'ERR_DEVMAP_RMAP_MAP_TOO_SMALL';

const PANIC_CODES: readonly string[] = [
  'ERR_DEVMAP_RMAP_ZERO_SIZE', 'ERR_DEVMAP_RMAP_ZERO_INDEX', 'ERR_DEVMAP_RMAP_OVERLAP', 'ERR_DEVMAP_RMAP_BAD_FREE',
  'ERR_DEVMAP_RMAP_WRONG_SIZE', 'ERR_DEVMAP_RMAP_MAP_TOO_SMALL',
] satisfies ResourceMapPanicCode[];
const OPERATIONS: readonly string[] = ['rmallocmap', 'rmalloc', 'rmfree'];

export class ResourceMapPanic extends Error {
  readonly code: ResourceMapPanicCode;
  /** The call that panicked. */
  readonly operation: 'rmallocmap' | 'rmalloc' | 'rmfree';
  readonly size: number;
  readonly index: number;

  constructor(code: ResourceMapPanicCode, message: string, operation: ResourceMapPanic['operation'], size: number, index: number) {
    if (!PANIC_CODES.includes(code)) throw rangeError(`one of ${PANIC_CODES.join(', ')}`, 'code', code);
    string(message, 'message');
    if (!OPERATIONS.includes(operation)) throw rangeError("'rmallocmap', 'rmalloc' or 'rmfree'", 'operation', operation);
    integer(size, 'size');
    integer(index, 'index');
    super(message);
    this.name = 'ResourceMapPanic';
    this.code = code;
    this.operation = operation;
    this.size = size;
    this.index = index;
  }
}

/** Stable codes of the warnings a map reports through its onWarning hook. */
export type ResourceMapWarningCode =
  | 'DEVMAP_RMAP_OVERFLOW'
  | 'DEVMAP_RMAP_NO_SEGMENT'
  | 'DEVMAP_RMAP_WAIT_TOO_LARGE'
  | 'DEVMAP_RMAP_LEAKED'
  | 'DEVMAP_RMAP_OWNERS_FULL';

export interface ResourceMapWarning {
  code: ResourceMapWarningCode;
  /** Name of the map (options.name). */
  map: string;
  /** The range concerned: the space lost, the request that waits, or the units leaked. */
  index: number;
  size: number;
}
