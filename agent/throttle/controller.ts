/**
 * The control law: from the foreground's load, the rate the backup may read
 * at. AIMD, as TCP does for a shared link: halve at once when the VMs' I/O
 * gets slow or the system reports io pressure, add a little every calm
 * second, never above the configured maximum nor (while running) below the
 * floor. Above `stopMs` of latency no new read starts; above `pausePressure`
 * the backup pauses until the pressure falls; inside a quiet window it runs
 * at the maximum whatever the load.
 *
 * Pure: `decide` takes the previous state, one load sample and the local
 * minute of the day, and returns the next state with a human reason. The
 * caller owns the clock and the sensor (ThrottleLoop), so tests drive it
 * with simulated samples.
 */
import { errorsFor } from '../../parsers/errors.js';
import { type Load, MIN_FOREGROUND_IOPS } from './sensors.js';

export const MB = 1_000_000;
const MINUTES_PER_DAY = 24 * 60;

/** A time-of-day range, local time, "HH:MM"–"HH:MM"; it wraps past midnight when end ≤ start. */
export interface QuietWindow {
  start: string;
  end: string;
}

export interface ThrottleLimits {
  /** The cap (bytes/s), also the rate inside quiet windows. */
  maxBytesPerSec: number;
  /** The floor while running (bytes/s): decreases stop here, so a long busy spell still lets the backup finish. */
  minBytesPerSec: number;
  /** Where a backup starts (bytes/s). */
  startBytesPerSec: number;
  /** Foreground latency (ms) at which the rate is cut. */
  slowDownMs: number;
  /** Foreground latency (ms) at which no new read starts. */
  stopMs: number;
  /** io pressure "some" (percent of the sample period) at which the rate is cut. */
  slowPressure: number;
  /** io pressure "some" (percent) above which the backup pauses. */
  pausePressure: number;
  /** A paused backup resumes below this pressure (hysteresis, so it does not flap). */
  resumePressure: number;
  /** The multiplicative decrease (0 < f < 1). */
  decreaseFactor: number;
  /** The additive increase, bytes/s gained per calm second (while no foreground uses the devices: ×2 per second, if more). */
  increasePerSec: number;
  /** Below this share of slowDownMs the foreground counts as calm; between it and slowDownMs the rate holds. */
  calmFraction: number;
  /** Device utilisation (0..1) at which the rate holds instead of growing, while a foreground is active. */
  holdUtilisation: number;
  /**
   * The relative rule, for devices far faster than the absolute thresholds
   * (NVMe, a cached virtual disk): the rate is cut when the foreground's
   * latency reaches this multiple of its latency without us, measured by
   * pausing the backup now and then (a probe). 0 turns the rule and the probes off.
   */
  relativeSlow: number;
  /** Below this multiple of the foreground's own latency the rate grows; between it and relativeSlow it holds. */
  relativeCalm: number;
  /**
   * The least latency (ms) we must add before the relative rule acts: below
   * it, what moves is the noise of small requests, not a foreground we hurt.
   */
  relativeMinDeltaMs: number;
  /** Foreground requests per second below which the relative rule and probes are off (too few to average). */
  relativeMinIops: number;
  /** Seconds between probes while a foreground is active. */
  probeEverySec: number;
  /** Sample periods a probe pauses for: the first lets our reads in flight drain, the last measures. */
  probePeriods: number;
  quietWindows: QuietWindow[];
}

export const DEFAULT_LIMITS: ThrottleLimits = {
  maxBytesPerSec: 200 * MB,
  minBytesPerSec: 1 * MB,
  startBytesPerSec: 20 * MB,
  slowDownMs: 20,
  stopMs: 30,
  slowPressure: 40,
  pausePressure: 80,
  resumePressure: 50,
  decreaseFactor: 0.5,
  increasePerSec: 10 * MB,
  calmFraction: 0.75,
  holdUtilisation: 0.95,
  relativeSlow: 1.3,
  relativeCalm: 1.1,
  relativeMinDeltaMs: 0.3,
  relativeMinIops: 100,
  probeEverySec: 30,
  probePeriods: 2,
  quietWindows: [],
};

export type Mode = 'run' | 'hold' | 'slow' | 'stop' | 'pause' | 'full' | 'probe';

export interface ControllerState {
  /** The rate the token bucket runs at now (bytes/s); 0 when stopped or paused. */
  rate: number;
  /** The rate to go back to after a stop or pause, and the base of the next change. */
  target: number;
  mode: Mode;
  /** Why, in words, for status and logs: "latency 27 ms ≥ 20 ms: slowing to 40 MB/s". */
  reason: string;
  /** The sample the decision was made on. */
  load?: Load;
  /** The foreground's latency without us (ms), from the last probe and lower readings since. */
  baseLatencyMs?: number;
  /** Seconds since the last probe. */
  sinceProbeS?: number;
  /** Sample periods left in a running probe. */
  probeLeft?: number;
}

