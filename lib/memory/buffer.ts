// The one way devmap makes an ArrayBuffer over mapped pages.
import { DevmapError } from '../errors';
import { native } from '../native';

/** An external ArrayBuffer over [addr, addr + length), its store counted on `counter` (-1: not counted). */
export function makeBuffer(addr: number, length: number, counter: number): ArrayBuffer {
  try {
    return native().buffer(addr, length, counter);
  } catch (cause) {
    throw new DevmapError(
      'ERR_DEVMAP_VIEW_TOO_LARGE',
      `Cannot make one ArrayBuffer of ${length} bytes; window the mapping with mapping.view(offset, length)`,
      { cause },
    );
  }
}
