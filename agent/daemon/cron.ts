/**
 * Cron arithmetic the scheduler needs and node-cron does not give: the last
 * time a schedule should have fired before an instant (to make up a run missed
 * while the daemon was down), and the next time it fires after an instant
 * (for status), both without a real clock so they can be tested.
 *
 * node-cron parses the expression (its fields, expanded), and its own matcher
 * (a stopped task's `match`) has the last word on every candidate, so special
 * day tokens (L, 1W, 5L, 1#2) mean here what they mean when the task fires.
 * The walk goes minute by minute over local wall time, jumping over whole
 * hours and days that cannot match, up to a bounded horizon.
 */
import { createTask, parse, type ParsedFields, type ScheduledTask } from 'node-cron';
import { errorsFor } from '../../parsers/errors.js';
import { inWindow, type QuietWindow } from '../throttle/controller.js';

const MINUTE_MS = 60_000;
const SECOND_MS = 1000;
const MINUTES_PER_HOUR = 60;
const MINUTES_PER_DAY = 24 * MINUTES_PER_HOUR;
/** How far back (or ahead) a run is looked for: a monthly schedule's last run is inside it. */
export const DEFAULT_HORIZON_MS = 35 * 24 * 3600 * 1000;

/** A local wall-clock time, as cron sees it. */
export interface WallTime {
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31 */
  day: number;
  /** 0..23 */
  hour: number;
  /** 0..59 */
  minute: number;
  /** 0 (Sunday)..6 */
  weekday: number;
}

const UTC_ZONES = new Set(['UTC', 'Etc/UTC', 'GMT', 'Etc/GMT', 'Z']);
const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

/** The wall time of an epoch instant in a time zone (undefined: the process's local zone). */
export function wallClock(timezone?: string): (epochMs: number) => WallTime {
  if (timezone === undefined) {
    return (ms) => {
      const d = new Date(ms);
      return {
        year: d.getFullYear(),
        month: d.getMonth() + 1,
        day: d.getDate(),
        hour: d.getHours(),
        minute: d.getMinutes(),
        weekday: d.getDay(),
      };
    };
  }
  if (UTC_ZONES.has(timezone)) {
    return (ms) => {
      const d = new Date(ms);
      return {
        year: d.getUTCFullYear(),
        month: d.getUTCMonth() + 1,
        day: d.getUTCDate(),
        hour: d.getUTCHours(),
        minute: d.getUTCMinutes(),
        weekday: d.getUTCDay(),
      };
    };
  }
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: timezone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    weekday: 'short',
  });
  return (ms) => {
    const p: Record<string, string> = {};
    for (const part of fmt.formatToParts(new Date(ms))) p[part.type] = part.value;
    return {
      year: Number(p.year),
      month: Number(p.month),
      day: Number(p.day),
      hour: Number(p.hour) % 24,
      minute: Number(p.minute),
      weekday: WEEKDAYS[p.weekday ?? ''] ?? 0,
    };
  };
}

/** A parsed cron expression with its time zone. */
export interface CronSpec {
  readonly expr: string;
  readonly timezone?: string;
  /** Seconds of the minute it fires at, ascending (a 5-field expression: [0]). */
  readonly seconds: readonly number[];
  /** Whether a wall minute can hold a fire (day tokens such as L are settled by `matches`). */
  minuteMayMatch(w: WallTime): boolean;
  hourMayMatch(w: WallTime): boolean;
  dayMayMatch(w: WallTime): boolean;
  /** node-cron's own verdict on one instant (second resolution). */
  matches(epochMs: number): boolean;
  wall(epochMs: number): WallTime;
  /** Releases the node-cron matcher. */
  dispose(): void;
}

const cronErr = (expr: string) => errorsFor({ image: `cron "${expr}"`, layer: 'job' });

function numbers(values: readonly (number | string)[]): Set<number> {
  return new Set(values.filter((v): v is number => typeof v === 'number'));
}

