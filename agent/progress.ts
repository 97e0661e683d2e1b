/**
 * What a backup shows a person: a one-line live progress bar while it runs (on
 * a terminal only) and a summary when it ends.
 *
 * The bar is for people: it draws nothing at all when its stream is not a
 * terminal (cron, pipes, `--json`), so logs and scripts only ever see the
 * summary. Rate and ETA come from the last few seconds (a moving window), not
 * from the start: a backup that skipped unchanged files at 5 GiB/s and is now
 * reading changed ones at 80 MiB/s must not promise a finish it cannot keep.
 *
 * Guest file names reach the terminal here, and a guest controls them: control
 * characters (escape sequences, carriage returns, bidi overrides) are replaced
 * before anything is written, in the bar and in the summary alike.
 */

export interface BackupCounters {
  files: number;
  /** Logical bytes of the files looked at (unchanged files count too). */
  bytesScanned: number;
  /** Bytes actually read from the disk images. */
  bytesRead: number;
  newChunks: number;
  /** Stored bytes written to the target (after compression). */
  bytesSent: number;
  /** Estimate of bytesScanned at the end, for the percentage and the ETA. */
  totalBytes?: number;
  warnings: number;
  /** The path being read, e.g. `/d0p2/Users/ana/report.docx` (guest-controlled). */
  currentPath?: string;
}

export interface BackupSummary {
  vm: string;
  backupId: number;
  durationMs: number;
  files: number;
  bytesScanned: number;
  bytesRead: number;
  newChunks: number;
  bytesSent: number;
  /** Warning texts; the caller may keep only the first ones and give the total in warningCount. */
  warnings: string[];
  /** Total number of warnings when more happened than `warnings` holds. */
  warningCount?: number;
  /** Entries found unchanged since the previous backup (not read). */
  unchanged?: number;
  /** Set when no file of the VM changed since that backup, which was kept without reading anything. */
  unchangedSince?: number;
  /** One line per volume, already worded by the caller, e.g. `d0p2 NTFS "WINDOWS": 12,001 files`. */
  volumes: string[];
}

/** The part of a tty.WriteStream the bar uses (process.stderr fits). */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(chunk: string): boolean;
}

export interface ProgressOptions {
  /** Least time between two redraws. */
  intervalMs?: number;
  /** Shown first on the line, e.g. the VM name. */
  label?: string;
  /** Span of the moving window the rate and ETA come from. */
  windowMs?: number;
  /** Monotonic clock in milliseconds; tests inject one. */
  now?: () => number;
}

const DEFAULT_INTERVAL_MS = 200;
const DEFAULT_WINDOW_MS = 10_000;
/** One window sample per this many ms at most, so a window holds ≤ window/SAMPLE_MS samples. */
const SAMPLE_MS = 250;
/** A rate over less time than this is noise; the ETA waits for it. */
const MIN_RATE_SPAN_MS = 1_000;
/** Width used when the terminal does not say. */
const DEFAULT_COLUMNS = 80;
/** Width of the bar itself, when the line has room for it. */
const BAR_WIDTH = 20;
/** Narrower than this, the current path is not worth showing. */
const MIN_PATH_COLUMNS = 12;
/** Warnings listed in a summary before "and K more". */
export const DEFAULT_MAX_WARNINGS = 20;
/** A single warning longer than this is cut: a guest can make names 32 KiB long. */
const MAX_WARNING_CHARS = 300;
/** Width of the name column of the summary. */
const SUMMARY_NAME_WIDTH = 16;

const CLEAR_LINE = '\r\x1b[2K';
const ELLIPSIS = '…';
/** Made on first use: ICU's number formatter costs ~10 ms to build, and a command that prints no count should not pay it. */
let countFormat: Intl.NumberFormat | undefined;
const groupedCount = (n: number): string =>
  (countFormat ??= new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })).format(n);

