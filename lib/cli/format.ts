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
