/**
 * Cron expressions are checked by node-cron itself (the scheduler that will
 * run them), so the config never accepts what the scheduler would refuse;
 * this only turns its answer into a sentence that names the field.
 */
import { validateDetailed } from 'node-cron';

/** Longest expression we accept; real ones are under 40 characters. */
export const MAX_CRON_CHARS = 200;

/** The range of each field, for "minute 61 out of range 0–59". */
const FIELD_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  second: [0, 59],
  minute: [0, 59],
  hour: [0, 23],
  dayOfMonth: [1, 31],
  month: [1, 12],
  dayOfWeek: [0, 7],
};

const FIELD_WORDS: Readonly<Record<string, string>> = {
  second: 'second',
  minute: 'minute',
  hour: 'hour',
  dayOfMonth: 'day of month',
  month: 'month',
  dayOfWeek: 'day of week',
};

/** Undefined when node-cron accepts the expression (5 fields, or 6 with seconds first); else why not. */
export function cronProblem(expr: string): string | undefined {
  if (expr.length > MAX_CRON_CHARS) return `longer than ${MAX_CRON_CHARS} characters`;
  const r = validateDetailed(expr);
  if (r.valid) return undefined;
  const why = r.errors.map((e) => {
    const range = FIELD_RANGES[e.field];
    const word = FIELD_WORDS[e.field] ?? e.field;
    if (range && e.value !== undefined) {
      const out = (e.value.match(/\d+/g) ?? []).map(Number).find((n) => n < range[0] || n > range[1]);
      if (out !== undefined) return `${word} ${out} out of range ${range[0]}–${range[1]}`;
    }
    return e.field === 'expression' ? e.message : `${word}: ${e.message}`;
  });
  return why.length > 0 ? why.join('; ') : 'rejected by node-cron';
}
