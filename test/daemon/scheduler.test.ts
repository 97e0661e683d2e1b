/**
 * The scheduler without a real clock: the cron arithmetic (next run checked
 * against node-cron's own walker, previous run by its definition), windows,
 * overlap skipping and catch-up after downtime, with a scheduler driven by an
 * in-memory job queue.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTask } from 'node-cron';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Catalog } from '../../catalog/catalog.js';
import type { ScheduleConfig } from '../../agent/config/types.js';
import { cronSpec, insideWindow, nextRunMs, previousRunMs, wallClock } from '../../agent/daemon/cron.js';
import {
  catalogScheduleRuns,
  Scheduler,
  type ScheduledVm,
  type ScheduleRun,
  type ScheduleRunStore,
  vmsForSchedule,
} from '../../agent/daemon/scheduler.js';
import {
  JOB_PRIORITY,
  type JobFilter,
  type JobKind,
  type JobParams,
  type JobQueue,
  type JobRow,
  type JobState,
} from '../../agent/daemon/types.js';

const UTC = 'UTC';
const at = (iso: string): number => Date.parse(iso);
const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());

describe('cron arithmetic', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const EXPRESSIONS = [
    '* * * * *',
    '*/15 * * * *',
    '0 * * * *',
    '30 2 * * *',
    '0 3 * * 0',
    '0 0 1 * *',
    '*/20 * * * * *',
    '5 0 */6 * * *',
    '0 22 * * 1-5',
    '0 0 L * *',
    '0 12 * * 1#2',
    '0 9 * * 5L',
    // the last minute of a day, after days that cannot match: a walk that jumps a day too far misses it
    '59 23 * * 1',
    '59 59 23 L * *',
  ];

  it('nextRunMs agrees with node-cron’s own walker (UTC and a zone with DST)', () => {
    for (const tz of [UTC, 'Europe/Berlin']) {
      for (const start of ['2026-01-30T23:59:30Z', '2026-06-10T12:34:56.789Z', '2026-12-31T23:00:00Z']) {
        vi.useFakeTimers({ toFake: ['Date'] });
        vi.setSystemTime(new Date(start));
        for (const expr of EXPRESSIONS) {
          const task = createTask(expr, () => undefined, { timezone: tz });
          const theirs = task.getNextRuns(4).map((d) => d.toISOString());
          void task.destroy();
          const spec = cronSpec(expr, tz);
          const ours: (string | undefined)[] = [];
          let t = at(start);
          for (let i = 0; i < theirs.length; i++) {
            const n = nextRunMs(spec, t, 400 * 24 * 3600 * 1000);
            ours.push(iso(n));
            t = n ?? t;
          }
          spec.dispose();
          expect(ours, `${expr} in ${tz} after ${start}`).toEqual(theirs);
        }
        vi.useRealTimers();
      }
    }
  });

  it('previousRunMs: known cases', () => {
    const prev = (expr: string, before: string, tz = UTC) => {
      const spec = cronSpec(expr, tz);
      try {
        return iso(previousRunMs(spec, at(before)));
      } finally {
        spec.dispose();
      }
    };
    expect(prev('* * * * *', '2026-06-10T12:00:30Z')).toBe('2026-06-10T12:00:00.000Z');
    // strictly before: a fire at the instant itself is not "previous"
    expect(prev('* * * * *', '2026-06-10T12:00:00Z')).toBe('2026-06-10T11:59:00.000Z');
    expect(prev('0 * * * *', '2026-06-10T12:00:00.001Z')).toBe('2026-06-10T12:00:00.000Z');
    expect(prev('0 * * * *', '2026-06-10T12:00:00Z')).toBe('2026-06-10T11:00:00.000Z');
    expect(prev('30 2 * * *', '2026-06-10T01:00:00Z')).toBe('2026-06-09T02:30:00.000Z');
    expect(prev('30 2 * * *', '2026-06-10T03:00:00Z')).toBe('2026-06-10T02:30:00.000Z');
    expect(prev('0 3 * * 0', '2026-06-10T00:00:00Z')).toBe('2026-06-07T03:00:00.000Z'); // a Sunday
    expect(prev('59 23 * * 1', '2026-06-10T12:00:00Z')).toBe('2026-06-08T23:59:00.000Z');
    expect(prev('0 0 1 * *', '2026-03-01T00:00:00Z')).toBe('2026-02-01T00:00:00.000Z');
    expect(prev('*/20 * * * * *', '2026-06-10T12:00:39Z')).toBe('2026-06-10T12:00:20.000Z');
    expect(prev('0 0 L * *', '2026-03-15T00:00:00Z')).toBe('2026-02-28T00:00:00.000Z');
    expect(prev('0 12 * * 1#2', '2026-06-20T00:00:00Z')).toBe('2026-06-08T12:00:00.000Z');
    // a year back is beyond the horizon (35 days): nothing to make up
    expect(prev('0 0 1 1 *', '2026-06-10T00:00:00Z')).toBeUndefined();
    // local time in a zone: 02:30 Berlin summer time is 00:30 UTC
    expect(prev('30 2 * * *', '2026-06-10T12:00:00Z', 'Europe/Berlin')).toBe('2026-06-10T00:30:00.000Z');
  });

  it('previousRunMs: a fire, and no fire between it and the instant (random instants)', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const expr of EXPRESSIONS) {
      for (const tz of [UTC, 'Europe/Berlin']) {
        const spec = cronSpec(expr, tz);
        for (let i = 0; i < 8; i++) {
          const t = at('2026-01-01T00:00:00Z') + Math.floor(rand() * 360 * 24 * 3600 * 1000);
          const p = previousRunMs(spec, t);
          if (p === undefined) continue; // e.g. '0 12 * * 1#2' can be 35 days back only rarely
          expect(p, expr).toBeLessThan(t);
          expect(spec.matches(p), `${expr} fires at ${iso(p)}`).toBe(true);
          const n = nextRunMs(spec, p);
          expect(n === undefined || n >= t, `${expr}: ${iso(n)} lies between ${iso(p)} and ${iso(t)}`).toBe(true);
        }
        spec.dispose();
      }
    }
  });

  it('windows: inside, outside, across midnight, all day', () => {
    const w = wallClock(UTC);
    const night = { start: '22:00', end: '06:00' };
    expect(insideWindow(night, w(at('2026-06-10T23:00:00Z')))).toBe(true);
    expect(insideWindow(night, w(at('2026-06-10T05:59:00Z')))).toBe(true);
    expect(insideWindow(night, w(at('2026-06-10T06:00:00Z')))).toBe(false);
    expect(insideWindow(night, w(at('2026-06-10T12:00:00Z')))).toBe(false);
    expect(insideWindow(night, w(at('2026-06-10T22:00:00Z')))).toBe(true);
    const day = { start: '09:00', end: '17:00' };
    expect(insideWindow(day, w(at('2026-06-10T08:59:00Z')))).toBe(false);
    expect(insideWindow(day, w(at('2026-06-10T09:00:00Z')))).toBe(true);
    expect(insideWindow({ start: '03:00', end: '03:00' }, w(at('2026-06-10T12:00:00Z')))).toBe(true);
  });

  it('a bad expression is a typed error naming it', () => {
    expect(() => cronSpec('61 * * * *')).toThrow(expect.objectContaining({ code: 'CRON_BAD_EXPRESSION' }));
  });
});