const err = errorsFor({ image: 'throttle limits', layer: 'file' });

/** Minutes after midnight of "HH:MM"; a typed error otherwise. */
export function parseTimeOfDay(s: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(s);
  const h = Number(m?.[1]);
  const min = Number(m?.[2]);
  if (!m || h > 23 || min > 59) throw err.corrupt('THROTTLE_BAD_TIME', `"${s}" is not a time of day (HH:MM)`);
  return h * 60 + min;
}

/** Whether `minute` (0..1439) lies in the window [start, end), wrapping past midnight. */
export function inWindow(w: QuietWindow, minute: number): boolean {
  const s = parseTimeOfDay(w.start);
  const e = parseTimeOfDay(w.end);
  if (s === e) return true; // a whole day
  return s < e ? minute >= s && minute < e : minute >= s || minute < e;
}

/** Fills defaults and checks the limits make sense together; typed errors name the key. */
export function resolveLimits(partial: Partial<ThrottleLimits> = {}): ThrottleLimits {
  const l: ThrottleLimits = { ...DEFAULT_LIMITS, ...partial };
  if (partial.startBytesPerSec === undefined)
    l.startBytesPerSec = Math.min(l.maxBytesPerSec, DEFAULT_LIMITS.startBytesPerSec);
  if (partial.resumePressure === undefined) l.resumePressure = Math.min(l.resumePressure, l.pausePressure);
  const bad = (key: keyof ThrottleLimits, why: string): never => {
    throw err.corrupt('THROTTLE_BAD_LIMIT', `${key}: ${why}`, { key, value: l[key] as unknown });
  };
  const positive: (keyof ThrottleLimits)[] = ['maxBytesPerSec', 'minBytesPerSec', 'startBytesPerSec', 'increasePerSec'];
  for (const k of positive) if (!(Number.isFinite(l[k]) && (l[k] as number) > 0)) bad(k, 'must be a positive number');
  if (l.minBytesPerSec > l.maxBytesPerSec) bad('minBytesPerSec', 'is above maxBytesPerSec');
  if (l.startBytesPerSec < l.minBytesPerSec || l.startBytesPerSec > l.maxBytesPerSec)
    bad('startBytesPerSec', 'must lie between minBytesPerSec and maxBytesPerSec');
  if (!(l.slowDownMs > 0)) bad('slowDownMs', 'must be above 0');
  if (!(l.stopMs >= l.slowDownMs)) bad('stopMs', 'must be at least slowDownMs');
  for (const k of ['slowPressure', 'pausePressure', 'resumePressure'] as const)
    if (!(l[k] >= 0 && l[k] <= 100)) bad(k, 'must be a percentage (0–100)');
  if (l.resumePressure > l.pausePressure) bad('resumePressure', 'is above pausePressure');
  if (!(l.decreaseFactor > 0 && l.decreaseFactor < 1)) bad('decreaseFactor', 'must lie strictly between 0 and 1');
  if (!(l.calmFraction > 0 && l.calmFraction <= 1)) bad('calmFraction', 'must lie in (0, 1]');
  if (!(l.holdUtilisation > 0 && l.holdUtilisation <= 1)) bad('holdUtilisation', 'must lie in (0, 1]');
  if (l.relativeSlow !== 0 && !(l.relativeSlow > 1)) bad('relativeSlow', 'must be above 1, or 0 to turn it off');
  if (!(l.relativeCalm >= 1 && (l.relativeSlow === 0 || l.relativeCalm <= l.relativeSlow)))
    bad('relativeCalm', 'must lie between 1 and relativeSlow');
  if (!(l.relativeMinIops >= 0)) bad('relativeMinIops', 'must be 0 or more');
  if (!(l.relativeMinDeltaMs >= 0)) bad('relativeMinDeltaMs', 'must be 0 or more');
  if (!(l.probeEverySec > 0)) bad('probeEverySec', 'must be above 0');
  if (!(Number.isInteger(l.probePeriods) && l.probePeriods >= 2 && l.probePeriods <= 10))
    bad('probePeriods', 'must be a whole number from 2 to 10');
  for (const w of l.quietWindows) {
    parseTimeOfDay(w.start);
    parseTimeOfDay(w.end);
  }
  return l;
}

/** "40 MB/s", "1.5 MB/s", "800 kB/s". */
export function formatRate(bps: number): string {
  if (bps >= 10 * MB) return `${Math.round(bps / MB)} MB/s`;
  if (bps >= MB) return `${(bps / MB).toFixed(1)} MB/s`;
  return `${Math.round(bps / 1000)} kB/s`;
}

