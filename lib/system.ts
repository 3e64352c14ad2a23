/*
 * The Kernel the package exports: lib/kernel's Kernel with the two mapping interfaces this package implements,
 * IRIX drvmap (lib/irix) and the devmap framework (lib/ddi), so that `new Kernel()` then `install(name, driver)`
 * is all a driver writer does. It sits above both layers, the one place that knows all three; the kernel layer
 * itself takes its mapping interfaces as a constructor option and registers nothing when a module loads.
 */
import { devmapInterface, type DevmapDriver } from './ddi/devmap';
import { drvmapInterface, type IrixDriver } from './irix/drvmap';
import { Kernel as KernelCore, type KernelOptions } from './kernel/kernel';

/**
 * A driver of the package's Kernel: character entry points, and either IRIX drvmap's (map, unmap) or the devmap
 * framework's (devmap). A member that is none of these — `mapp` for `map` — is a type error for a driver written
 * in place, and install() refuses it at run time.
 */
export type Driver = IrixDriver | DevmapDriver;

/** A simulated kernel whose drivers may map through IRIX drvmap or the devmap framework. */
export class Kernel extends KernelCore {
  constructor(opts?: KernelOptions) {
    const mappers = [drvmapInterface, devmapInterface];
    const plain = opts !== null && typeof opts === 'object' && !Array.isArray(opts);
    // Options the base refuses (not an object) go to it as they are, so that it names the mistake.
    super(opts === undefined ? { mappers } : plain && !Object.hasOwn(opts, 'mappers') ? { ...opts, mappers } : opts);
  }

  /** Installs a driver; returns its major number. Its minor 0 is reachable at /dev/<name>. */
  override install(name: string, driver: Driver): number {
    return super.install(name, driver);
  }
}
