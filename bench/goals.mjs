// A case's goal and its verdict. A goal is a ratio to the case's baseline, "≤ 1.3×" (or "≥ 10×"), with
// optional words saying which variants it is for: "≤ 3× (1 handle)" is for the variants whose label contains
// "1 handle", "shared ≤ 2× in-process" for the variant "shared" (the baseline's own name is not a qualifier).
// A goal without such words is for every variant that is neither the baseline nor another C reference (a
// label starting with "C "). A case may also name them outright with `goalVariants`. Every goal the report
// shows is then marked met or missed, never left for the reader to work out.

/**
 * @typedef {{ op: '≤' | '≥', limit: number, qualifier: string }} Goal
 * @typedef {{ goal: string, limit: number, op: '≤' | '≥', met: boolean }} Verdict
 */

/**
 * @param {string | undefined} text
 * @param {string} baseline
 * @returns {Goal | null}
 */
export function parseGoal(text, baseline) {
  if (typeof text !== 'string') return null;
  const m = /(≤|<=|≥|>=)\s*([\d.]+)\s*×/.exec(text);
  if (m === null) return null;
  const qualifier = (text.slice(0, m.index) + ' ' + text.slice(m.index + m[0].length))
    .split(baseline).join(' ')
    .replace(/[()]/g, ' ')
    .trim()
    .replace(/\s+/g, ' ');
  return { op: m[1] === '≤' || m[1] === '<=' ? '≤' : '≥', limit: Number(m[2]), qualifier };
}

/**
 * The verdict for each variant a case's goal is for, by variant label (empty when the case has no goal).
 * @param {{ goal?: string, goalVariants?: string[], baseline: string, rows: { variant: string, ratio: number }[] }} result
 * @returns {Map<string, Verdict>}
 */
export function verdicts(result) {
  const out = new Map();
  const goal = parseGoal(result.goal, result.baseline);
  if (goal === null) return out;
  const candidates = result.rows.filter((r) => r.variant !== result.baseline);
  let judged = result.goalVariants ? candidates.filter((r) => result.goalVariants.includes(r.variant)) : [];
  if (!result.goalVariants && goal.qualifier !== '') judged = candidates.filter((r) => r.variant.includes(goal.qualifier));
  if (judged.length === 0) judged = candidates.filter((r) => !r.variant.startsWith('C '));
  for (const r of judged) {
    out.set(r.variant, { goal: result.goal, limit: goal.limit, op: goal.op, met: goal.op === '≤' ? r.ratio <= goal.limit : r.ratio >= goal.limit });
  }
  return out;
}

/** "≤ 1.3×: met" / "≤ 1.3×: missed", or '' for a variant the goal is not for. */
export function goalCell(result, variant) {
  const v = verdicts(result).get(variant);
  return v === undefined ? '' : `${v.goal}: ${v.met ? 'met' : 'missed'}`;
}
