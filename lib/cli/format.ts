/** Small text formatting helpers shared by the commands. */

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) [v, i] = [v / 1024, i + 1];
  return i === 0 ? `${n} B` : `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

export function octal(mode: number): string {
  return '0' + mode.toString(8).padStart(3, '0');
}

/** Left-aligned columns; numeric columns (by index) right-aligned. */
export function table(header: string[], rows: string[][], numeric: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric.includes(i) ? c.padStart(widths[i]) : i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

/** hexdump -C style lines for `data` starting at `base`; runs of identical lines collapse to "*". */
export function hexdump(data: Uint8Array, base = 0): string[] {
  const out: string[] = [];
  let previous = '';
  let starred = false;
  for (let off = 0; off < data.length; off += 16) {
    const row = data.subarray(off, Math.min(off + 16, data.length));
    const key = Buffer.from(row).toString('hex');
    if (key === previous && row.length === 16 && off + 16 < data.length) {
      if (!starred) out.push('*');
      starred = true;
      continue;
    }
    previous = key;
    starred = false;
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    out.push(`${(base + off).toString(16).padStart(8, '0')}  ${left.padEnd(23)}  ${right.padEnd(23)}  |${ascii}|`);
  }
  out.push((base + data.length).toString(16).padStart(8, '0'));
  return out;
}

/*
 * Text that came from outside — segment names (any local user chooses them), names stored in segments,
 * process names, user names — is printed escaped, so that it cannot move the cursor, recolour or retitle the
 * terminal, reorder what follows it (bidi overrides) or hide characters (zero-width ones). Escaped: control
 * characters (C0, DEL, C1), format characters (bidi controls, zero-width characters, the BOM, tags), line and
 * paragraph separators, every other space than U+0020, lone surrogates, and the backslash itself (so an
 * escape in the output always means one was made). Each becomes \u{hex}, as in a JavaScript string.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\p{Z}\\]/gu;

/** `text` with every character a terminal could act on (see above) shown as \u{hex}. */
export function escapeText(text: string): string {
  return text.replace(UNSAFE, (c) => (c === ' ' ? c : `\\u{${c.codePointAt(0)!.toString(16)}}`));
}

/**
 * JSON.stringify, with the characters above that JSON leaves raw (C1 controls, format characters,
 * separators) written as \uXXXX escapes: the same JSON value, harmless on a terminal.
 */
export function jsonText(value: unknown): string {
  // C0 controls are escaped by JSON.stringify itself (and its line breaks are layout): DEL and C1 are not.
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/gu, (c) =>
    [...Array(c.length).keys()].map((i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''),
  );
}
