/**
 * Retention policy (agent/retention.ts): hand-computed tables, the example of
 * restic's documentation, ISO weeks checked against GNU date, and one random
 * schedule whose answer restic 0.14 gave (see the comment there).
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import {
  applyRetention,
  isoWeek,
  parseRetentionArgs,
  RetentionError,
  type BackupForRetention,
  type RetentionDecision,
  type RetentionPolicy,
} from '../../agent/retention.js';

/** Backups numbered 1, 2, … in the order given, times in UTC ('2026-03-01T08:00' or with seconds). */
function backups(...times: string[]): BackupForRetention[] {
  return times.map((t, i) => ({ id: i + 1, time: new Date(`${t}Z`) }));
}

/** The decision as `{ id: reasons }` plus the removed ids, easy to compare with a hand-written table. */
function table(d: RetentionDecision): { keep: Record<number, string[]>; remove: number[] } {
  return { keep: Object.fromEntries(d.keep.map((k) => [k.id, k.reasons])), remove: d.remove };
}

function expectRetentionError(f: () => unknown, code: string, usage: boolean, option?: string): RetentionError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(RetentionError);
  const e = caught as RetentionError;
  expect(e.code).toBe(code);
  expect(e.usage).toBe(usage);
  if (option !== undefined) expect(e.option).toBe(option);
  return e;
}

describe('keep-last', () => {
  const list = backups(
    '2026-01-01T00:00',
    '2026-01-02T00:00',
    '2026-01-03T00:00',
    '2026-01-04T00:00',
    '2026-01-05T00:00',
  );

  it('keeps the N newest, newest first', () => {
    const d = applyRetention(list, { keepLast: 3 });
    expect(d.keep).toEqual([
      { id: 5, reasons: ['last'] },
      { id: 4, reasons: ['last'] },
      { id: 3, reasons: ['last'] },
    ]);
    expect(d.remove).toEqual([2, 1]);
  });

  it('keeps everything when N is larger than the number of backups', () => {
    const d = applyRetention(list, { keepLast: 50 });
    expect(d.keep.map((k) => k.id)).toEqual([5, 4, 3, 2, 1]);
    expect(d.remove).toEqual([]);
  });

  it('does not depend on the order of the input', () => {
    const shuffled = [list[2]!, list[0]!, list[4]!, list[1]!, list[3]!];
    expect(applyRetention(shuffled, { keepLast: 2 })).toEqual(applyRetention(list, { keepLast: 2 }));
  });

  it('an empty list keeps and removes nothing', () => {
    expect(applyRetention([], { keepLast: 1 })).toEqual({ keep: [], remove: [] });
  });
});

describe('time rules', () => {
  it('keep-daily keeps the newest backup of each of the N most recent days that hold backups', () => {
    // 03-04 has no backup: it does not use up a slot.
    const list = backups(
      '2026-03-01T08:00', // 1
      '2026-03-01T20:00', // 2
      '2026-03-02T09:00', // 3
      '2026-03-03T01:00', // 4
      '2026-03-03T23:59', // 5
      '2026-03-05T12:00', // 6
    );
    expect(table(applyRetention(list, { keepDaily: 3 }))).toEqual({
      keep: { 6: ['daily'], 5: ['daily'], 3: ['daily'] },
      remove: [4, 2, 1],
    });
  });

  it('keep-hourly: hours are exact to the millisecond, across midnight', () => {
    const list = backups(
      '2026-05-10T22:10', // 1
      '2026-05-10T22:50', // 2
      '2026-05-10T23:05', // 3
      '2026-05-10T23:59:59.999', // 4
      '2026-05-11T00:00:00.000', // 5
    );
    expect(table(applyRetention(list, { keepHourly: 2 }))).toEqual({
      keep: { 5: ['hourly'], 4: ['hourly'] },
      remove: [3, 2, 1],
    });
    expect(table(applyRetention(list, { keepHourly: 3 }))).toEqual({
      keep: { 5: ['hourly'], 4: ['hourly'], 2: ['hourly'] },
      remove: [3, 1],
    });
  });

  it('keep-monthly and keep-yearly use calendar months and years', () => {
    const list = backups('2025-12-31T23:59', '2026-01-01T00:00', '2026-01-31T10:00', '2026-02-01T10:00');
    expect(table(applyRetention(list, { keepMonthly: 2 }))).toEqual({
      keep: { 4: ['monthly'], 3: ['monthly'] },
      remove: [2, 1],
    });
    expect(table(applyRetention(list, { keepYearly: 2 }))).toEqual({
      keep: { 4: ['yearly'], 1: ['yearly'] },
      remove: [3, 2],
    });
  });

  it('a backup kept by several rules lists every reason, and each rule counts it', () => {
    // Daily at 02:00 from Thursday 2026-01-29 to Tuesday 2026-02-03.
    const list = backups(
      '2026-01-29T02:00', // 1
      '2026-01-30T02:00', // 2
      '2026-01-31T02:00', // 3
      '2026-02-01T02:00', // 4
      '2026-02-02T02:00', // 5
      '2026-02-03T02:00', // 6
    );
    expect(table(applyRetention(list, { keepLast: 2, keepDaily: 3, keepMonthly: 2 }))).toEqual({
      keep: { 6: ['last', 'daily', 'monthly'], 5: ['last', 'daily'], 4: ['daily'], 3: ['monthly'] },
      remove: [2, 1],
    });
  });
});

