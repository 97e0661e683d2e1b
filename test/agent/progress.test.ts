/**
 * Progress bar and summary (agent/progress.ts): a fake terminal that records
 * every write, a clock the test moves by hand, and the summary's numbers.
 */
import { describe, expect, it } from 'vitest';
import {
  dedupRatio,
  displayWidth,
  formatBytes,
  formatDuration,
  formatRatio,
  formatSummary,
  ProgressBar,
  RateWindow,
  sanitizeForTerminal,
  type BackupCounters,
  type BackupSummary,
  type ProgressStream,
} from '../../agent/progress.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

class FakeTerminal implements ProgressStream {
  writes: string[] = [];
  constructor(
    public isTTY: boolean,
    public columns: number,
  ) {}
  write(chunk: string): boolean {
    this.writes.push(chunk);
    return true;
  }
  /** What the terminal shows after the last write: the text after the last clear-line. */
  get shown(): string {
    const all = this.writes.join('');
    return all.slice(all.lastIndexOf('\x1b[2K') + 4);
  }
}

function setup(columns = 60, opts: { intervalMs?: number; windowMs?: number; label?: string } = {}) {
  const term = new FakeTerminal(true, columns);
  const clock = { t: 0 };
  const bar = new ProgressBar(term, { intervalMs: 100, ...opts, now: () => clock.t });
  return { term, clock, bar };
}

function counters(c: Partial<BackupCounters> = {}): BackupCounters {
  return { files: 0, bytesScanned: 0, bytesRead: 0, newChunks: 0, bytesSent: 0, warnings: 0, ...c };
}

/** Every drawing: `\r`, clear the line, text without line breaks or escape sequences. */
function expectWellFormed(term: FakeTerminal, columns: number): void {
  for (const w of term.writes) {
    expect(w.startsWith('\r\x1b[2K')).toBe(true);
    const text = w.slice(5);
    expect(text).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(displayWidth(text)).toBeLessThanOrEqual(columns - 1);
    expect([...text].length).toBeLessThanOrEqual(columns - 1);
  }
}

