// reclaim() decides "dead" only on the kernel's word (issue 12, class 7): run by another user, to whom the
// owners' processes answer kill(pid, 0) with EPERM — and with /proc mounted hidepid=2, where their /proc
// entries are invisible too — it returns the units of the owner that exited and keeps those of the live one.
import { chmodSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { SharedMemory } from '../../lib';
import { SharedResourceMap, rmalloc, rmfree } from '../../lib/rmap';
import { trackLeaks, uniqueName } from '../helpers/leaks';
import { asNobody, distModule, hidepidWorks, nobodyCanRun } from '../identity-nobody';
import { spawnLines } from '../sync/lines';

trackLeaks();

describe('reclaim() run by another user', () => {
  for (const hidepid of [false, true]) {
    const can = hidepid ? hidepidWorks : nobodyCanRun;
    it.skipIf(!can)(`keeps a live owner's units and returns a dead one's${hidepid ? ' (/proc hidepid=2)' : ' (kill → EPERM)'}`, async () => {
      const name = uniqueName('srmap-live');
      const bytes = SharedResourceMap.bytesFor({ mapsize: 16, owners: 16 });
      const shm = SharedMemory.create(name, bytes, { mode: 0o666 });
      const mapping = shm.map();
      shm.close();
      chmodSync(`/dev/shm/${name}`, 0o666);
      onTestFinished(() => {
        SharedMemory.unlink(name);
        mapping.unmap();
      });
      const mp = SharedResourceMap.create(mapping, { mapsize: 16, owners: 16 });
      rmfree(mp, 100, 1);
      // A live owner: this process (root). A dead one: a child that allocated, then was killed.
      const mine = rmalloc(mp, 10);
      const child = spawnLines('srmap-child.cjs', ['hold', name, '0', '0', '7']);
      const line = await child.next();
      expect(line, line.error).toHaveProperty('held');
      child.proc.kill('SIGKILL');
      await child.exited;
      expect(mp.ownersInUse).toBe(2);

      const r = asNobody(
        `const { SharedMemory } = require(${distModule('index.js')});
         const { SharedResourceMap } = require(${distModule('rmap/index.js')});
         const shm = SharedMemory.open(${JSON.stringify(name)}); const m = shm.map(); shm.close();
         const mp = SharedResourceMap.attach(m);
         let eperm; try { process.kill(${process.pid}, 0) } catch (e) { eperm = e.code }
         const hidden = !require('fs').existsSync('/proc/${process.pid}/stat');
         console.log(JSON.stringify({ eperm, hidden, reclaimed: mp.reclaim(), owners: mp.owners().map((o) => o.pid) }));
         m.unmap();`,
        hidepid,
      );
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toEqual({ eperm: 'EPERM', hidden: hidepid, reclaimed: 7, owners: [process.pid] });
      expect(mp.owners().map((o) => o.index)).toEqual([mine]);
      expect(mp.freeUnits).toBe(90);
    });
  }
});