describe('ISO weeks', () => {
  it('knows the week-years around new year', () => {
    // 2026 starts on a Thursday, so it has 53 ISO weeks and 2027-01-01..03 belong to its week 53.
    expect(isoWeek(2026, 12, 27)).toEqual({ year: 2026, week: 52 });
    expect(isoWeek(2026, 12, 28)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2026, 12, 31)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 1)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 3)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 4)).toEqual({ year: 2027, week: 1 });
    expect(isoWeek(2024, 12, 30)).toEqual({ year: 2025, week: 1 });
    expect(isoWeek(2021, 1, 3)).toEqual({ year: 2020, week: 53 });
  });

  it('agrees with GNU date (%G-%V) on every day from 2019 to 2031', () => {
    const days: string[] = [];
    for (let t = Date.UTC(2019, 0, 1); t <= Date.UTC(2031, 11, 31); t += 86_400_000) {
      days.push(new Date(t).toISOString().slice(0, 10));
    }
    const r = spawnSync('date', ['-u', '-f', '-', '+%G-%V'], { input: days.join('\n') + '\n', encoding: 'utf8' });
    expect(r.status).toBe(0);
    const oracle = r.stdout.trim().split('\n');
    expect(oracle).toHaveLength(days.length);
    const mismatches = days.filter((d, i) => {
      const w = isoWeek(Number(d.slice(0, 4)), Number(d.slice(5, 7)), Number(d.slice(8, 10)));
      return `${w.year}-${String(w.week).padStart(2, '0')}` !== oracle[i];
    });
    expect(mismatches).toEqual([]);
  });

  it('keep-weekly groups 2026-12-28 .. 2027-01-03 into one week, unlike keep-yearly', () => {
    const list = backups(
      '2026-12-27T12:00', // 1  Sunday, 2026-W52
      '2026-12-28T12:00', // 2  Monday, 2026-W53
      '2026-12-31T12:00', // 3  2026-W53
      '2027-01-01T12:00', // 4  2026-W53
      '2027-01-03T23:00', // 5  Sunday, 2026-W53
      '2027-01-04T00:30', // 6  Monday, 2027-W01
    );
    expect(table(applyRetention(list, { keepWeekly: 2 }))).toEqual({
      keep: { 6: ['weekly'], 5: ['weekly'] },
      remove: [4, 3, 2, 1],
    });
    expect(table(applyRetention(list, { keepWeekly: 3 }))).toEqual({
      keep: { 6: ['weekly'], 5: ['weekly'], 1: ['weekly'] },
      remove: [4, 3, 2],
    });
    expect(table(applyRetention(list, { keepYearly: 2 }))).toEqual({
      keep: { 6: ['yearly'], 3: ['yearly'] },
      remove: [5, 4, 2, 1],
    });
  });
});

