import { describe, expect, it } from 'vitest';
import {
  type ControllerState,
  decide,
  DEFAULT_LIMITS,
  formatRate,
  inWindow,
  MB,
  parseTimeOfDay,
  resolveLimits,
  ThrottleController,
  type ThrottleLimits,
} from '../../agent/throttle/controller.js';
import type { Load } from '../../agent/throttle/sensors.js';
import { CorruptError } from '../../parsers/errors.js';

const PERIOD = 500;
const calm: Load = { dtMs: PERIOD, latencyMs: 2, foregroundIops: 100, utilisation: 0.2, pressureSome: 1 };
const slow = (latencyMs: number): Load => ({ ...calm, latencyMs });
const pressure = (pressureSome: number): Load => ({ ...calm, pressureSome });

/** A simulated run: feeds loads one period apart from 12:00 UTC and returns every state. */
function run(loads: Load[], limits: Partial<ThrottleLimits> = {}, startMinute = 12 * 60): ControllerState[] {
  let t = Date.UTC(2026, 10, 23, 0, startMinute);
  // the relative rule (with its probes) has its own tests below
  const c = new ThrottleController(
    { relativeSlow: 0, ...limits },
    (ms) => new Date(ms).getUTCHours() * 60 + new Date(ms).getUTCMinutes(),
  );
  return loads.map((l) => {
    t += l.dtMs;
    return c.step(l, t);
  });
}
const repeat = <T>(x: T, n: number): T[] => Array.from({ length: n }, () => x);

