/**
 * Retention for `vdbak forget`: which backups a keep-policy keeps, and why.
 *
 * The semantics are restic's (`restic forget`, 0.17), chosen because admins
 * who know one tool know that one and because it is explainable per backup:
 *
 * - Backups are ordered newest first (ties on time: higher id first, so the
 *   answer never depends on the order the catalog returned them in).
 * - keep-last N keeps the N newest backups.
 * - keep-hourly N walks the list newest first and keeps a backup whenever its
 *   hour differs from the hour of the previous backup this rule kept, until it
 *   has kept N: the newest backup of each of the N most recent hours that hold
 *   backups. Hours without backups do not count. Daily, weekly (ISO 8601 week,
 *   whose year is the ISO week-year: 2027-01-01 belongs to week 53 of 2026),
 *   monthly and yearly work the same way.
 * - Every rule counts on its own: a backup that is both the newest of its day
 *   and of its month uses up one daily and one monthly slot, and lists both
 *   reasons. (borg instead lets each rule skip what an earlier rule kept; we
 *   follow restic here.)
 * - When the oldest backup is reached and a time rule still has slots left, the
 *   oldest backup is kept too (reason "daily (oldest)" …): with fewer days of
 *   history than asked for, the longest history is kept. restic ≥ 0.17 and
 *   borg ≥ 1.2 both do this.
 *
 * Periods are computed in UTC by default: a controller's local zone and its
 * daylight-saving jumps would otherwise make "daily" mean 23 or 25 hours twice a
 * year, and two controllers in different zones would disagree about the same
 * repository. `tz: 'local'` uses the process's local zone (TZ) instead.
 *
 * A policy with no rule (or only zero counts) is refused, here and in
 * parseRetentionArgs: it would keep nothing, and `forget` would delete every
 * backup. restic keeps everything in that case; refusing is clearer still.
 */

/** Largest count a rule accepts: more than a century of hourly backups, far below 2^53. */
export const MAX_KEEP = 1_000_000;

export interface RetentionPolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
}

export interface BackupForRetention {
  id: number;
  /** When the backup's point-in-time view was taken (not when it finished). */
  time: Date;
}

export interface RetentionDecision {
  /** Kept backups, newest first, each with every rule that kept it. */
  keep: { id: number; reasons: string[] }[];
  /** Ids of the backups to forget, newest first. */
  remove: number[];
}

export type RetentionTimeZone = 'UTC' | 'local';

/** Stable codes, for scripts and tests. */
export type RetentionErrorCode =
  | 'RETENTION_NO_RULE' // no rule with a count ≥ 1
  | 'RETENTION_BAD_COUNT' // not a non-negative integer, or above MAX_KEEP
  | 'RETENTION_BAD_TIME' // a backup's time is not a valid date
  | 'RETENTION_DUPLICATE_ID'; // the same backup id twice in the list

/**
 * A bad policy or a bad backup list. `usage` is true when the user's options are
 * at fault (the CLI exits 2 and prints its usage), false when the caller handed
 * in an impossible list (a bug: exit 70).
 */
export class RetentionError extends Error {
  override name = 'RetentionError';
  readonly code: RetentionErrorCode;
  readonly usage: boolean;
  /** The option concerned, e.g. `--keep-daily`, when there is one. */
  readonly option: string | undefined;

  constructor(code: RetentionErrorCode, message: string, usage: boolean, option?: string) {
    super(message);
    this.code = code;
    this.usage = usage;
    this.option = option;
  }
}

/** The rules in the order restic evaluates them; the order of reasons follows it. */
const RULES = [
  { key: 'keepLast', option: 'keep-last', reason: 'last', period: null },
  { key: 'keepHourly', option: 'keep-hourly', reason: 'hourly', period: hourKey },
  { key: 'keepDaily', option: 'keep-daily', reason: 'daily', period: dayKey },
  { key: 'keepWeekly', option: 'keep-weekly', reason: 'weekly', period: weekKey },
  { key: 'keepMonthly', option: 'keep-monthly', reason: 'monthly', period: monthKey },
  { key: 'keepYearly', option: 'keep-yearly', reason: 'yearly', period: yearKey },
] as const satisfies readonly {
  key: keyof RetentionPolicy;
  option: string;
  reason: string;
  period: ((p: DateParts) => number) | null;
}[];

/** Option names as the CLI spells them (`--keep-daily`), for parseArgs and help text. */
export const RETENTION_OPTIONS = RULES.map((r) => r.option);

/** `parseArgs` option declarations for the keep rules, to spread into a command's options. */
export const RETENTION_PARSE_OPTIONS: Record<string, { type: 'string' }> = Object.fromEntries(
  RULES.map((r) => [r.option, { type: 'string' as const }]),
);

interface DateParts {
  year: number;
  month: number; // 1..12
  day: number; // 1..31
  hour: number; // 0..23
}