describe('the oldest backup', () => {
  const list = backups('2026-01-05T10:00', '2026-01-20T10:00', '2026-02-10T10:00');

  it('is kept when a time rule has slots left (more history than the newest of each month)', () => {
    expect(table(applyRetention(list, { keepMonthly: 6 }))).toEqual({
      keep: { 3: ['monthly'], 2: ['monthly'], 1: ['monthly (oldest)'] },
      remove: [],
    });
    expect(table(applyRetention(list, { keepLast: 1, keepMonthly: 6 }))).toEqual({
      keep: { 3: ['last', 'monthly'], 2: ['monthly'], 1: ['monthly (oldest)'] },
      remove: [],
    });
  });

  it('is not kept when the rule is full', () => {
    expect(table(applyRetention(list, { keepMonthly: 2 }))).toEqual({
      keep: { 3: ['monthly'], 2: ['monthly'] },
      remove: [1],
    });
  });

  it('keep-daily larger than the days available keeps every day and the oldest', () => {
    const l = backups(
      '2026-03-01T08:00',
      '2026-03-01T20:00',
      '2026-03-02T09:00',
      '2026-03-03T01:00',
      '2026-03-03T23:59',
      '2026-03-05T12:00',
    );
    expect(table(applyRetention(l, { keepDaily: 10 }))).toEqual({
      keep: { 6: ['daily'], 5: ['daily'], 3: ['daily'], 2: ['daily'], 1: ['daily (oldest)'] },
      remove: [4],
    });
  });

  it('a single backup is simply the newest of its period', () => {
    expect(applyRetention(backups('2026-01-05T10:00'), { keepDaily: 3 })).toEqual({
      keep: [{ id: 1, reasons: ['daily'] }],
      remove: [],
    });
  });
});

describe('duplicate timestamps', () => {
  // Two backups of the same instant (e.g. taken from one storage snapshot): the higher id counts as newer.
  const list: BackupForRetention[] = [
    { id: 7, time: new Date('2026-06-01T10:00Z') },
    { id: 8, time: new Date('2026-06-01T10:00Z') },
    { id: 9, time: new Date('2026-06-01T09:00Z') },
  ];

  it('break ties by id, whatever the input order', () => {
    for (const l of [list, [...list].reverse()]) {
      expect(table(applyRetention(l, { keepLast: 1 }))).toEqual({ keep: { 8: ['last'] }, remove: [7, 9] });
      expect(table(applyRetention(l, { keepLast: 2 }))).toEqual({ keep: { 8: ['last'], 7: ['last'] }, remove: [9] });
      expect(table(applyRetention(l, { keepHourly: 1 }))).toEqual({ keep: { 8: ['hourly'] }, remove: [7, 9] });
      expect(table(applyRetention(l, { keepHourly: 2 }))).toEqual({
        keep: { 8: ['hourly'], 9: ['hourly'] },
        remove: [7],
      });
    }
  });

  it('refuses the same id twice and times that are not dates (a caller bug, not a usage error)', () => {
    expectRetentionError(() => applyRetention([list[0]!, list[0]!], { keepLast: 1 }), 'RETENTION_DUPLICATE_ID', false);
    expectRetentionError(
      () => applyRetention([{ id: 1, time: new Date('not a date') }], { keepLast: 1 }),
      'RETENTION_BAD_TIME',
      false,
    );
  });
});

describe("restic's documentation example", () => {
  // "Suppose you make daily backups for 100 years. Then forget --keep-daily 7 --keep-weekly 5
  // --keep-monthly 12 --keep-yearly 75 will keep the most recent 7 daily snapshots, then 4 (remember,
  // 7 dailies already include a week!) last-day-of-the-weeks and 11 or 12 last-day-of-the-months
  // ... And finally 75 last-day-of-the-year snapshots. All other snapshots are removed."
  // Here: one backup a day at 03:00 UTC, 1926-11-23 .. Sunday 2026-11-22.
  const list: BackupForRetention[] = [];
  const first = Date.UTC(1926, 10, 23, 3);
  const last = Date.UTC(2026, 10, 22, 3);
  for (let t = first, id = 1; t <= last; t += 86_400_000, id++) list.push({ id, time: new Date(t) });
  const byDay = new Map(list.map((b) => [b.time.toISOString().slice(0, 10), b.id]));
  const idOf = (day: string) => byDay.get(day)!;

  it('keeps 7 dailies, 4 more weeklies, 11 more monthlies and 73 more yearlies', () => {
    const expected = new Map<number, string[]>();
    const add = (day: string, reason: string) => {
      const id = idOf(day);
      expected.set(id, [...(expected.get(id) ?? []), reason]);
    };
    for (const d of ['22', '21', '20', '19', '18', '17', '16']) add(`2026-11-${d}`, 'daily');
    for (const d of ['2026-11-22', '2026-11-15', '2026-11-08', '2026-11-01', '2026-10-25']) add(d, 'weekly');
    for (const d of ['2026-11-22', '2026-10-31', '2026-09-30', '2026-08-31', '2026-07-31', '2026-06-30'])
      add(d, 'monthly');
    for (const d of ['2026-05-31', '2026-04-30', '2026-03-31', '2026-02-28', '2026-01-31', '2025-12-31'])
      add(d, 'monthly');
    add('2026-11-22', 'yearly');
    for (let y = 2025; y >= 1952; y--) add(`${y}-12-31`, 'yearly');

    const d = applyRetention(list, { keepDaily: 7, keepWeekly: 5, keepMonthly: 12, keepYearly: 75 });
    expect(d.keep.length).toBe(7 + 4 + 11 + 73);
    expect(table(d).keep).toEqual(Object.fromEntries(expected));
    expect(d.keep[0]).toEqual({ id: idOf('2026-11-22'), reasons: ['daily', 'weekly', 'monthly', 'yearly'] });
    expect(table(d).keep[idOf('2025-12-31')]).toEqual(['monthly', 'yearly']);
    expect(d.remove.length).toBe(list.length - d.keep.length);
  });
});