describe('the control law', () => {
  it('ramps up additively while calm, up to the cap', () => {
    const states = run(repeat(calm, 60), {
      maxBytesPerSec: 50 * MB,
      startBytesPerSec: 10 * MB,
      increasePerSec: 4 * MB,
    });
    expect(states[0]?.rate).toBeCloseTo(12 * MB);
    expect(states[1]?.rate).toBeCloseTo(14 * MB);
    for (let i = 1; i < states.length; i++) expect(states[i]?.rate).toBeGreaterThanOrEqual(states[i - 1]?.rate ?? 0);
    expect(states.at(-1)?.rate).toBe(50 * MB);
    expect(states.at(-1)?.reason).toMatch(/at the cap \(50 MB\/s\)/);
    expect(states.at(-1)?.mode).toBe('run');
  });

  it('halves within one sample when latency steps above slowDownMs, down to the floor', () => {
    const states = run([...repeat(calm, 20), ...repeat(slow(27), 12)], {
      maxBytesPerSec: 80 * MB,
      startBytesPerSec: 80 * MB,
      minBytesPerSec: 2 * MB,
    });
    expect(states[19]?.rate).toBe(80 * MB);
    const first = states[20];
    expect(first?.mode).toBe('slow');
    expect(first?.rate).toBe(40 * MB);
    expect(first?.reason).toBe('latency 27 ms ≥ 20 ms: slowing to 40 MB/s');
    expect(states[21]?.rate).toBe(20 * MB);
    expect(states.at(-1)?.rate).toBe(2 * MB); // the floor
  });

  it('stops starting reads at ≥ stopMs, and resumes at a cut rate when it falls', () => {
    const states = run([...repeat(calm, 4), slow(45), slow(31), calm, calm], {
      startBytesPerSec: 40 * MB,
      increasePerSec: 2 * MB,
    });
    const before = states[3]?.rate ?? 0;
    expect(states[4]).toMatchObject({ mode: 'stop', rate: 0 });
    expect(states[4]?.reason).toMatch(/^latency 45 ms ≥ 30 ms: no new reads \(will resume at/);
    expect(states[5]).toMatchObject({ mode: 'stop', rate: 0 });
    expect(states[5]?.target).toBeCloseTo(before / 4);
    expect(states[6]?.mode).toBe('run');
    expect(states[6]?.rate).toBeCloseTo(before / 4 + MB);
    expect(states[6]?.reason).toMatch(/^resuming; latency 2\.0 ms: ramping up/);
  });

  it('slows on io pressure, pauses above pausePressure and resumes only below resumePressure', () => {
    const states = run([calm, pressure(45), pressure(85), pressure(70), pressure(55), pressure(30), calm], {
      startBytesPerSec: 40 * MB,
      increasePerSec: 2 * MB,
    });
    expect(states[1]).toMatchObject({ mode: 'slow', rate: 20.5 * MB });
    expect(states[1]?.reason).toMatch(/io pressure 45 % ≥ 40 %/);
    expect(states[2]).toMatchObject({ mode: 'pause', rate: 0 });
    expect(states[2]?.reason).toBe('io pressure 85 % > 80 %: pausing');
    expect(states[3]).toMatchObject({ mode: 'pause', rate: 0 });
    expect(states[4]).toMatchObject({ mode: 'pause', rate: 0 }); // 55 % is still above resumePressure 50 %
    expect(states[5]?.mode).toBe('run');
    expect(states[5]?.rate).toBeGreaterThan(0);
    expect(states[5]?.rate).toBeLessThan(20.5 * MB);
  });

  it('holds between calmFraction × slowDownMs and slowDownMs, and on a saturated device', () => {
    const states = run([calm, slow(17), slow(16), { ...calm, utilisation: 0.99 }, calm]);
    expect(states[1]?.mode).toBe('hold');
    expect(states[1]?.rate).toBe(states[0]?.rate);
    expect(states[2]?.rate).toBe(states[0]?.rate);
    expect(states[3]?.mode).toBe('hold');
    expect(states[3]?.reason).toMatch(/device 99 % busy/);
    expect(states[4]?.rate).toBeGreaterThan(states[3]?.rate ?? Infinity);
  });

  it('an idle foreground, or no sensor at all, counts as calm', () => {
    const idle = run([{ dtMs: PERIOD, foregroundIops: 0, utilisation: 0.9 }, { dtMs: PERIOD }]);
    expect(idle[0]?.reason).toMatch(/^foreground idle: ramping up/);
    // an idle foreground: ×2 per second (slow start), faster than the additive step
    expect(idle[0]?.rate).toBeCloseTo(20 * MB * Math.SQRT2);
    expect(idle[1]?.reason).toMatch(/^no latency signal: ramping up/);
    expect(idle[1]?.rate).toBeCloseTo((idle[0]?.rate ?? 0) + 5 * MB); // no sensor: additive only
  });

  it('pressure while the devices see no foreground is ours: ignored', () => {
    const states = run([{ dtMs: PERIOD, foregroundIops: 0, latencyMs: undefined, pressureSome: 95 }, pressure(95)]);
    expect(states[0]?.mode).toBe('run');
    expect(states[1]?.mode).toBe('pause');
  });

  it('under oscillating load the rate saw-tooths and never leaves [floor, cap]', () => {
    const loads: Load[] = [];
    for (let i = 0; i < 200; i++) loads.push(i % 10 < 7 ? calm : slow(25));
    const limits = { maxBytesPerSec: 100 * MB, minBytesPerSec: 3 * MB, startBytesPerSec: 50 * MB };
    const states = run(loads, limits);
    for (const s of states) {
      expect(s.rate).toBeGreaterThanOrEqual(3 * MB);
      expect(s.rate).toBeLessThanOrEqual(100 * MB);
    }
    const slowRates = states.filter((s) => s.mode === 'slow').map((s) => s.rate);
    // every busy spell of 3 samples halves three times: the rate never reaches the cap
    expect(Math.max(...states.map((s) => s.rate))).toBeLessThan(100 * MB);
    expect(slowRates.length).toBe(60);
    // and the mean stays well below what an unthrottled run would do
    const mean = states.reduce((a, s) => a + s.rate, 0) / states.length;
    expect(mean).toBeLessThan(30 * MB);
  });

  it('inside a quiet window: full speed whatever the load, then back to the start rate', () => {
    const limits = { quietWindows: [{ start: '12:01', end: '12:02' }], maxBytesPerSec: 150 * MB };
    // 12:00:00 + 0.5 s steps: 120 steps before the window, 120 in it, some after
    const loads = [...repeat(slow(50), 130), ...repeat(slow(50), 120), calm];
    const states = run(loads, limits);
    expect(states[100]?.mode).toBe('stop');
    const inside = states[150];
    expect(inside).toMatchObject({ mode: 'full', rate: 150 * MB });
    expect(inside?.reason).toBe('quiet window 12:01–12:02: full speed (150 MB/s)');
    const after = states[states.length - 1];
    expect(after?.mode).toBe('run');
    expect(after?.rate).toBeLessThan(30 * MB);
  });

  it('quiet windows wrap past midnight', () => {
    const w = { start: '22:30', end: '06:00' };
    expect(inWindow(w, parseTimeOfDay('23:00'))).toBe(true);
    expect(inWindow(w, parseTimeOfDay('05:59'))).toBe(true);
    expect(inWindow(w, parseTimeOfDay('06:00'))).toBe(false);
    expect(inWindow(w, parseTimeOfDay('12:00'))).toBe(false);
    expect(inWindow({ start: '01:00', end: '02:00' }, 90)).toBe(true);
    expect(inWindow({ start: '01:00', end: '01:00' }, 700)).toBe(true);
  });

  it('decide is pure: same inputs, same answer, no shared state', () => {
    const l = resolveLimits();
    const s0 = { rate: 10 * MB, target: 10 * MB, mode: 'run' as const, reason: '' };
    expect(decide(s0, slow(25), l, 0)).toEqual(decide(s0, slow(25), l, 0));
    expect(s0.rate).toBe(10 * MB);
  });
});

describe('the relative rule (fast devices)', () => {
  const fg = (latencyMs: number, foregroundIops = 1000): Load => ({
    dtMs: PERIOD,
    latencyMs,
    foregroundIops,
    utilisation: 0.5,
  });
  const rel = { relativeSlow: 1.3, relativeMinDeltaMs: 0.1, startBytesPerSec: 40 * MB };

  it('probes the foreground alone, then slows when we add 30 % to its latency', () => {
    const states = run([fg(1.0), fg(1.0), fg(0.8), fg(0.85), fg(1.2), fg(0.9), fg(0.8)], rel);
    expect(states[0]).toMatchObject({ mode: 'probe', rate: 0, target: 40 * MB });
    expect(states[0]?.reason).toBe('pausing 1000 ms to measure the foreground alone');
    expect(states[1]).toMatchObject({ mode: 'probe', rate: 0 });
    expect(states[2]?.baseLatencyMs).toBe(0.8);
    expect(states[2]?.reason).toMatch(/^probe: foreground alone 0\.8 ms; latency 0\.8 ms: ramping up to 45 MB\/s$/);
    expect(states[3]?.mode).toBe('run');
    expect(states[4]).toMatchObject({ mode: 'slow', rate: 25 * MB });
    expect(states[4]?.reason).toBe('latency 1.2 ms ≥ 1.3 × 0.8 ms alone: slowing to 25 MB/s');
    expect(states[5]?.mode).toBe('hold');
    expect(states[6]?.mode).toBe('run');
  });

  it('probes again every probeEverySec, and not at all for a quiet foreground', () => {
    const states = run([...repeat(fg(1), 3), ...repeat(fg(1), 60), fg(1)], { ...rel, probeEverySec: 30 });
    const probes = states.map((s, i) => (s.mode === 'probe' && s.probeLeft === 2 ? i : -1)).filter((i) => i >= 0);
    expect(probes).toEqual([0, 62]);
    const quiet = run(repeat(fg(5, 20), 10), rel);
    expect(quiet.every((s) => s.mode === 'run')).toBe(true);
  });

  it('the base is what the probe measured; noise below relativeMinDeltaMs is not acted on', () => {
    const states = run([fg(0.2), fg(0.2), fg(0.1), fg(0.05), fg(0.3), fg(0.5), ...repeat(fg(0.4, 10), 70)], {
      ...rel,
      relativeMinDeltaMs: 0.3,
    });
    expect(states[2]?.baseLatencyMs).toBe(0.1);
    expect(states[3]?.baseLatencyMs).toBe(0.1); // a lower reading is another mix of requests
    expect(states[4]?.mode).toBe('run'); // 3 × alone, but only 0.2 ms more
    expect(states[5]?.mode).toBe('slow'); // 0.4 ms more
    expect(states[5]?.reason).toMatch(/latency 0\.5 ms ≥ 1\.3 × 0\.1 ms alone/);
    // no probe without enough foreground; the base stays what it was
    expect(states.at(-1)?.baseLatencyMs).toBe(0.1);
    expect(states.at(-1)?.mode).toBe('run');
  });
});

describe('limits', () => {
  it('fills defaults and keeps the start inside [floor, cap]', () => {
    expect(resolveLimits()).toEqual(DEFAULT_LIMITS);
    expect(resolveLimits({ maxBytesPerSec: 5 * MB }).startBytesPerSec).toBe(5 * MB);
  });

  it('names the bad key', () => {
    expect(() => resolveLimits({ minBytesPerSec: 500 * MB })).toThrow(/minBytesPerSec: is above maxBytesPerSec/);
    expect(() => resolveLimits({ stopMs: 10 })).toThrow(/stopMs/);
    expect(() => resolveLimits({ decreaseFactor: 1 })).toThrow(/decreaseFactor/);
    expect(() => resolveLimits({ maxBytesPerSec: Number.NaN })).toThrow(/maxBytesPerSec/);
    expect(() => resolveLimits({ pausePressure: 120 })).toThrow(CorruptError);
    expect(() => resolveLimits({ relativeSlow: 0.9 })).toThrow(/relativeSlow/);
    expect(() => resolveLimits({ probePeriods: 1 })).toThrow(/probePeriods/);
    expect(() => resolveLimits({ quietWindows: [{ start: '25:00', end: '01:00' }] })).toThrow(/THROTTLE_BAD_TIME/);
  });

  it('formats rates', () => {
    expect(formatRate(40 * MB)).toBe('40 MB/s');
    expect(formatRate(1.5 * MB)).toBe('1.5 MB/s');
    expect(formatRate(800_000)).toBe('800 kB/s');
  });
});