// ---------------------------------------------------------------- formatting

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** `0 B`, `1023 B`, `1.5 KiB`, `12.3 GiB`; `?` for a value that is not a finite number. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  if (v < 1024) return `${sign}${Math.round(v)} B`;
  let u = 0;
  while (u < UNITS.length - 1 && v >= 1024) {
    v /= 1024;
    u++;
  }
  // 1048575 B is 1023.999 KiB: print it as 1.0 MiB, not 1024.0 KiB.
  if (v.toFixed(1) === '1024.0' && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${sign}${v.toFixed(1)} ${UNITS[u]}`;
}

/** `0.4s`, `9.9s`, `42s`, `4m 05s`, `2h 03m`, `3d 04h`; `?` for a negative or non-finite value. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 9_950) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d ${pad(Math.floor(s / 3600) % 24)}h`;
}

/** `85.3 MiB/s`; `-` when unknown. */
export function formatRate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond) ? '-' : `${formatBytes(bytesPerSecond)}/s`;
}

function formatCount(n: number): string {
  return Number.isFinite(n) ? groupedCount(n) : '?';
}

/**
 * Bytes scanned per byte sent: how many bytes of guest files each stored byte
 * stands for (deduplication, unchanged files and compression together).
 * Undefined when nothing was sent.
 */
export function dedupRatio(bytesScanned: number, bytesSent: number): number | undefined {
  if (!(bytesSent > 0) || !Number.isFinite(bytesScanned) || !Number.isFinite(bytesSent)) return undefined;
  return bytesScanned / bytesSent;
}

/** `1.50x`, `12.3x`, `482x`: three significant figures or so. */
export function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return '?';
  if (r < 10) return `${r.toFixed(2)}x`;
  if (r < 100) return `${r.toFixed(1)}x`;
  return `${groupedCount(Math.round(r))}x`;
}

// ---------------------------------------------------------------- terminal text

/**
 * Replaces what a terminal would interpret rather than print: C0/C1 controls
 * (ESC, CR, LF, BEL …), DEL, line/paragraph separators and bidi controls.
 */
export function sanitizeForTerminal(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '?');
}

/** Columns a code point takes: 0 for combining marks, 2 for East Asian wide and emoji, else 1. */
function charWidth(cp: number): number {
  if (
    (cp >= 0x0300 && cp <= 0x036f) ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0xfe00 && cp <= 0xfe0f) ||
    (cp >= 0x1ab0 && cp <= 0x1aff) ||
    (cp >= 0x20d0 && cp <= 0x20ff)
  ) {
    return 0;
  }
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf && cp !== 0x303f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Terminal columns a (sanitized) string takes. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/** The start of s in at most `width` columns, with `…` when cut. */
function truncateEnd(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  if (width <= 0) return '';
  let out = '';
  let w = 0;
  for (const ch of s) {
    const cw = charWidth(ch.codePointAt(0)!);
    if (w + cw > width - 1) break;
    out += ch;
    w += cw;
  }
  return out + ELLIPSIS;
}

/** The end of s in at most `width` columns, with `…` when cut: for paths, whose end names the file. */
function truncateStart(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  if (width <= 0) return '';
  const chars = [...s];
  let out = '';
  let w = 0;
  for (let i = chars.length - 1; i >= 0; i--) {
    const cw = charWidth(chars[i]!.codePointAt(0)!);
    if (w + cw > width - 1) break;
    out = chars[i]! + out;
    w += cw;
  }
  return ELLIPSIS + out;
}

// ---------------------------------------------------------------- rate

/** Rate of a growing counter over a moving window of time. */
export class RateWindow {
  private readonly samples: { t: number; v: number }[] = [];
  private current: { t: number; v: number } | undefined;

  constructor(private readonly windowMs: number = DEFAULT_WINDOW_MS) {}

  add(t: number, v: number): void {
    this.current = { t, v };
    const lastSample = this.samples[this.samples.length - 1];
    if (lastSample === undefined || t - lastSample.t >= SAMPLE_MS) this.samples.push({ t, v });
    // Keep one sample at or before the window's start, as the anchor of the rate.
    while (this.samples.length > 1 && this.samples[1]!.t <= t - this.windowMs) this.samples.shift();
  }

