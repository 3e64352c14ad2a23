// A channel in a fresh named segment, for tests that hand the segment's name to other processes.
import { Channel, SharedMemory, type ChannelOptions } from '../../lib';
import { uniqueName } from '../helpers/leaks';

export function segment(opts: ChannelOptions) {
  const name = uniqueName('chan');
  const shm = SharedMemory.create(name, Channel.bytesFor(opts));
  const mapping = shm.map();
  shm.close();
  const channel = Channel.create(mapping, { ...opts, spin: 50 });
  return {
    name, channel, mapping,
    [Symbol.dispose]() {
      channel.detach();
      mapping.unmap();
      SharedMemory.unlink(name);
    },
  };
}
