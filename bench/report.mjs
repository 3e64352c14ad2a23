// Turns the results document of bench/run.mjs into a self-contained HTML page (inline SVG, inline CSS, no
// script, nothing fetched) and into standalone SVG charts for BENCHMARKS.md. No dependencies.
//
// Charts:
//  - scaling: the allocator's time per rmalloc+rmfree pair against free ranges, log–log, every policy and
//    the C array walk (the rmap suite);
//  - latency: one panel per latency case, the cumulative distribution of single-operation times (log x):
//    the median is where a curve crosses 50 %, the tail is its right end;
//  - ratios: every variant's median against its case's baseline (a C baseline for most, but also
//    process.send, the in-process map, kmem), on a log axis centred on 1×, with each goal and its verdict.
// Labels are never cut: margins are sized from the longest label (textWidth below).
import { verdicts } from './goals.mjs';
import { fmtRatio } from './harness.mjs';

const PALETTE = ['#7f7f7f', '#1f77b4', '#2ca02c', '#d62728', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];
const FIXED = { 'C array walk': '#7f7f7f', 'JS array walk': '#d62728', 'devmap classic': '#1f77b4', 'devmap illumos': '#2ca02c' };
const colorOf = (label, i) => FIXED[label] ?? PALETTE[i % PALETTE.length];
const dashOf = (label) => (label.startsWith('C ') ? '6 4' : '');

export const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
export const fmtNs = (ns) => (ns >= 1e6 ? `${+(ns / 1e6).toPrecision(3)} ms` : ns >= 1e3 ? `${+(ns / 1e3).toPrecision(3)} µs` : `${+ns.toPrecision(3)} ns`);
const fmtCount = (v) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : `${v}`);
const f1 = (v) => v.toFixed(1);

/** A generous estimate of a label's width in pixels at `size` px sans-serif (no font metrics in a string). */
export const textWidth = (s, size = 12) => Math.ceil(String(s).length * size * 0.6);

/** Words of `text` in lines of at most `max` characters. */
function wrap(text, max) {
  const lines = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > max) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** A log10 axis over [lo, hi] widened to whole decades, mapped onto [a, b] pixels. */
function logAxis(lo, hi, a, b) {
  const e0 = Math.floor(Math.log10(lo));
  const e1 = Math.max(e0 + 1, Math.ceil(Math.log10(hi)));
  const map = (v) => a + ((Math.log10(v) - e0) / (e1 - e0)) * (b - a);
  const ticks = [];
  for (let e = e0; e <= e1; e++) ticks.push(10 ** e);
  return { map, ticks };
}

