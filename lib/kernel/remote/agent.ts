/*
 * The client's side of real faults (SPEC A.9): its userfaultfd and its agent.
 *
 * A client process makes the uffd its device mappings register with, because a uffd belongs to the address
 * space that made it; the host answers its faults through it. Making one may fail for reasons the user can
 * fix, and each is named: a kernel without userfaultfd (CONFIG_USERFAULTFD), an unprivileged process where
 * vm.unprivileged_userfaultfd is 0 on a kernel older than 5.11 (no UFFD_USER_MODE_ONLY) and no access to
 * /dev/userfaultfd, a kernel older than 5.14 (no minor faults on shared memory). The attempt order prefers a
 * uffd that also serves faults taken inside system calls: a plain userfaultfd(2) first (root, or the sysctl at 1),
 * then UFFD_USER_MODE_ONLY (any user since 5.11; a system call handed an unloaded page then gets EFAULT), then
 * /dev/userfaultfd (whose file mode decides). DEVMAP_UFFD_USER_MODE_ONLY=1 asks for user-mode-only at once.
 *
 * The agent thread (native/shim/agent.c) carries out devmap_unload here and watches for the host's death.
 */
import { native } from '../../native';

export const UFFD_USER_MODE_ONLY = 1;
export const UFFD_FEATURE_THREAD_ID = 1 << 8;
export const UFFD_FEATURE_MINOR_SHMEM = 1 << 10;

/** Agent messages (native/shim/agent.h). */
export const DM_AGENT_UNLOAD = 1;
export const DM_AGENT_REFUSE = 2;
export const DM_AGENT_HELLO = 3;
export const AGENT_MSG = 24;

const EPERM = 1;
const ENOENT = 2;
const EACCES = 13;
const EINVAL = 22;
const ENOSYS = 38;

export interface AgentMsg {
  op: number;
  seq: number;
  a: number;
  b: number;
}

export function encodeAgentMsg(m: AgentMsg): Uint8Array {
  const out = new Uint8Array(AGENT_MSG);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, m.op, true);
  dv.setUint32(4, m.seq, true);
  dv.setBigInt64(8, BigInt(m.a), true);
  dv.setBigInt64(16, BigInt(m.b), true);
  return out;
}

export function decodeAgentMsg(buf: Uint8Array): AgentMsg {
  const dv = new DataView(buf.buffer, buf.byteOffset, AGENT_MSG);
  return { op: dv.getUint32(0, true), seq: dv.getUint32(4, true), a: Number(dv.getBigInt64(8, true)), b: Number(dv.getBigInt64(16, true)) };
}

/** A uffd ready for minor faults on shared memory, or the errno and the reason (with its fix) there is none. */
export type UffdResult = { fd: number; userModeOnly: boolean } | { errno: number; reason: string };

export function openUserfaultfd(): UffdResult {
  const n = native();
  const forceUserMode = process.env.DEVMAP_UFFD_USER_MODE_ONLY === '1';
  let userModeOnly = forceUserMode;
  let fd = n.uffd_create(forceUserMode ? UFFD_USER_MODE_ONLY : 0);
  if (fd === -EPERM && !forceUserMode) {
    userModeOnly = true;
    fd = n.uffd_create(UFFD_USER_MODE_ONLY);
  }
  const sysErrno = fd;
  if (fd === -EPERM || fd === -EINVAL) {
    // Before 5.11 there is no UFFD_USER_MODE_ONLY: /dev/userfaultfd (6.1) is then the last way in.
    userModeOnly = false;
    fd = n.uffd_open_device(0);
    if (fd < 0) {
      const dev = fd === -ENOENT ? '/dev/userfaultfd does not exist' : fd === -EACCES || fd === -EPERM ? 'this user may not open /dev/userfaultfd' : `/dev/userfaultfd: errno ${-fd}`;
      return {
        errno: -sysErrno,
        reason: `userfaultfd(2) is refused to this user (vm.unprivileged_userfaultfd is 0 and this kernel has no UFFD_USER_MODE_ONLY) and ${dev}. ` +
          'To fix: run on Linux 5.11 or later, or `sysctl vm.unprivileged_userfaultfd=1`, or give this user access to /dev/userfaultfd',
      };
    }
  } else if (fd === -ENOSYS) {
    return { errno: ENOSYS, reason: 'this kernel has no userfaultfd (built without CONFIG_USERFAULTFD). To fix: run on a kernel with CONFIG_USERFAULTFD=y (Linux 5.14 or later)' };
  } else if (fd < 0) {
    return { errno: -fd, reason: `userfaultfd(2) failed with errno ${-fd}` };
  }
  const out = new Float64Array(2);
  const rc = n.uffd_api(fd, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID, out);
  if (rc < 0) {
    n.close(fd);
    return {
      errno: -rc,
      reason: 'this kernel has no minor faults on shared memory (UFFD_FEATURE_MINOR_SHMEM). To fix: run on Linux 5.14 or later',
    };
  }
  return { fd, userModeOnly };
}