  /** Units per second over the window; undefined until it spans MIN_RATE_SPAN_MS. */
  perSecond(): number | undefined {
    const first = this.samples[0];
    const cur = this.current;
    if (first === undefined || cur === undefined) return undefined;
    const dt = cur.t - first.t;
    if (dt < MIN_RATE_SPAN_MS) return undefined;
    return (Math.max(0, cur.v - first.v) * 1000) / dt;
  }
}

// ---------------------------------------------------------------- the bar

/**
 * Live one-line progress on a terminal: `\r`, clear the line, draw it again, at
 * most once per interval and never wider than the terminal (one column is left
 * free so that no terminal wraps). Writes nothing when the stream is not a TTY.
 */
export class ProgressBar {
  private readonly intervalMs: number;
  private readonly label: string;
  private readonly now: () => number;
  private readonly rate: RateWindow;
  private readonly tty: boolean;
  private lastDraw: number | undefined;
  private finished = false;

  constructor(
    private readonly out: ProgressStream,
    opts: ProgressOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.label = sanitizeForTerminal(opts.label ?? '');
    this.now = opts.now ?? (() => performance.now());
    this.rate = new RateWindow(opts.windowMs ?? DEFAULT_WINDOW_MS);
    this.tty = out.isTTY === true;
  }

  /** Records the counters; redraws when the last drawing is at least intervalMs old. */
  update(c: BackupCounters): void {
    if (this.finished) return;
    const t = this.now();
    this.rate.add(t, c.bytesScanned);
    if (!this.tty) return;
    if (this.lastDraw !== undefined && t - this.lastDraw < this.intervalMs) return;
    this.lastDraw = t;
    this.out.write(CLEAR_LINE + this.line(c));
  }