describe('ProgressBar', () => {
  it('takes process.stderr as its stream (a type check, mostly)', () => {
    const stream: ProgressStream = process.stderr;
    expect(typeof stream.write).toBe('function');
  });

  it('writes nothing at all when the stream is not a terminal', () => {
    const term = new FakeTerminal(false, 60);
    const bar = new ProgressBar(term, { now: () => 0 });
    for (let i = 0; i < 10; i++) bar.update(counters({ files: i, bytesScanned: i * MiB, totalBytes: 100 * MiB }));
    bar.done();
    expect(term.writes).toEqual([]);
  });

  it('redraws at most once per interval, by the injected clock', () => {
    const { term, clock, bar } = setup();
    bar.update(counters({ files: 1 }));
    expect(term.writes).toHaveLength(1); // the first update draws at once
    for (const t of [1, 50, 99]) {
      clock.t = t;
      bar.update(counters({ files: t }));
    }
    expect(term.writes).toHaveLength(1);
    clock.t = 100;
    bar.update(counters({ files: 1234 }));
    expect(term.writes).toHaveLength(2);
    expect(term.shown).toContain('1,234 files');
    clock.t = 150;
    bar.update(counters({ files: 1300 }));
    clock.t = 199;
    bar.update(counters({ files: 1400 }));
    expect(term.writes).toHaveLength(2);
    clock.t = 250;
    bar.update(counters({ files: 1500 }));
    expect(term.writes).toHaveLength(3);
    expectWellFormed(term, 60);
  });

  it('shows percentage, bytes, rate and ETA from the moving window', () => {
    const { term, clock, bar } = setup(200, { windowMs: 10_000 });
    const total = 1000 * MiB;
    // 100 MiB/s for 2 s: 800 MiB left → 8 s.
    for (let t = 0; t <= 2000; t += 250) {
      clock.t = t;
      bar.update(counters({ bytesScanned: (t / 1000) * 100 * MiB, totalBytes: total }));
    }
    expect(term.shown).toContain(' 20%');
    expect(term.shown).toContain('200.0 MiB/1000.0 MiB');
    expect(term.shown).toContain('100.0 MiB/s');
    expect(term.shown).toContain('ETA 8.0s');
    // Then 10 MiB/s for 11 s: after a full window the rate is 10 MiB/s, not the average since the start.
    let scanned = 200 * MiB;
    for (let t = 2250; t <= 13_000; t += 250) {
      scanned += 2.5 * MiB;
      clock.t = t;
      bar.update(counters({ bytesScanned: scanned, totalBytes: total }));
    }
    expect(scanned).toBe(310 * MiB);
    expect(term.shown).toContain('10.0 MiB/s');
    expect(term.shown).toContain('ETA 1m 09s'); // 690 MiB at 10 MiB/s
    expect(term.shown).toContain(' 31%');
    expect(term.shown).toMatch(/\[#{6}-{14}\]/); // 31% of a 20-column bar
    expectWellFormed(term, 200);
  });

  it('says nothing about rate or ETA before it has a second of history', () => {
    const { term, clock, bar } = setup(120);
    bar.update(counters({ bytesScanned: 0, totalBytes: GiB }));
    clock.t = 500;
    bar.update(counters({ bytesScanned: 10 * MiB, totalBytes: GiB }));
    expect(term.shown).toContain('ETA --');
    expect(term.shown).not.toMatch(/NaN|Infinity|undefined/);
  });

  it('a stalled backup has no ETA instead of an infinite one', () => {
    const { term, clock, bar } = setup(120, { windowMs: 2000 });
    for (let t = 0; t <= 5000; t += 250) {
      clock.t = t;
      bar.update(counters({ bytesScanned: 50 * MiB, totalBytes: GiB }));
    }
    expect(term.shown).toContain('0 B/s');
    expect(term.shown).toContain('ETA --');
    expect(term.shown).not.toMatch(/NaN|Infinity/);
  });

  it('fits 60 columns: drops the least useful parts first and keeps the end of a long path', () => {
    const { term, clock, bar } = setup(60, { label: 'win01' });
    const path = '/d0p2/Users/ana/Documents/Projects/2026/Quarterly/very-long-report-name-final-v2.docx';
    clock.t = 0;
    bar.update(counters({ files: 1, totalBytes: 10 * GiB, currentPath: path }));
    clock.t = 5000;
    bar.update(
      counters({
        files: 123_456,
        bytesScanned: 3 * GiB,
        bytesSent: 100 * MiB,
        totalBytes: 10 * GiB,
        warnings: 2,
        currentPath: path,
      }),
    );
    const line = term.shown;
    expect(line).toContain(' 30%');
    expect(line).toContain('3.0 GiB/10.0 GiB');
    expect(line).toContain('ETA 12s'); // 7 GiB left at 614.4 MiB/s
    // Too narrow for all: "sent …", the warning count, the VM name and the path give way.
    expect(line).toBe(' 30% 3.0 GiB/10.0 GiB 123,456 files 614.4 MiB/s ETA 12s');
    expectWellFormed(term, 60);
    // A wider terminal shows everything, the bar and the file name.
    const wide = setup(160, { label: 'win01' });
    wide.bar.update(counters({ files: 1, totalBytes: 10 * GiB, currentPath: path }));
    wide.clock.t = 5000;
    wide.bar.update(counters({ files: 123_456, bytesScanned: 3 * GiB, totalBytes: 10 * GiB, currentPath: path }));
    expect(wide.term.shown.startsWith('win01  30% [######--------------] 3.0 GiB/10.0 GiB 123,456 files')).toBe(true);
    expect(wide.term.shown).toContain('very-long-report-name-final-v2.docx');
    expectWellFormed(wide.term, 160);
    // A middling one cuts the path at its start, so the file name stays.
    const mid = setup(100);
    mid.bar.update(counters({ files: 5, bytesScanned: MiB, currentPath: path }));
    expect(mid.term.shown).toMatch(/…[^ ]*very-long-report-name-final-v2\.docx$/);
    expectWellFormed(mid.term, 100);
  });

  it('never lets a guest file name write escape sequences or break the line', () => {
    const { term, bar } = setup(60);
    bar.update(counters({ currentPath: '/d0p1/\x1b]0;owned\x07\x1b[2J\r\nrm -rf /\u202etxt.exe' }));
    expectWellFormed(term, 60);
    expect(term.writes.join('')).not.toContain('\x1b]');
    expect(term.writes.join('')).not.toContain('\x1b[2J');
  });

  it('counts wide characters as two columns', () => {
    const { term, bar } = setup(60);
    bar.update(counters({ files: 3, currentPath: '/d0p2/' + '報告書'.repeat(30) + '.docx' }));
    expectWellFormed(term, 60);
    expect(term.shown).toContain('.docx');
  });

  it('works in a terminal too narrow for anything but the most important part', () => {
    for (const columns of [1, 2, 5, 10, 20]) {
      const { term, bar } = setup(columns, { label: 'a-very-long-vm-name' });
      bar.update(counters({ files: 10, bytesScanned: GiB, totalBytes: 2 * GiB, currentPath: '/d0p1/x' }));
      expectWellFormed(term, columns);
    }
  });

  it('done() clears the line once and later updates draw nothing', () => {
    const { term, clock, bar } = setup();
    bar.update(counters({ files: 1 }));
    bar.done();
    expect(term.writes.at(-1)).toBe('\r\x1b[2K');
    const n = term.writes.length;
    clock.t = 10_000;
    bar.update(counters({ files: 2 }));
    bar.done();
    expect(term.writes).toHaveLength(n);
  });

  it('done() before any drawing writes nothing', () => {
    const { term, bar } = setup();
    bar.done();
    expect(term.writes).toEqual([]);
  });
});

describe('RateWindow', () => {
  it('measures over the window and holds a bounded number of samples', () => {
    const w = new RateWindow(4000);
    for (let t = 0; t <= 100_000; t += 10) w.add(t, t * 1000); // 1 MB/s… in units per ms × 1000
    expect(w.perSecond()).toBe(1_000_000);
    const samples = (w as unknown as { samples: unknown[] }).samples;
    expect(samples.length).toBeLessThanOrEqual(4000 / 250 + 2);
  });
});

describe('formatBytes / formatDuration / formatRatio', () => {
  it('formats bytes in binary units', () => {
    const cases: [number, string][] = [
      [0, '0 B'],
      [1, '1 B'],
      [1023, '1023 B'],
      [1024, '1.0 KiB'],
      [1536, '1.5 KiB'],
      [1024 * 1024 - 1, '1.0 MiB'],
      [5 * GiB, '5.0 GiB'],
      [1.25 * 1024 * GiB, '1.3 TiB'],
      [-2048, '-2.0 KiB'],
      [Number.NaN, '?'],
      [Infinity, '?'],
    ];
    for (const [n, s] of cases) expect([n, formatBytes(n)]).toEqual([n, s]);
  });

  it('formats durations', () => {
    const cases: [number, string][] = [
      [0, '0.0s'],
      [400, '0.4s'],
      [9_949, '9.9s'],
      [9_950, '10s'],
      [59_499, '59s'],
      [59_500, '1m 00s'],
      [61_000, '1m 01s'],
      [3_599_000, '59m 59s'],
      [3_600_000, '1h 00m'],
      [3_659_000, '1h 00m'],
      [7_380_000, '2h 03m'],
      [90_000_000, '1d 01h'],
      [-1, '?'],
      [Number.NaN, '?'],
      [Infinity, '?'],
    ];
    for (const [n, s] of cases) expect([n, formatDuration(n)]).toEqual([n, s]);
  });

  it('formats ratios and refuses to divide by zero', () => {
    expect(formatRatio(1.5)).toBe('1.50x');
    expect(formatRatio(12.34)).toBe('12.3x');
    expect(formatRatio(4820.4)).toBe('4,820x');
    expect(dedupRatio(10 * GiB, GiB)).toBe(10);
    expect(dedupRatio(0, 0)).toBeUndefined();
    expect(dedupRatio(GiB, 0)).toBeUndefined();
    expect(dedupRatio(Number.NaN, 5)).toBeUndefined();
  });

  it('sanitizes terminal controls', () => {
    expect(sanitizeForTerminal('a\x1b[31mb\r\nc\u202ed\u0085e\tf')).toBe('a?[31mb??c?d?e?f');
    expect(displayWidth('abc')).toBe(3);
    expect(displayWidth('漢字')).toBe(4);
    expect(displayWidth('e\u0301')).toBe(1);
  });
});

describe('formatSummary', () => {
  const base: BackupSummary = {
    vm: 'win01',
    backupId: 12,
    durationMs: 245_000,
    files: 12_345,
    bytesScanned: 20 * GiB,
    bytesRead: 1.5 * GiB,
    newChunks: 3456,
    bytesSent: 256 * MiB,
    warnings: [],
    volumes: ['d0p1 NTFS "System Reserved": 312 files', 'd0p2 NTFS "WINDOWS": 12,033 files'],
  };

  function rowOf(text: string, name: string): string {
    const line = text.split('\n').find((l) => l.trimStart().startsWith(name));
    expect(line, name).toBeDefined();
    return line!;
  }

  it('states every number, with the dedup ratio scanned / sent', () => {
    const text = formatSummary(base);
    expect(text.split('\n')[0]).toBe('Backup 12 of win01: 12,345 files in 4m 05s');
    expect(rowOf(text, 'files')).toContain('12,345');
    expect(rowOf(text, 'bytes scanned')).toContain('20.0 GiB');
    expect(rowOf(text, 'bytes read')).toContain('1.5 GiB');
    expect(rowOf(text, 'new chunks')).toContain('3,456');
    expect(rowOf(text, 'bytes sent')).toContain('256.0 MiB');
    expect(rowOf(text, 'dedup ratio')).toContain('80.0x'); // 20 GiB / 256 MiB
    expect(rowOf(text, 'dedup ratio')).toContain('bytes scanned / bytes sent');
    expect(rowOf(text, 'duration')).toContain('4m 05s');
    // 20 GiB in 245 s = 83.59 MiB/s
    expect(rowOf(text, 'rate')).toContain('83.6 MiB/s');
    expect(rowOf(text, 'warnings')).toMatch(/warnings\s+0$/);
    expect(text).toContain('    d0p1 NTFS "System Reserved": 312 files\n    d0p2 NTFS "WINDOWS": 12,033 files\n');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('a small ratio keeps two decimals', () => {
    const text = formatSummary({ ...base, bytesScanned: 3 * MiB, bytesSent: 2 * MiB });
    expect(rowOf(text, 'dedup ratio')).toContain('1.50x');
  });

  it('an empty backup has no division by zero anywhere', () => {
    const text = formatSummary({
      ...base,
      durationMs: 0,
      files: 0,
      bytesScanned: 0,
      bytesRead: 0,
      newChunks: 0,
      bytesSent: 0,
      volumes: [],
    });
    expect(text).not.toMatch(/NaN|Infinity|undefined|null/);
    expect(rowOf(text, 'dedup ratio')).toContain('n/a');
    expect(rowOf(text, 'rate')).toContain('n/a');
    expect(text).not.toContain('volumes');
  });

  it('nothing sent: every chunk was already there', () => {
    const text = formatSummary({ ...base, bytesSent: 0, newChunks: 0 });
    expect(text).not.toMatch(/NaN|Infinity/);
    expect(rowOf(text, 'dedup ratio')).toContain('nothing new to store');
  });

  it('lists at most maxWarnings warnings, then how many more', () => {
    const warnings = Array.from({ length: 25 }, (_, i) => `warning number ${i + 1}`);
    const text = formatSummary({ ...base, warnings }, { maxWarnings: 10 });
    expect(rowOf(text, 'warnings')).toMatch(/warnings\s+25$/);
    expect(text).toContain('    - warning number 10\n');
    expect(text).not.toContain('warning number 11');
    expect(text).toContain('    and 15 more\n');
    // The caller kept 3 texts of 1000 warnings.
    const capped = formatSummary({ ...base, warnings: warnings.slice(0, 3), warningCount: 1000 });
    expect(rowOf(capped, 'warnings')).toMatch(/warnings\s+1,000$/);
    expect(capped).toContain('    - warning number 3\n');
    expect(capped).toContain('    and 997 more\n');
    // All shown: no "more" line.
    expect(formatSummary({ ...base, warnings: warnings.slice(0, 2) })).not.toContain('more');
  });

  it('keeps guest names in warnings on one line and free of escape sequences', () => {
    const text = formatSummary({
      ...base,
      vm: 'evil\x1b[2J',
      warnings: ['/d0p2/\x1b]0;owned\x07name\nwith newline', 'x'.repeat(10_000)],
    });
    expect(text).not.toMatch(/\x1b|\x07/);
    expect(text).toContain('    - /d0p2/?]0;owned?name?with newline\n');
    const long = text.split('\n').find((l) => l.includes('xxxx'))!;
    expect(long.length).toBeLessThan(400);
  });
});