describe('a random schedule checked with restic', () => {
  // 90 backups, dense around 2026/2027 new year. The expected answer is what `restic forget
  // --dry-run --json --group-by ''` (restic 0.14.0, TZ=UTC, snapshots made with `backup --time`)
  // printed for the same times, plus id 1 kept as "yearly (oldest)": restic 0.14 predates the
  // keep-the-oldest rule of restic 0.17 and borg 1.2.
  const SCHEDULE = `
  2025-11-11T17:40 2025-12-14T09:22 2025-12-23T07:29 2025-12-23T10:34 2026-01-14T13:33 2026-01-21T08:10
  2026-01-21T08:30 2026-01-30T12:44 2026-02-07T09:57 2026-02-15T02:48 2026-02-19T02:26 2026-02-28T16:48
  2026-03-12T13:24 2026-03-24T13:37 2026-03-26T00:08 2026-03-30T17:12 2026-04-09T01:49 2026-04-22T09:24
  2026-04-23T10:45 2026-04-27T13:22 2026-04-30T01:11 2026-05-08T04:58 2026-05-08T13:58 2026-05-16T23:13
  2026-05-17T11:24 2026-05-21T21:31 2026-05-22T18:41 2026-05-25T08:44 2026-06-09T05:00 2026-06-10T13:15
  2026-06-26T14:50 2026-07-11T08:39 2026-08-01T02:52 2026-08-05T12:50 2026-08-25T21:35 2026-09-05T13:51
  2026-09-14T00:59 2026-09-17T00:37 2026-09-22T10:24 2026-09-26T12:57 2026-09-26T19:18 2026-09-30T03:01
  2026-10-11T10:59 2026-10-15T06:23 2026-10-21T21:38 2026-11-06T22:43 2026-11-09T22:12 2026-11-21T17:15
  2026-11-22T01:58 2026-11-25T18:27 2026-12-03T12:26 2026-12-04T17:38 2026-12-16T03:07 2026-12-16T09:14
  2026-12-17T09:19 2026-12-21T23:22 2026-12-28T01:11 2026-12-28T03:03 2026-12-28T04:29 2026-12-29T04:42
  2026-12-29T19:31 2026-12-29T23:05 2026-12-30T06:24 2026-12-30T12:36 2026-12-30T13:49 2026-12-30T15:02
  2026-12-31T14:11 2026-12-31T18:14 2027-01-01T00:54 2027-01-01T07:32 2027-01-01T09:24 2027-01-01T14:20
  2027-01-01T16:08 2027-01-01T20:15 2027-01-01T23:40 2027-01-02T11:39 2027-01-02T12:28 2027-01-02T18:12
  2027-01-02T20:10 2027-01-02T23:21 2027-01-03T00:02 2027-01-03T07:04 2027-01-04T05:30 2027-01-04T15:10
  2027-01-05T03:45 2027-01-05T14:06 2027-01-07T17:15 2027-01-19T16:06 2027-02-02T06:30 2027-02-13T01:26`;
  const list = backups(...SCHEDULE.trim().split(/\s+/));

  it('keep-daily 7, weekly 5, monthly 12, yearly 75', () => {
    expect(list).toHaveLength(90);
    const d = applyRetention(list, { keepDaily: 7, keepWeekly: 5, keepMonthly: 12, keepYearly: 75 });
    expect(table(d).keep).toEqual({
      90: ['daily', 'weekly', 'monthly', 'yearly'],
      89: ['daily', 'weekly'],
      88: ['daily', 'weekly', 'monthly'],
      87: ['daily', 'weekly'],
      86: ['daily'],
      84: ['daily'],
      82: ['daily', 'weekly'], // 2027-01-03: the newest of 2026-W53, so 2026-12-31 (68) is not a weekly
      68: ['monthly', 'yearly'],
      50: ['monthly'],
      45: ['monthly'],
      42: ['monthly'],
      35: ['monthly'],
      32: ['monthly'],
      31: ['monthly'],
      28: ['monthly'],
      21: ['monthly'],
      16: ['monthly'],
      4: ['yearly'],
      1: ['yearly (oldest)'],
    });
    expect(d.remove).toHaveLength(90 - 19);
  });

  it('every rule at once', () => {
    const d = applyRetention(list, {
      keepLast: 2,
      keepHourly: 5,
      keepDaily: 4,
      keepWeekly: 3,
      keepMonthly: 2,
      keepYearly: 1,
    });
    expect(table(d).keep).toEqual({
      90: ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'],
      89: ['last', 'hourly', 'daily', 'weekly'],
      88: ['hourly', 'daily', 'weekly', 'monthly'],
      87: ['hourly', 'daily'],
      86: ['hourly'],
    });
  });
});