  /** Clears the line (the summary comes next); later updates draw nothing. */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.tty && this.lastDraw !== undefined) this.out.write(CLEAR_LINE);
  }

  /** The text of one line for these counters, fitted to the terminal. */
  line(c: BackupCounters): string {
    const columns = Math.max(0, (this.out.columns ?? DEFAULT_COLUMNS) - 1);
    const rate = this.rate.perSecond();
    const total = c.totalBytes !== undefined && c.totalBytes > 0 ? c.totalBytes : undefined;

    // Segments in display order; `rank` says which go first when the line is too narrow (higher goes first).
    const segs: { text: string; rank: number; pct?: true }[] = [];
    if (this.label) segs.push({ text: this.label, rank: 4 });
    if (total !== undefined) {
      const pct = Math.min(100, Math.floor((Math.max(0, c.bytesScanned) / total) * 100));
      segs.push({ text: `${String(pct).padStart(3)}%`, rank: 9, pct: true });
      segs.push({ text: `${formatBytes(c.bytesScanned)}/${formatBytes(total)}`, rank: 8 });
    } else {
      segs.push({ text: `${formatBytes(c.bytesScanned)} scanned`, rank: 8 });
    }
    segs.push({ text: `${formatCount(c.files)} files`, rank: 5 });
    segs.push({ text: `sent ${formatBytes(c.bytesSent)}`, rank: 2 });
    segs.push({ text: formatRate(rate), rank: 6 });
    if (total !== undefined) segs.push({ text: `ETA ${eta(total - c.bytesScanned, rate)}`, rank: 7 });
    if (c.warnings > 0) segs.push({ text: `${formatCount(c.warnings)} warnings`, rank: 3 });

    const width = () => segs.reduce((w, s) => w + displayWidth(s.text) + 1, -1);
    while (segs.length > 1 && width() > columns) {
      const lowest = segs.reduce((a, b) => (b.rank < a.rank ? b : a));
      segs.splice(segs.indexOf(lowest), 1);
    }
    let room = columns - width();

    // The bar, after the percentage, when there is room for it and a useful piece of path.
    const wantPath = c.currentPath !== undefined && c.currentPath !== '';
    if (total !== undefined && room - (BAR_WIDTH + 3) >= (wantPath ? MIN_PATH_COLUMNS + 1 : 0)) {
      const filled = Math.round(Math.min(1, Math.max(0, c.bytesScanned) / total) * BAR_WIDTH);
      const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`;
      const at = segs.findIndex((s) => s.pct);
      segs.splice(at + 1, 0, { text: bar, rank: 1 });
      room -= BAR_WIDTH + 3;
    }
    let text = segs.map((s) => s.text).join(' ');
    if (wantPath && room - 1 >= MIN_PATH_COLUMNS) {
      text += ' ' + truncateStart(sanitizeForTerminal(c.currentPath!), room - 1);
    }
    return truncateEnd(text, columns);
  }
}

function eta(remaining: number, rate: number | undefined): string {
  if (rate === undefined || !(rate > 0)) return '--';
  return formatDuration((Math.max(0, remaining) / rate) * 1000);
}

// ---------------------------------------------------------------- the summary

/** Sanitized, one line, and not longer than MAX_WARNING_CHARS. */
function oneLine(s: string): string {
  return truncateEnd(sanitizeForTerminal(s), MAX_WARNING_CHARS);
}

/**
 * The human summary printed at the end of a backup, one fact per line, with the
 * meaning of the less obvious numbers next to them. At most `maxWarnings`
 * warnings are listed, then "and K more".
 */
export function formatSummary(s: BackupSummary, opts: { maxWarnings?: number } = {}): string {
  const maxWarnings = Math.max(0, opts.maxWarnings ?? DEFAULT_MAX_WARNINGS);
  const warningTotal = Math.max(s.warnings.length, s.warningCount ?? 0);
  const lines: string[] = [];
  const row = (name: string, value: string, note?: string) =>
    lines.push(`  ${name.padEnd(SUMMARY_NAME_WIDTH)}${note ? `${value.padEnd(12)}${note}` : value}`);

  lines.push(
    `Backup ${s.backupId} of ${oneLine(s.vm)}: ${formatCount(s.files)} files in ${formatDuration(s.durationMs)}`,
  );
  if (s.unchangedSince !== undefined) {
    lines.push(
      `  unchanged since backup ${s.unchangedSince}: no file of the VM changed (same size, times, inode); nothing read`,
    );
  }
  if (s.volumes.length > 0) {
    lines.push('  volumes');
    for (const v of s.volumes) lines.push(`    ${oneLine(v)}`);
  }
  row(
    'files',
    formatCount(s.files),
    s.unchanged === undefined ? undefined : `${formatCount(s.unchanged)} entries unchanged since the last backup`,
  );
  row('bytes scanned', formatBytes(s.bytesScanned), 'size of the files looked at');
  row('bytes read', formatBytes(s.bytesRead), 'read from the disks (unchanged files are not read)');
  row('new chunks', formatCount(s.newChunks), 'chunks the repository did not hold yet');
  row('bytes sent', formatBytes(s.bytesSent), 'written to the target, compressed');
  const ratio = dedupRatio(s.bytesScanned, s.bytesSent);
  if (ratio !== undefined) {
    row('dedup ratio', formatRatio(ratio), 'bytes scanned / bytes sent (dedup, unchanged files and compression)');
  } else if (s.bytesScanned > 0) {
    row('dedup ratio', 'all', 'nothing new to store: every chunk was already in the repository');
  } else {
    row('dedup ratio', 'n/a', 'nothing scanned');
  }
  row('duration', formatDuration(s.durationMs));
  row('rate', s.durationMs > 0 ? `${formatRate((s.bytesScanned * 1000) / s.durationMs)} scanned` : 'n/a');
  row('warnings', formatCount(warningTotal));
  const shown = s.warnings.slice(0, maxWarnings);
  for (const w of shown) lines.push(`    - ${oneLine(w)}`);
  if (warningTotal > shown.length) lines.push(`    and ${formatCount(warningTotal - shown.length)} more`);
  return lines.join('\n') + '\n';
}