function svgOpen(w, h, title) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="16" y="22" font-size="14" font-weight="bold">${escape(title)}</text>`,
  ];
}

function legend(out, labels, x, y, spacing = 20) {
  labels.forEach((label, i) => {
    const ly = y + i * spacing;
    out.push(`<line x1="${x}" x2="${x + 28}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colorOf(label, i)}" stroke-width="2" stroke-dasharray="${dashOf(label)}"/>`);
    out.push(`<text x="${x + 34}" y="${ly}">${escape(label)}</text>`);
  });
}

const footer = (m) => `${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, ${m.date}`;

/** Time per rmalloc+rmfree pair against free ranges, log–log. */
export function scalingSvg(data) {
  const { scaling, machine } = data;
  const longest = Math.max(...scaling.results[0].rows.map((r) => textWidth(r.variant)));
  const W = 560 + longest + 62, H = 440, M = { left: 80, right: longest + 62, top: 40, bottom: 70 };
  const baseline = data.results.find((r) => r.suite === 'rmap')?.baseline ?? 'C array walk';
  const out = svgOpen(W, H, `rmalloc + rmfree pair: time against free ranges (log–log), beside the ${baseline}`);
  const xs = scaling.results.map((r) => r.ranges);
  const ys = scaling.results.flatMap((r) => r.rows.map((row) => row.medianNs));
  const X = logAxis(Math.min(...xs), Math.max(...xs), M.left, W - M.right);
  const Y = logAxis(Math.min(...ys), Math.max(...ys), H - M.bottom, M.top);
  for (const t of Y.ticks) {
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${f1(Y.map(t))}" y2="${f1(Y.map(t))}" stroke="#ddd"/>`);
    out.push(`<text x="${M.left - 8}" y="${f1(Y.map(t) + 4)}" text-anchor="end">${fmtNs(t)}</text>`);
  }
  for (const t of X.ticks) {
    out.push(`<line x1="${f1(X.map(t))}" x2="${f1(X.map(t))}" y1="${M.top}" y2="${H - M.bottom}" stroke="#ddd"/>`);
    out.push(`<text x="${f1(X.map(t))}" y="${H - M.bottom + 18}" text-anchor="middle">${fmtCount(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 38}" text-anchor="middle">free ranges in the map</text>`);
  out.push(`<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">median CPU time per pair</text>`);
  const labels = scaling.results[0].rows.map((r) => r.variant);
  labels.forEach((label, i) => {
    const pts = scaling.results.map((r) => [X.map(r.ranges), Y.map(r.rows.find((row) => row.variant === label).medianNs)]);
    out.push(`<polyline fill="none" stroke="${colorOf(label, i)}" stroke-width="2" stroke-dasharray="${dashOf(label)}" points="${pts.map((p) => p.map(f1).join(',')).join(' ')}"/>`);
    for (const [x, y] of pts) out.push(`<circle cx="${f1(x)}" cy="${f1(y)}" r="3" fill="${colorOf(label, i)}"/>`);
  });
  legend(out, labels, W - M.right + 14, M.top + 14);
  out.push(`<text x="16" y="${H - 10}" font-size="10" fill="#555">${escape(footer(machine))}; ${scaling.reps} interleaved repetitions, medians</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Cumulative distributions of single-operation latencies, one panel per case. */
export function latencySvg(data) {
  const longest = Math.max(textWidth('p50 100 µs · p90 100 µs · p99 100 µs', 10), ...data.latency.flatMap((c) => c.variants.map((v) => textWidth(v.variant))));
  const W = 570 + longest + 62, PH = 230, M = { left: 60, right: longest + 62, top: 30, bottom: 40 };
  const H = 40 + data.latency.length * PH + 20;
  const out = svgOpen(W, H, 'Latency of one operation: cumulative distribution (log time, cut at the 99.9th percentile)');
  data.latency.forEach((c, k) => {
    const top = 40 + k * PH;
    const y0 = top + M.top, y1 = top + PH - M.bottom;
    // The axis ends at the largest 99.9th percentile: a few samples of milliseconds (a preempted process)
    // would otherwise squeeze the body of the distribution into a corner. They still count in the curve,
    // which reaches 100 % at the right edge; the table gives the max.
    const lo = Math.min(...c.variants.map((v) => v.samples.find((x) => x > 0) ?? 1));
    const hi = Math.max(...c.variants.map((v) => v.samples[Math.floor(0.999 * (v.samples.length - 1))]));
    const X = logAxis(lo, Math.max(hi, lo * 1.01), M.left, W - M.right);
    const right = X.map(X.ticks[X.ticks.length - 1]);
    const Y = (p) => y1 - p * (y1 - y0);
    out.push(`<text x="${M.left}" y="${top + 18}" font-weight="bold">${escape(c.name)}</text>`);
    for (const p of [0, 0.5, 0.9, 0.99, 1]) {
      out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${f1(Y(p))}" y2="${f1(Y(p))}" stroke="${p === 0.5 ? '#bbb' : '#eee'}"/>`);
      if (p !== 0.99) out.push(`<text x="${M.left - 6}" y="${f1(Y(p) + 4)}" text-anchor="end" font-size="10">${p * 100}%</text>`);
    }
    for (const t of X.ticks) {
      out.push(`<line x1="${f1(X.map(t))}" x2="${f1(X.map(t))}" y1="${y0}" y2="${y1}" stroke="#eee"/>`);
      out.push(`<text x="${f1(X.map(t))}" y="${y1 + 14}" text-anchor="middle" font-size="10">${fmtNs(t)}</text>`);
    }
    out.push(`<rect x="${M.left}" y="${y0}" width="${W - M.left - M.right}" height="${y1 - y0}" fill="none" stroke="#333"/>`);
    c.variants.forEach((v, i) => {
      const s = v.samples.filter((x) => x > 0);
      const step = Math.max(1, Math.floor(s.length / 300));
      const pts = [];
      for (let j = 0; j < s.length; j += step) pts.push([Math.min(right, X.map(s[j])), Y((j + 1) / s.length)]);
      pts.push([Math.min(right, X.map(s[s.length - 1])), Y(1)]);
      out.push(`<polyline fill="none" stroke="${colorOf(v.variant, i)}" stroke-width="2" stroke-dasharray="${dashOf(v.variant)}" points="${pts.map((p) => p.map(f1).join(',')).join(' ')}"/>`);
    });
    legend(out, c.variants.map((v) => v.variant), W - M.right + 14, y0 + 14, 36);
    c.variants.forEach((v, i) => {
      out.push(`<text x="${W - M.right + 48}" y="${y0 + 14 + i * 36 + 14}" font-size="10" fill="#555">p50 ${fmtNs(v.p50)} · p90 ${fmtNs(v.p90)} · p99 ${fmtNs(v.p99)}</text>`);
    });
  });
  out.push(`<text x="16" y="${H - 8}" font-size="10" fill="#555">${escape(footer(data.machine))}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** The distinct baselines of the results, in order of first use. */
export const baselinesOf = (results) => [...new Set(results.map((r) => r.baseline))];

const BAR = { faster: '#2ca02c', slower: '#1f77b4', tick: '#d62728' };

/**
 * Each variant's median against its case's baseline, log axis centred on 1×. Cases are groups: a heading
 * naming the case, its baseline and its goal, then one bar per variant; a red tick marks the goal on each
 * bar it is for, with the verdict beside the ratio.
 */
export function ratioSvg(data) {
  const groups = data.results.map((r) => {
    const judged = verdicts(r);
    const rows = r.rows.filter((row) => row.variant !== r.baseline).map((row) => ({ ...row, verdict: judged.get(row.variant) }));
    return { heading: `${r.suite}: ${r.name} — against ${r.baseline}${r.goal ? `, goal ${r.goal}` : ''}`, rows };
  }).filter((g) => g.rows.length > 0);
  const RH = 20, HH = 22, PLOT = 380;
  const labelWidth = Math.max(120, ...groups.flatMap((g) => g.rows.map((row) => textWidth(row.variant, 11))));
  const M = { left: 28 + labelWidth, right: 150, top: 0, bottom: 40 };
  const headingWidth = Math.max(0, ...groups.map((g) => 16 + textWidth(g.heading, 11)));
  const W = Math.max(M.left + PLOT + M.right, headingWidth + 16, 760);
  const subtitle = wrap(`Baselines: ${baselinesOf(data.results).join('; ')}.`, Math.floor((W - 32) / 6.6));
  const legendY = 40 + subtitle.length * 16 + 8;
  M.top = legendY + 44;
  const H = M.top + groups.reduce((h, g) => h + HH + g.rows.length * RH, 0) + M.bottom;
  const out = svgOpen(W, H, "Each variant's median against its case's baseline (log scale; left of 1× is faster)");
  subtitle.forEach((line, i) => out.push(`<text x="16" y="${42 + i * 16}" font-size="11" fill="#333">${escape(line)}</text>`));
  // The legend: what the colours and the red tick mean.
  let lx = 16;
  for (const [color, text] of [[BAR.faster, 'faster than the baseline'], [BAR.slower, 'slower than the baseline']]) {
    out.push(`<rect x="${lx}" y="${legendY}" width="14" height="10" fill="${color}"/><text x="${lx + 20}" y="${legendY + 9}" font-size="11">${escape(text)}</text>`);
    lx += 20 + textWidth(text, 11) + 18;
  }
  out.push(`<line x1="${lx + 7}" x2="${lx + 7}" y1="${legendY - 2}" y2="${legendY + 12}" stroke="${BAR.tick}" stroke-width="2"/>`);
  out.push(`<text x="${lx + 16}" y="${legendY + 9}" font-size="11">${escape("the case's goal; met or missed beside each bar it is for")}</text>`);
  const ratios = groups.flatMap((g) => g.rows.map((r) => r.ratio));
  const limits = groups.flatMap((g) => g.rows.flatMap((r) => (r.verdict ? [r.verdict.limit] : [])));
  const X = logAxis(Math.min(0.5, ...ratios, ...limits), Math.max(2, ...ratios, ...limits), M.left, M.left + PLOT);
  for (const t of X.ticks) {
    out.push(`<line x1="${f1(X.map(t))}" x2="${f1(X.map(t))}" y1="${M.top - 6}" y2="${H - M.bottom}" stroke="${t === 1 ? '#333' : '#ddd'}"/>`);
    out.push(`<text x="${f1(X.map(t))}" y="${M.top - 12}" text-anchor="middle" font-size="10">${t}×</text>`);
  }
  let y = M.top;
  for (const g of groups) {
    out.push(`<text x="16" y="${y + 15}" font-size="11" font-weight="bold">${escape(g.heading)}</text>`);
    y += HH;
    for (const r of g.rows) {
      const a = X.map(1), b = X.map(r.ratio);
      out.push(`<text x="${M.left - 8}" y="${y + 14}" text-anchor="end" font-size="11">${escape(r.variant)}</text>`);
      out.push(`<rect x="${f1(Math.min(a, b))}" y="${y + 4}" width="${f1(Math.max(1, Math.abs(b - a)))}" height="${RH - 8}" fill="${r.ratio <= 1 ? BAR.faster : BAR.slower}"/>`);
      let end = Math.max(a, b);
      if (r.verdict) {
        const gx = X.map(r.verdict.limit);
        out.push(`<line x1="${f1(gx)}" x2="${f1(gx)}" y1="${y + 1}" y2="${y + RH - 1}" stroke="${BAR.tick}" stroke-width="2"/>`);
        end = Math.max(end, gx);
      }
      const ratio = r.ratio >= 10 ? r.ratio.toFixed(0) : r.ratio >= 0.1 ? r.ratio.toFixed(2) : r.ratio.toPrecision(2);
      const verdict = r.verdict ? `, <tspan font-weight="bold" fill="${r.verdict.met ? '#222' : BAR.tick}">${r.verdict.met ? 'met' : 'missed'}</tspan>` : '';
      out.push(`<text x="${f1(end + 6)}" y="${y + 14}" font-size="11">${ratio}×${verdict}</text>`);
      y += RH;
    }
  }
  out.push(`<text x="16" y="${H - 14}" font-size="10" fill="#555">${escape(footer(data.machine))}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** The SVG files BENCHMARKS.md shows, by file name (charts without data are left out). */
export function svgCharts(data) {
  const charts = {};
  if (data.scaling) charts['bench-rmap-scaling.svg'] = scalingSvg(data);
  if (data.latency.length > 0) charts['bench-latency.svg'] = latencySvg(data);
  if (data.results.length > 0) charts['bench-ratios.svg'] = ratioSvg(data);
  return charts;
}

/** The goal cell of a variant's row: the goal and its verdict, or nothing for a variant the goal is not for. */
function goalTd(result, variant) {
  const v = verdicts(result).get(variant);
  return v === undefined ? '<td></td>' : `<td class="${v.met ? 'met' : 'missed'}">${escape(v.goal)}: ${v.met ? 'met' : 'missed'}</td>`;
}

/** The HTML report: machine, goals and their verdicts, charts, ratio table, latency percentiles. */
export function htmlReport(data) {
  const m = data.machine;
  const machineRows = [
    ['CPU', m.cpu], ['cores', m.cores], ['kernel', `Linux ${m.kernel}`], ['Node', m.node], ['page size', `${m.pageSize} bytes`],
    ['load average at the end', m.load.join(' ')], ['date', m.date], ['run', `${data.seconds.toFixed(0)} s${data.quick ? ' (--quick: fewer, shorter repetitions)' : ''}`],
  ];
  const ratioRows = data.results.flatMap((r) => r.rows.map((row, i) => `<tr${i === 0 ? ' class="first"' : ''}><td>${i === 0 ? escape(`${r.suite}: ${r.name}`) : ''}</td><td>${escape(row.variant)}</td><td class="n">${fmtNs(row.medianNs)}</td><td class="n">${fmtNs(row.minNs)} – ${fmtNs(row.maxNs)}</td><td class="n">${row.variant === r.baseline ? 'baseline' : fmtRatio(row.ratio)}</td>${goalTd(r, row.variant)}</tr>`));
  const goals = data.results.flatMap((r) => [...verdicts(r)].map(([variant, v]) => ({ kase: `${r.suite}: ${r.name}`, baseline: r.baseline, variant, v, ratio: r.rows.find((x) => x.variant === variant).ratio })));
  const met = goals.filter((g) => g.v.met).length;
  const goalRows = goals.map((g) => `<tr><td>${escape(g.kase)}</td><td>${escape(g.variant)}</td><td>${escape(g.baseline)}</td><td class="n">${fmtRatio(g.ratio)}</td><td>${escape(g.v.goal)}</td><td class="${g.v.met ? 'met' : 'missed'}">${g.v.met ? 'met' : 'missed'}</td></tr>`);
  const latencyRows = data.latency.flatMap((c) => c.variants.map((v, i) => `<tr${i === 0 ? ' class="first"' : ''}><td>${i === 0 ? escape(c.name) : ''}</td><td>${escape(v.variant)}</td><td class="n">${fmtNs(v.p50)}</td><td class="n">${fmtNs(v.p90)}</td><td class="n">${fmtNs(v.p99)}</td><td class="n">${fmtNs(v.max)}</td><td class="n">${v.samples.length}</td></tr>`));
  const charts = svgCharts(data);
  const figure = (file, caption) => (charts[file] ? `<figure>${charts[file].replace(/^<svg /, '<svg role="img" ')}<figcaption>${caption}</figcaption></figure>` : '');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>devmap bench — ${escape(m.date)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.met { color: #1a7f37; font-weight: bold; } td.missed { color: #c62828; font-weight: bold; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } tr.first td { border-top: 1px solid #bbb; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: 90%; } svg { max-width: 100%; height: auto; }
</style></head><body>
<h1>devmap bench</h1>
<table class="machine">${machineRows.map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(v)}</td></tr>`).join('')}</table>
<p>Every case runs beside its C baseline in the same process; the variants' repetitions are interleaved, so drift
hits all of them alike. Medians, the spread of repetitions (min – max) and the ratio of each median to the baseline's.</p>
${figure('bench-rmap-scaling.svg', 'Resource maps: CPU time per rmalloc(3)+rmfree(3) pair as the number of free ranges grows. The historical array walk is linear; devmap\'s classic (AVL, same answers) and illumos (vmem instant fit) policies stay flat.')}
${figure('bench-latency.svg', 'Single operations, each timed on its own: where a curve crosses 50 % is its median, its right end the worst sample.')}
${goals.length > 0 ? `<h2>Goals: ${met} met, ${goals.length - met} missed${data.quick ? ' (--quick: indicative only)' : ''}</h2>
<table><tr><th>case</th><th>variant</th><th>baseline</th><th>ratio</th><th>goal</th><th>verdict</th></tr>${goalRows.join('')}</table>` : ''}
${figure('bench-ratios.svg', `Each variant\'s median against its case\'s baseline (${baselinesOf(data.results).map(escape).join('; ')}); a red tick marks the goal.`)}
<h2>Ratios</h2>
<table><tr><th>case</th><th>variant</th><th>median / op</th><th>min – max</th><th>ratio</th><th>goal</th></tr>${ratioRows.join('')}</table>
${latencyRows.length > 0 ? `<h2>Latency of one operation</h2><table><tr><th>case</th><th>variant</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>samples</th></tr>${latencyRows.join('')}</table>` : ''}
</body></html>
`;
}