/** The persistent queue's behaviour, in memory. */
class FakeQueue implements JobQueue {
  rows: JobRow[] = [];
  submit(kind: JobKind, params: JobParams, origin: string): JobRow {
    const row: JobRow = {
      id: this.rows.length + 1,
      kind,
      priority: JOB_PRIORITY[kind],
      state: 'queued',
      params,
      origin,
      createdMs: 0,
      attempts: 0,
      cancelRequested: false,
    };
    this.rows.push(row);
    return row;
  }
  get(id: number): JobRow | undefined {
    return this.rows.find((r) => r.id === id);
  }
  list(f: JobFilter = {}): JobRow[] {
    const states = f.state === undefined ? undefined : ([] as JobState[]).concat(f.state);
    return this.rows
      .filter((r) => (!states || states.includes(r.state)) && (!f.kind || r.kind === f.kind))
      .reverse()
      .slice(0, f.limit ?? Infinity);
  }
  cancel(id: number): JobRow | undefined {
    const r = this.get(id);
    if (r && r.state === 'queued') r.state = 'cancelled';
    return r;
  }
  set(id: number, state: JobState): void {
    this.get(id)!.state = state;
  }
}

class MemoryRuns implements ScheduleRunStore {
  m = new Map<string, ScheduleRun>();
  get(name: string) {
    return this.m.get(name);
  }
  record(name: string, fireMs: number, jobId?: number) {
    this.m.set(name, { lastFireMs: fireMs, lastJobId: jobId ?? this.m.get(name)?.lastJobId });
  }
}