/** Parses with node-cron; a bad expression is a typed error naming the field. */
export function cronSpec(expr: string, timezone?: string): CronSpec {
  let fields: ParsedFields;
  try {
    fields = parse(expr);
  } catch (e) {
    throw cronErr(expr).corrupt('CRON_BAD_EXPRESSION', `"${expr}" is not a cron expression: ${(e as Error).message}`);
  }
  // a stopped task is node-cron's matcher; it never fires
  const task: ScheduledTask = createTask(expr, () => undefined, { timezone });
  const seconds = [...new Set(fields.second)].sort((a, b) => a - b);
  const minutes = new Set(fields.minute);
  const hours = new Set(fields.hour);
  const months = new Set(fields.month);
  const doms = numbers(fields.dayOfMonth);
  const dows = numbers(fields.dayOfWeek);
  const domTokens = fields.dayOfMonth.some((v) => typeof v === 'string');
  const dowTokens = fields.dayOfWeek.some((v) => typeof v === 'string');
  return {
    expr,
    timezone,
    seconds,
    minuteMayMatch: (w) => minutes.has(w.minute),
    hourMayMatch: (w) => hours.has(w.hour),
    dayMayMatch: (w) => months.has(w.month) && (domTokens || doms.has(w.day)) && (dowTokens || dows.has(w.weekday)),
    matches: (ms) => task.match(new Date(ms)),
    wall: wallClock(timezone),
    dispose: () => void task.destroy(),
  };
}

/**
 * Minutes to step back from wall time `w` without stepping over a minute that
 * could match. Jumps are cut by an hour near day ends, so a day made shorter
 * or longer by a DST change is never jumped over.
 */
function stepBack(spec: CronSpec, w: WallTime): number {
  if (!spec.dayMayMatch(w)) {
    // to the previous day's last minute; in the day's first hour, to the previous hour's last minute
    return w.hour >= 1 ? w.hour * MINUTES_PER_HOUR + w.minute + 1 - MINUTES_PER_HOUR : w.minute + 1;
  }
  if (!spec.hourMayMatch(w)) return w.minute + 1;
  return 1;
}

function stepForward(spec: CronSpec, w: WallTime): number {
  const toNextHour = MINUTES_PER_HOUR - w.minute;
  if (!spec.dayMayMatch(w)) {
    const toNextDay = MINUTES_PER_DAY - (w.hour * MINUTES_PER_HOUR + w.minute);
    return w.hour < 23 ? toNextDay - MINUTES_PER_HOUR : toNextHour;
  }
  if (!spec.hourMayMatch(w)) return toNextHour;
  return 1;
}

function minuteMayMatch(spec: CronSpec, w: WallTime): boolean {
  return spec.dayMayMatch(w) && spec.hourMayMatch(w) && spec.minuteMayMatch(w);
}

/**
 * The latest instant strictly before `beforeMs` at which the schedule fires,
 * looking back at most `horizonMs`; undefined when it did not fire in that span.
 */
export function previousRunMs(spec: CronSpec, beforeMs: number, horizonMs = DEFAULT_HORIZON_MS): number | undefined {
  const limit = beforeMs - horizonMs;
  for (let m = Math.floor((beforeMs - 1) / MINUTE_MS) * MINUTE_MS; m >= limit - MINUTE_MS;) {
    const w = spec.wall(m);
    if (minuteMayMatch(spec, w)) {
      for (let i = spec.seconds.length - 1; i >= 0; i--) {
        const t = m + spec.seconds[i]! * SECOND_MS;
        if (t < beforeMs && t >= limit && spec.matches(t)) return t;
      }
    }
    m -= stepBack(spec, w) * MINUTE_MS;
  }
  return undefined;
}

/** The earliest instant strictly after `afterMs` at which the schedule fires, within `horizonMs`. */
export function nextRunMs(spec: CronSpec, afterMs: number, horizonMs = DEFAULT_HORIZON_MS): number | undefined {
  const limit = afterMs + horizonMs;
  for (let m = Math.floor(afterMs / MINUTE_MS) * MINUTE_MS; m <= limit;) {
    const w = spec.wall(m);
    if (minuteMayMatch(spec, w)) {
      for (const s of spec.seconds) {
        const t = m + s * SECOND_MS;
        if (t > afterMs && t <= limit && spec.matches(t)) return t;
      }
    }
    m += stepForward(spec, w) * MINUTE_MS;
  }
  return undefined;
}

/** Whether wall time `w` lies in the window [start, end); it wraps past midnight when end ≤ start (equal: all day). */
export function insideWindow(window: QuietWindow, w: WallTime): boolean {
  return inWindow(window, w.hour * MINUTES_PER_HOUR + w.minute);
}
