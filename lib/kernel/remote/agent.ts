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
 * Write-protect mode (UFFD_FEATURE_WP_HUGETLBFS_SHMEM) is asked for when the kernel has it, and only
 * DEVMAP_WRITE_FAULTS drivers need it: without it the host refuses to map those, naming the reason;
 * DEVMAP_UFFD_NO_WRITE_FAULTS=1 asks for a uffd without it.
 *
 * The agent thread (native/shim/agent.c) carries out devmap_unload here and watches for the host's death.
 */
import { native } from '../../native';
import { EACCES, EINVAL, ENOENT, ENOSYS, EPERM } from '../errno';

export const UFFD_USER_MODE_ONLY = 1;
export const UFFD_FEATURE_THREAD_ID = 1 << 8;
export const UFFD_FEATURE_MINOR_SHMEM = 1 << 10;
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12;

/** Agent messages (native/shim/agent.h). */
export const DM_AGENT_UNLOAD = 1;
export const DM_AGENT_REFUSE = 2;
export const DM_AGENT_HELLO = 3;
export const AGENT_MSG = 24;


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

/**
 * A uffd ready for minor faults on shared memory, or the errno and the reason (with its fix) there is none.
 * `noWriteFaults` is '' when the uffd also reports writes to write-protected shared memory (what a
 * DEVMAP_WRITE_FAULTS driver needs), else why not.
 */
export type UffdResult = { fd: number; userModeOnly: boolean; noWriteFaults: string } | { errno: number; reason: string };

/** Why a uffd whose kernel refused UFFD_FEATURE_WP_HUGETLBFS_SHMEM has no write faults on shared memory. */
export const NO_WP_REASON = 'this kernel has no write-protect mode on shared memory (UFFD_FEATURE_WP_HUGETLBFS_SHMEM, ' +
  'Linux 5.19 with CONFIG_PTE_MARKER_UFFD_WP; UFFDIO_CONTINUE_MODE_WP since 6.4). To fix: run on Linux 6.4 or later, ' +
  'or map this driver without DEVMAP_WRITE_FAULTS';

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
  // Write-protect mode is asked for too; a kernel without it refuses the feature (EINVAL, the uffd stays
  // uninitialised) and the uffd is set up without it.
  let noWriteFaults = process.env.DEVMAP_UFFD_NO_WRITE_FAULTS === '1' ? 'DEVMAP_UFFD_NO_WRITE_FAULTS=1 asked for a userfaultfd without write-protect mode' : '';
  let rc = noWriteFaults ? -EINVAL : n.uffd_api(fd, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_WP_HUGETLBFS_SHMEM, out);
  if (rc === -EINVAL) {
    noWriteFaults ||= NO_WP_REASON;
    rc = n.uffd_api(fd, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID, out);
  }
  if (rc < 0) {
    n.close(fd);
    return {
      errno: -rc,
      reason: 'this kernel has no minor faults on shared memory (UFFD_FEATURE_MINOR_SHMEM). To fix: run on Linux 5.14 or later',
    };
  }
  return { fd, userModeOnly, noWriteFaults };
}