const ms = (x: number): string => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
const pct = (x: number): string => `${Math.round(x)} %`;

/** The state a backup starts in. */
export function initialState(limits: ThrottleLimits): ControllerState {
  return {
    rate: limits.startBytesPerSec,
    target: limits.startBytesPerSec,
    mode: 'run',
    reason: `starting at ${formatRate(limits.startBytesPerSec)}`,
  };
}

/**
 * The pressure the law looks at: over the sample period when known, else the
 * kernel's 10 s average. PSI is system-wide and counts our own workers'
 * stalls too, so while the watched devices see no foreground requests the
 * pressure is taken to be ours and ignored; a backup alone never slows itself.
 */
function pressureOf(load: Load): number | undefined {
  if (load.foregroundIops !== undefined && load.foregroundIops < MIN_FOREGROUND_IOPS) return undefined;
  return load.pressureSome ?? load.pressureAvg10;
}

/** Whether a sample carries enough foreground requests for the relative rule. */
function relativeOn(load: Load, limits: ThrottleLimits): boolean {
  return (
    limits.relativeSlow > 0 && load.latencyMs !== undefined && (load.foregroundIops ?? 0) >= limits.relativeMinIops
  );
}

/**
 * One step of the law. `minuteOfDay` is local time (0..1439) for the quiet
 * windows. Order matters: a quiet window beats everything, then pause (by
 * pressure), a probe in progress, stop (by latency), slow down, hold, ramp up.
 */
export function decide(
  prev: ControllerState,
  load: Load,
  limits: ThrottleLimits,
  minuteOfDay: number,
): ControllerState {
  const { maxBytesPerSec: max } = limits;
  const win = limits.quietWindows.find((w) => inWindow(w, minuteOfDay));
  if (win) {
    return {
      rate: max,
      target: max,
      mode: 'full',
      reason: `quiet window ${win.start}–${win.end}: full speed (${formatRate(max)})`,
      load,
    };
  }
  const dtS = Math.max(0, load.dtMs) / 1000;
  const lat = load.latencyMs;
  const psi = pressureOf(load);
  // leaving a quiet window: start again from where a backup starts, not from the cap
  const from = prev.mode === 'full' ? limits.startBytesPerSec : prev.target;
  const cut = Math.max(limits.minBytesPerSec, from * limits.decreaseFactor);
  const keep = { sinceProbeS: (prev.sinceProbeS ?? Infinity) + dtS, baseLatencyMs: prev.baseLatencyMs };

  const paused = prev.mode === 'pause';
  if (psi !== undefined && (paused ? psi >= limits.resumePressure : psi > limits.pausePressure)) {
    const reason = paused
      ? `io pressure ${pct(psi)} ≥ ${pct(limits.resumePressure)}: still paused`
      : `io pressure ${pct(psi)} > ${pct(limits.pausePressure)}: pausing`;
    return { ...keep, rate: 0, target: paused ? from : cut, mode: 'pause', reason, load };
  }

  // a probe: no reads of ours for probePeriods samples; the last one is the foreground alone
  if (prev.mode === 'probe' && (prev.probeLeft ?? 0) > 1) {
    const left = (prev.probeLeft ?? 2) - 1;
    return { ...keep, rate: 0, target: from, mode: 'probe', probeLeft: left, reason: prev.reason, load };
  }
  let baseLatencyMs = keep.baseLatencyMs;
  let probed = '';
  if (prev.mode === 'probe') {
    baseLatencyMs = relativeOn(load, limits) ? lat : undefined;
    keep.sinceProbeS = 0;
    probed =
      baseLatencyMs === undefined
        ? 'probe: foreground too quiet to measure; '
        : `probe: foreground alone ${ms(baseLatencyMs)}; `;
  } else if (relativeOn(load, limits) && keep.sinceProbeS >= limits.probeEverySec) {
    return {
      ...keep,
      rate: 0,
      target: from,
      mode: 'probe',
      probeLeft: limits.probePeriods,
      reason: `pausing ${Math.round(limits.probePeriods * load.dtMs)} ms to measure the foreground alone`,
      load,
    };
  }
  // the base is only what a probe measured: a lower reading later is usually another mix of
  // requests (small ones are faster), not the same foreground without us
  const next = law(prev, load, limits, {
    from,
    cut,
    dtS,
    lat,
    psi,
    baseLatencyMs: relativeOn(load, limits) ? baseLatencyMs : undefined,
  });
  return { ...next, reason: probed + next.reason, sinceProbeS: keep.sinceProbeS, baseLatencyMs, load };
}

