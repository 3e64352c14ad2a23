export { VHandle, v_mapphys, v_gethandle, v_getaddr, v_getlen, v_getprot } from './drvmap';
export type { IrixDriver } from './drvmap';
export { drvmapInterface } from './drvmap';