const VMS: ScheduledVm[] = [
  { identity: 'uuid-win01', name: 'win01', datastore: 'ds1' },
  { identity: 'uuid-lin01', name: 'lin01', datastore: 'ds1' },
  { identity: 'uuid-db01', name: 'db01', datastore: 'ds2' },
];

function harness(schedules: ScheduleConfig[], opts: { now?: number; vms?: ScheduledVm[] } = {}) {
  const jobs = new FakeQueue();
  const runs = new MemoryRuns();
  const lines: { msg: string; obj: Record<string, unknown> }[] = [];
  const log = pino(
    { level: 'info' },
    { write: (s: string) => void lines.push({ msg: (JSON.parse(s) as { msg: string }).msg, obj: JSON.parse(s) }) },
  );
  let discoveries = 0;
  const woken: number[][] = [];
  const clock = { now: opts.now ?? at('2026-06-10T12:00:00Z') };
  const sched = new Scheduler(schedules, {
    jobs,
    runs,
    discover: () => {
      discoveries++;
      return opts.vms ?? VMS;
    },
    log,
    onSubmit: (js) => woken.push(js.map((j) => j.id)),
    now: () => clock.now,
    timezone: UTC,
    timers: false,
  });
  return { sched, jobs, runs, lines, woken, clock, discoveries: () => discoveries };
}