function partsOf(d: Date, tz: RetentionTimeZone): DateParts {
  return tz === 'UTC'
    ? { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours() }
    : { year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate(), hour: d.getHours() };
}

function hourKey(p: DateParts): number {
  return ((p.year * 100 + p.month) * 100 + p.day) * 100 + p.hour;
}
function dayKey(p: DateParts): number {
  return (p.year * 100 + p.month) * 100 + p.day;
}
function monthKey(p: DateParts): number {
  return p.year * 100 + p.month;
}
function yearKey(p: DateParts): number {
  return p.year;
}

const DAY_MS = 86_400_000;

/** ISO 8601 week-year and week of a calendar date, e.g. 2027-01-01 → 2026 W53. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = Date.UTC(year, month - 1, day);
  const weekday = new Date(date).getUTCDay() || 7; // Monday 1 … Sunday 7
  // The week belongs to the year that holds its Thursday.
  const thursday = date + (4 - weekday) * DAY_MS;
  const weekYear = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / DAY_MS / 7) + 1;
  return { year: weekYear, week };
}

function weekKey(p: DateParts): number {
  const w = isoWeek(p.year, p.month, p.day);
  return w.year * 100 + w.week;
}

function checkCount(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_KEEP) {
    throw new RetentionError(
      'RETENTION_BAD_COUNT',
      `--${option} takes a whole number from 0 to ${MAX_KEEP}, not '${String(value)}'`,
      true,
      `--${option}`,
    );
  }
  return value;
}

/** Throws unless the policy has at least one rule with a count ≥ 1 and every count is valid. */
export function validatePolicy(policy: RetentionPolicy): void {
  let rules = 0;
  for (const r of RULES) {
    const v = policy[r.key];
    if (v === undefined) continue;
    if (checkCount(v, r.option) > 0) rules++;
  }
  if (rules === 0) {
    throw new RetentionError(
      'RETENTION_NO_RULE',
      `forget needs at least one rule with a count of 1 or more (${RETENTION_OPTIONS.map((o) => `--${o}`).join(', ')}); ` +
        'a policy without one would remove every backup',
      true,
    );
  }
}

/**
 * Parses the keep options as `parseArgs` returns them (strings keyed by option
 * name, e.g. `{ 'keep-daily': '7' }`); numbers are accepted too, for policies
 * read from a config file. Other keys are ignored. Throws a RetentionError with
 * `usage: true` on a bad count or when no rule is given.
 */
export function parseRetentionArgs(values: Readonly<Record<string, unknown>>): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const r of RULES) {
    const raw = values[r.option];
    if (raw === undefined) continue;
    let n: unknown = raw;
    if (typeof raw === 'string') {
      // Digits only: Number() would also take '', ' 7', '0x10', '1e3' and '7.0'.
      n = /^[0-9]{1,9}$/.test(raw) ? Number(raw) : raw;
    }
    policy[r.key] = checkCount(n, r.option);
  }
  validatePolicy(policy);
  return policy;
}

/**
 * Decides which backups a policy keeps. Pure: the same list and policy always
 * give the same answer, whatever the list's order. See the top of this file
 * for the semantics.
 */
export function applyRetention(
  backups: readonly BackupForRetention[],
  policy: RetentionPolicy,
  tz: RetentionTimeZone = 'UTC',
): RetentionDecision {
  validatePolicy(policy);
  const seen = new Set<number>();
  for (const b of backups) {
    if (!(b.time instanceof Date) || !Number.isFinite(b.time.getTime())) {
      throw new RetentionError('RETENTION_BAD_TIME', `backup ${b.id} has no valid time`, false);
    }
    if (seen.has(b.id)) throw new RetentionError('RETENTION_DUPLICATE_ID', `backup ${b.id} is listed twice`, false);
    seen.add(b.id);
  }
  const list = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime() || b.id - a.id);

  const state = RULES.map((r) => ({ rule: r, left: policy[r.key] ?? 0, last: undefined as number | undefined }));
  const decision: RetentionDecision = { keep: [], remove: [] };
  list.forEach((backup, index) => {
    const parts = partsOf(backup.time, tz);
    const oldest = index === list.length - 1;
    const reasons: string[] = [];
    for (const s of state) {
      if (s.left === 0) continue;
      // keep-last: every backup is its own period.
      const period = s.rule.period === null ? index : s.rule.period(parts);
      if (period !== s.last) {
        reasons.push(s.rule.reason);
      } else if (oldest) {
        reasons.push(`${s.rule.reason} (oldest)`);
      } else {
        continue;
      }
      s.last = period;
      s.left--;
    }
    if (reasons.length > 0) decision.keep.push({ id: backup.id, reasons });
    else decision.remove.push(backup.id);
  });
  return decision;
}