interface LawInput {
  from: number;
  cut: number;
  dtS: number;
  lat: number | undefined;
  psi: number | undefined;
  /** The foreground's own latency when the relative rule applies to this sample. */
  baseLatencyMs: number | undefined;
}

/** The latency at which the relative rule acts: `factor` × the foreground alone, and at least relativeMinDeltaMs more. */
function relative(alone: number, factor: number, limits: ThrottleLimits): number {
  return Math.max(alone * factor, alone + limits.relativeMinDeltaMs);
}

/** Stop, slow down, hold or ramp up. */
function law(prev: ControllerState, load: Load, limits: ThrottleLimits, x: LawInput): ControllerState {
  const { maxBytesPerSec: max, minBytesPerSec: min } = limits;
  const { from, cut, dtS, lat, psi, baseLatencyMs: alone } = x;
  if (lat !== undefined && lat >= limits.stopMs) {
    // each sample still above stopMs cuts the rate we will resume at
    return {
      rate: 0,
      target: cut,
      mode: 'stop',
      reason: `latency ${ms(lat)} ≥ ${ms(limits.stopMs)}: no new reads (will resume at ${formatRate(cut)})`,
    };
  }
  const slowBy: string[] = [];
  if (lat !== undefined && lat >= limits.slowDownMs) slowBy.push(`latency ${ms(lat)} ≥ ${ms(limits.slowDownMs)}`);
  else if (lat !== undefined && alone !== undefined && lat >= relative(alone, limits.relativeSlow, limits))
    slowBy.push(`latency ${ms(lat)} ≥ ${limits.relativeSlow} × ${ms(alone)} alone`);
  if (psi !== undefined && psi >= limits.slowPressure)
    slowBy.push(`io pressure ${pct(psi)} ≥ ${pct(limits.slowPressure)}`);
  if (slowBy.length > 0) {
    return { rate: cut, target: cut, mode: 'slow', reason: `${slowBy.join(', ')}: slowing to ${formatRate(cut)}` };
  }
  const resumed = prev.mode === 'pause' || prev.mode === 'stop' ? 'resuming; ' : '';
  const holdBy: string[] = [];
  if (lat !== undefined && lat >= limits.slowDownMs * limits.calmFraction)
    holdBy.push(`latency ${ms(lat)} near ${ms(limits.slowDownMs)}`);
  else if (lat !== undefined && alone !== undefined && lat >= relative(alone, limits.relativeCalm, limits))
    holdBy.push(`latency ${ms(lat)} near ${limits.relativeSlow} × ${ms(alone)} alone`);
  const busy = load.utilisation !== undefined && load.utilisation >= limits.holdUtilisation;
  if (busy && (load.foregroundIops ?? 0) > 0) holdBy.push(`device ${pct((load.utilisation ?? 0) * 100)} busy`);
  if (holdBy.length > 0) {
    const r = Math.min(max, Math.max(min, from));
    return { rate: r, target: r, mode: 'hold', reason: `${resumed}${holdBy.join(', ')}: holding ${formatRate(r)}` };
  }
  // nobody else uses the devices: nothing to protect, so grow like TCP's slow start (×2 per second)
  const idle = lat === undefined && load.foregroundIops !== undefined;
  const grown = idle
    ? Math.max(from * 2 ** dtS, from + limits.increasePerSec * dtS)
    : from + limits.increasePerSec * dtS;
  const up = Math.min(max, Math.max(min, grown));
  const why =
    lat === undefined
      ? load.foregroundIops === undefined
        ? 'no latency signal'
        : 'foreground idle'
      : `latency ${ms(lat)}`;
  const reason =
    up >= max
      ? `${resumed}${why}: at the cap (${formatRate(max)})`
      : `${resumed}${why}: ramping up to ${formatRate(up)}`;
  return { rate: up, target: up, mode: 'run', reason };
}

/** Local minute of the day (0..1439) of an epoch time. */
export function localMinuteOfDay(epochMs: number): number {
  const d = new Date(epochMs);
  return (d.getHours() * 60 + d.getMinutes()) % MINUTES_PER_DAY;
}

/** The law with its state and an injectable wall clock (for the quiet windows). */
export class ThrottleController {
  readonly limits: ThrottleLimits;
  private current: ControllerState;

  constructor(
    limits: Partial<ThrottleLimits> = {},
    private readonly minuteOfDay: (epochMs: number) => number = localMinuteOfDay,
  ) {
    this.limits = resolveLimits(limits);
    this.current = initialState(this.limits);
  }

  get state(): ControllerState {
    return this.current;
  }

  /** Feeds one load sample taken at wall time `epochMs`; returns the new state. */
  step(load: Load, epochMs: number): ControllerState {
    this.current = decide(this.current, load, this.limits, this.minuteOfDay(epochMs));
    return this.current;
  }
}