describe('Scheduler', () => {
  it('a maintenance schedule queues one job and never overlaps itself', async () => {
    const h = harness([{ name: 'nightly-check', kind: 'check', cron: '0 3 * * *', readData: true }]);
    const first = await h.sched.fire('nightly-check', at('2026-06-10T03:00:00Z'));
    expect(first.submitted.map((j) => [j.kind, j.origin, j.params])).toEqual([
      ['check', 'schedule:nightly-check', { readData: true }],
    ]);
    expect(h.runs.get('nightly-check')).toEqual({ lastFireMs: at('2026-06-10T03:00:00Z'), lastJobId: 1 });
    expect(h.woken).toEqual([[1]]);
    // still queued, then running: the next fires skip
    const second = await h.sched.fire('nightly-check', at('2026-06-11T03:00:00Z'));
    expect(second.submitted).toEqual([]);
    expect(second.skipped).toMatch(/job 1 .* still queued/);
    h.jobs.set(1, 'running');
    expect((await h.sched.fire('nightly-check', at('2026-06-12T03:00:00Z'))).skipped).toMatch(/still running/);
    expect(h.runs.get('nightly-check')).toEqual({ lastFireMs: at('2026-06-12T03:00:00Z'), lastJobId: 1 });
    // a check someone else asked for is not this schedule's job: it does not block it
    h.jobs.set(1, 'done');
    h.jobs.submit('check', {}, 'api');
    const third = await h.sched.fire('nightly-check', at('2026-06-13T03:00:00Z'));
    expect(third.submitted.map((j) => j.id)).toEqual([3]);
  });

  it('a backup schedule discovers first, then queues one job per VM it covers, skipping VMs still being backed up', async () => {
    const h = harness([
      { name: 'ds1-nightly', kind: 'backup', cron: '0 1 * * *', datastores: ['ds1'] },
      { name: 'db', kind: 'backup', cron: '0 2 * * *', vms: ['db01'] },
      { name: 'all', kind: 'backup', cron: '0 4 * * *' },
    ]);
    const ds1 = await h.sched.fire('ds1-nightly', at('2026-06-10T01:00:00Z'));
    expect(h.discoveries()).toBe(1);
    expect(ds1.submitted.map((j) => [j.kind, j.params, j.origin])).toEqual([
      ['backup', { vm: 'uuid-win01' }, 'schedule:ds1-nightly'],
      ['backup', { vm: 'uuid-lin01' }, 'schedule:ds1-nightly'],
    ]);
    // win01's backup runs on: 'all' queues the other two and says why it left win01 out
    h.jobs.set(1, 'running');
    h.jobs.set(2, 'done');
    const all = await h.sched.fire('all', at('2026-06-10T04:00:00Z'));
    expect(all.submitted.map((j) => (j.params as { vm: string }).vm)).toEqual(['uuid-lin01', 'uuid-db01']);
    expect(all.skipped).toMatch(/win01/);
    expect(h.runs.get('all')?.lastJobId).toBe(4);
    // db01 is now queued (by 'all'): the 'db' schedule finds nothing to do
    const db = await h.sched.fire('db', at('2026-06-10T02:00:00Z'));
    expect(db.submitted).toEqual([]);
    expect(db.skipped).toMatch(/db01/);
    expect(h.runs.get('db')).toEqual({ lastFireMs: at('2026-06-10T02:00:00Z'), lastJobId: undefined });
  });

  it('vmsForSchedule matches VMs by name or identity within the datastores', () => {
    const s = (x: Partial<ScheduleConfig>): ScheduleConfig => ({ name: 'x', kind: 'backup', cron: '* * * * *', ...x });
    expect(vmsForSchedule(s({}), VMS).map((v) => v.name)).toEqual(['win01', 'lin01', 'db01']);
    expect(vmsForSchedule(s({ datastores: ['ds2'] }), VMS).map((v) => v.name)).toEqual(['db01']);
    expect(vmsForSchedule(s({ vms: ['uuid-lin01', 'db01'] }), VMS).map((v) => v.name)).toEqual(['lin01', 'db01']);
    expect(vmsForSchedule(s({ vms: ['db01'], datastores: ['ds1'] }), VMS)).toEqual([]);
  });

  it('a fire outside the window is skipped and logged; inside, it runs (window across midnight)', async () => {
    const h = harness([{ name: 'night', kind: 'prune', cron: '0 * * * *', window: { start: '22:00', end: '06:00' } }]);
    const noon = await h.sched.fire('night', at('2026-06-10T12:00:00Z'));
    expect(noon.submitted).toEqual([]);
    expect(noon.skipped).toMatch(/outside its window 22:00-06:00/);
    expect(h.lines.some((l) => /outside its window/.test(l.msg) && l.obj.schedule === 'night')).toBe(true);
    expect((await h.sched.fire('night', at('2026-06-10T23:00:00Z'))).submitted).toHaveLength(1);
    h.jobs.set(1, 'done');
    expect((await h.sched.fire('night', at('2026-06-11T05:00:00Z'))).submitted).toHaveLength(1);
  });

  it('catch-up: a run missed while down runs once at start, only inside its window', async () => {
    const schedules: ScheduleConfig[] = [
      { name: 'nightly', kind: 'backup', cron: '0 2 * * *', window: { start: '01:00', end: '05:00' } },
      { name: 'ship', kind: 'ship', cron: '0 * * * *' },
      { name: 'new', kind: 'check', cron: '0 * * * *' },
    ];
    // down from day 1 03:00 to day 3 03:30: 'nightly' missed two runs, 'ship' dozens; 'new' never fired
    const h = harness(schedules, { now: at('2026-06-12T03:30:00Z') });
    h.runs.record('nightly', at('2026-06-10T02:00:00Z'), 99);
    h.runs.record('ship', at('2026-06-10T03:00:00Z'));
    const outcomes = await h.sched.start();
    expect(outcomes.map((o) => [o.schedule, o.reason, o.submitted.length])).toEqual([
      ['nightly', 'catch-up', 3],
      ['ship', 'catch-up', 1],
    ]);
    expect(h.runs.get('nightly')?.lastFireMs).toBe(at('2026-06-12T03:30:00Z'));
    // started again a minute later: nothing more is missed
    const again = await h.sched.catchUp(at('2026-06-12T03:31:00Z'));
    expect(again).toEqual([]);
    // outside the window the missed nightly run is not made up (ship has no window: it is)
    const late = harness(schedules, { now: at('2026-06-12T10:05:00Z') });
    late.runs.record('nightly', at('2026-06-10T02:00:00Z'));
    late.runs.record('ship', at('2026-06-12T09:00:00Z'));
    expect((await late.sched.start()).map((o) => o.schedule)).toEqual(['ship']);
    expect(late.lines.some((l) => /not made up: outside its window/.test(l.msg))).toBe(true);
    // nothing missed: the last fire is the latest scheduled time
    const upToDate = harness(schedules, { now: at('2026-06-12T02:30:00Z') });
    upToDate.runs.record('nightly', at('2026-06-12T02:00:00Z'));
    upToDate.runs.record('ship', at('2026-06-12T02:00:00Z'));
    expect(await upToDate.sched.start()).toEqual([]);
  });

  it('status gives next and last runs with the last job’s state; reload swaps the schedules and leaves jobs alone', async () => {
    const h = harness([{ name: 'hourly', kind: 'ship', cron: '0 * * * *' }], { now: at('2026-06-10T12:10:00Z') });
    await h.sched.fire('hourly', at('2026-06-10T12:00:00Z'));
    h.jobs.set(1, 'running');
    expect(h.sched.status()).toEqual([
      {
        name: 'hourly',
        kind: 'ship',
        cron: '0 * * * *',
        nextRunMs: at('2026-06-10T13:00:00Z'),
        lastFireMs: at('2026-06-10T12:00:00Z'),
        lastJob: { id: 1, state: 'running' },
      },
    ]);
    h.sched.reload([
      { name: 'hourly', kind: 'ship', cron: '30 * * * *' },
      { name: 'weekly', kind: 'prune', cron: '0 5 * * 0' },
    ]);
    expect(h.sched.status().map((s) => [s.name, iso(s.nextRunMs)])).toEqual([
      ['hourly', '2026-06-10T12:30:00.000Z'],
      ['weekly', '2026-06-14T05:00:00.000Z'],
    ]);
    expect(h.jobs.get(1)?.state).toBe('running');
    h.sched.reload([{ name: 'weekly', kind: 'prune', cron: '0 5 * * 0' }]);
    expect((await h.sched.fire('hourly', at('2026-06-10T13:30:00Z'))).skipped).toMatch(/gone/);
    h.sched.stop();
  });

  it('a discovery that fails is logged and the fire submits nothing', async () => {
    const jobs = new FakeQueue();
    const lines: string[] = [];
    const sched = new Scheduler([{ name: 'b', kind: 'backup', cron: '* * * * *' }], {
      jobs,
      runs: new MemoryRuns(),
      discover: () => Promise.reject(new Error('datastore offline')),
      log: pino({ level: 'info' }, { write: (s: string) => void lines.push(s) }),
      timezone: UTC,
      timers: false,
    });
    const o = await sched.fire('b', at('2026-06-10T12:00:00Z'));
    expect(o.submitted).toEqual([]);
    expect(o.skipped).toMatch(/datastore offline/);
    expect(lines.join('')).toMatch(/schedule fire failed/);
  });

  it('with timers, node-cron fires the schedule (every second)', async () => {
    const jobs = new FakeQueue();
    const sched = new Scheduler([{ name: 'tick', kind: 'check', cron: '* * * * * *' }], {
      jobs,
      runs: new MemoryRuns(),
      discover: () => [],
      log: pino({ level: 'silent' }),
    });
    await sched.start();
    try {
      await vi.waitFor(() => expect(jobs.rows.length).toBeGreaterThan(0), { timeout: 10_000, interval: 100 });
      expect(jobs.rows[0]!.origin).toBe('schedule:tick');
    } finally {
      sched.stop();
    }
  });
});

