// Draws docs/rmap-scaling.svg from the JSON of bench/rmap.mjs: time per rmalloc+rmfree pair against the
// number of free ranges, log–log, one line per implementation. No dependencies.
//   node bench/rmap.mjs --json /tmp/rmap.json && node bench/rmap-svg.mjs /tmp/rmap.json docs/rmap-scaling.svg
import { readFileSync, writeFileSync } from 'node:fs';

const [input = '/tmp/rmap.json', output = new URL('../docs/rmap-scaling.svg', import.meta.url).pathname] = process.argv.slice(2);
const data = JSON.parse(readFileSync(input, 'utf8'));

const W = 720;
const H = 440;
const M = { left: 80, right: 190, top: 40, bottom: 60 };
const colors = { 'C array walk': '#7f7f7f', 'JS array walk': '#d62728', 'devmap classic': '#1f77b4', 'devmap illumos': '#2ca02c' };
const dashes = { 'C array walk': '6 4', 'JS array walk': '2 3', 'devmap classic': '', 'devmap illumos': '' };

const xs = data.results.map((r) => r.ranges);
const ys = data.results.flatMap((r) => r.rows.map((row) => row.medianNs));
const decade = (v, f) => 10 ** f(Math.log10(v));
const x0 = decade(Math.min(...xs), Math.floor);
const x1 = decade(Math.max(...xs), Math.ceil);
const y0 = decade(Math.min(...ys), Math.floor);
const y1 = decade(Math.max(...ys), Math.ceil);
const px = (x) => M.left + ((Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * (W - M.left - M.right);
const py = (y) => H - M.bottom - ((Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * (H - M.top - M.bottom);
const ns = (v) => (v >= 1e6 ? `${v / 1e6} ms` : v >= 1e3 ? `${v / 1e3} µs` : `${v} ns`);
const count = (v) => (v >= 1e3 ? `${v / 1e3}k` : `${v}`);

const out = [];
out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
out.push(`<text x="${M.left}" y="22" font-size="14" font-weight="bold">rmalloc + rmfree pair: time against free ranges (log–log)</text>`);
for (let e = Math.log10(y0); e <= Math.log10(y1); e++) {
  const y = py(10 ** e);
  out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
  out.push(`<text x="${M.left - 8}" y="${y + 4}" text-anchor="end">${ns(10 ** e)}</text>`);
}
for (let e = Math.log10(x0); e <= Math.log10(x1); e++) {
  const x = px(10 ** e);
  out.push(`<line x1="${x}" x2="${x}" y1="${M.top}" y2="${H - M.bottom}" stroke="#ddd"/>`);
  out.push(`<text x="${x}" y="${H - M.bottom + 18}" text-anchor="middle">${count(10 ** e)}</text>`);
}
out.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#333"/>`);
out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 18}" text-anchor="middle">free ranges in the map</text>`);
out.push(`<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">median CPU time per pair</text>`);

const labels = data.results[0].rows.map((r) => r.variant);
labels.forEach((label, i) => {
  const pts = data.results.map((r) => [px(r.ranges), py(r.rows.find((row) => row.variant === label).medianNs)]);
  const color = colors[label] ?? '#000';
  out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" stroke-dasharray="${dashes[label] ?? ''}" points="${pts.map((p) => p.map((v) => v.toFixed(1)).join(',')).join(' ')}"/>`);
  for (const [x, y] of pts) out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3" fill="${color}"/>`);
  const ly = M.top + 14 + i * 22;
  out.push(`<line x1="${W - M.right + 14}" x2="${W - M.right + 44}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2" stroke-dasharray="${dashes[label] ?? ''}"/>`);
  out.push(`<text x="${W - M.right + 50}" y="${ly}">${label}</text>`);
});
const m = data.machine;
out.push(`<text x="${W - M.right + 14}" y="${M.top + 14 + labels.length * 22 + 10}" font-size="10" fill="#555">${m.node}, ${m.cores} cores</text>`);
out.push(`<text x="${W - M.right + 14}" y="${M.top + 14 + labels.length * 22 + 24}" font-size="10" fill="#555">${m.date}, ${data.reps} reps, medians</text>`);
out.push('</svg>');
writeFileSync(output, out.join('\n') + '\n');
console.log(`wrote ${output}`);