describe('time zone', () => {
  const saved = process.env.TZ;
  afterEach(() => {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  });

  it('UTC by default; local periods on request', () => {
    process.env.TZ = 'America/New_York';
    const list: BackupForRetention[] = [
      { id: 1, time: new Date('2026-02-27T12:00Z') },
      { id: 2, time: new Date('2026-03-02T03:00Z') }, // 2026-03-01 22:00 in New York
      { id: 3, time: new Date('2026-03-02T10:00Z') }, // 2026-03-02 05:00 in New York
    ];
    const utc = { keep: { 3: ['daily'], 1: ['daily'] }, remove: [2] };
    expect(table(applyRetention(list, { keepDaily: 2 }))).toEqual(utc);
    expect(table(applyRetention(list, { keepDaily: 2 }, 'UTC'))).toEqual(utc);
    expect(table(applyRetention(list, { keepDaily: 2 }, 'local'))).toEqual({
      keep: { 3: ['daily'], 2: ['daily'] },
      remove: [1],
    });
  });
});

describe('policy validation', () => {
  it('parses the CLI options', () => {
    expect(parseRetentionArgs({ 'keep-daily': '7', 'keep-last': '0', json: true, vm: 'win01' })).toEqual({
      keepDaily: 7,
      keepLast: 0,
    });
    expect(
      parseRetentionArgs({
        'keep-last': '1',
        'keep-hourly': '2',
        'keep-daily': '3',
        'keep-weekly': '4',
        'keep-monthly': '5',
        'keep-yearly': '1000000',
      }),
    ).toEqual({ keepLast: 1, keepHourly: 2, keepDaily: 3, keepWeekly: 4, keepMonthly: 5, keepYearly: 1_000_000 });
    expect(parseRetentionArgs({ 'keep-weekly': 4 })).toEqual({ keepWeekly: 4 });
  });

  it('refuses counts that are not whole numbers from 0 to MAX_KEEP', () => {
    for (const bad of ['', '-1', '1.5', '7.0', '0x10', '1e3', ' 7', '7 ', 'seven', '1000001', 'Infinity']) {
      const e = expectRetentionError(
        () => parseRetentionArgs({ 'keep-daily': bad }),
        'RETENTION_BAD_COUNT',
        true,
        '--keep-daily',
      );
      expect(e.message).toContain('--keep-daily');
    }
    for (const bad of [-1, 1.5, Number.NaN, Infinity, 1_000_001]) {
      expectRetentionError(() => parseRetentionArgs({ 'keep-last': bad }), 'RETENTION_BAD_COUNT', true, '--keep-last');
    }
  });

  it('refuses a policy that would remove every backup', () => {
    expectRetentionError(() => parseRetentionArgs({}), 'RETENTION_NO_RULE', true);
    expectRetentionError(() => parseRetentionArgs({ 'keep-last': '0', 'keep-daily': '0' }), 'RETENTION_NO_RULE', true);
    const list = backups('2026-01-01T00:00');
    for (const p of [{}, { keepDaily: 0 }, { keepLast: 0, keepYearly: 0 }] as RetentionPolicy[]) {
      expectRetentionError(() => applyRetention(list, p), 'RETENTION_NO_RULE', true);
    }
    expectRetentionError(() => applyRetention(list, { keepHourly: -2 }), 'RETENTION_BAD_COUNT', true, '--keep-hourly');
  });
});