describe('Scheduler with node-cron timers', () => {
  it('a slot node-cron drops because the thread was blocked still fires, late and once', async () => {
    const jobs = new FakeQueue();
    const lines: string[] = [];
    // one slot, two seconds from now (UTC), and none for the next minute
    const slot = new Date(Math.ceil(Date.now() / 1000) * 1000 + 2000);
    const cron = `${slot.getUTCSeconds()} ${slot.getUTCMinutes()} ${slot.getUTCHours()} * * *`;
    const sched = new Scheduler([{ name: 'once', kind: 'prune', cron }], {
      jobs,
      runs: new MemoryRuns(),
      discover: () => [],
      log: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
      timezone: UTC,
      missedToleranceMs: 500,
    });
    await sched.start();
    try {
      // the main thread is busy (a long synchronous catalog write, say) across the slot
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, slot.getTime() + 2500 - Date.now());
      await vi.waitFor(() => expect(jobs.rows).toHaveLength(1), { timeout: 5000, interval: 50 });
      expect(lines.join('')).toMatch(/schedule fired late/);
      await new Promise((r) => setTimeout(r, 300));
      expect(jobs.rows).toHaveLength(1);
    } finally {
      sched.stop();
    }
  });
});

describe('schedule_runs in the catalog', () => {
  it('remembers the last fire and keeps the last job across skipped fires', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-sched-'));
    const cat = Catalog.open(join(dir, 'catalog.db'), { create: true });
    try {
      const runs = catalogScheduleRuns(cat);
      expect(runs.get('a')).toBeUndefined();
      runs.record('a', 1000, 7);
      expect(runs.get('a')).toEqual({ lastFireMs: 1000, lastJobId: 7 });
      runs.record('a', 2000);
      expect(runs.get('a')).toEqual({ lastFireMs: 2000, lastJobId: 7 });
      runs.record('b', 3000);
      expect(runs.get('b')).toEqual({ lastFireMs: 3000 });
    } finally {
      cat.close();
    }
  });
});
