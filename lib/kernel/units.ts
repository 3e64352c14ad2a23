/*
 * Page units (SPEC B.4). Solaris: btop rounds down, btopr rounds up, ptob multiplies. IRIX counts in
 * "clicks" (NBPC bytes, the page size): btoc rounds up, btoct truncates, ctob multiplies. The page size is the
 * machine's, as devmap's decisions say.
 */
import { integer } from '../errors';
import { pageSize } from '../memory/page';

const bytes = (x: unknown) => integer(x, 'bytes');
const pages = (x: unknown) => integer(x, 'pages', 0, Math.floor(Number.MAX_SAFE_INTEGER / pageSize));

/** Solaris btop(9F): bytes to pages, rounding down. */
export const btop = (x: number): number => Math.floor(bytes(x) / pageSize);
/** Solaris btopr(9F): bytes to pages, rounding up. */
export const btopr = (x: number): number => Math.ceil(bytes(x) / pageSize);
/** Solaris ptob(9F): pages to bytes. */
export const ptob = (x: number): number => pages(x) * pageSize;
/** IRIX btoc: bytes to clicks, rounding up. */
export const btoc = (x: number): number => Math.ceil(bytes(x) / pageSize);
/** IRIX btoct: bytes to clicks, truncating. */
export const btoct = (x: number): number => Math.floor(bytes(x) / pageSize);
/** IRIX ctob: clicks to bytes. */
export const ctob = (x: number): number => pages(x) * pageSize;
