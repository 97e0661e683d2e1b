/**
 * `vdbak backup`: every disk, volume and file of each VM named, into the
 * repository. The job, the worker pool (piscina, zstd) and the progress bar
 * are loaded only once the sources and the repository are known to be good:
 * a mistyped path or repository fails at once, without loading them.
 */
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import type { BackupResult, BackupStep } from '../backup/job.js';
import type { BackupSummary } from '../progress.js';
import { lockRepo, openRepo, repoPath } from '../repo.js';
import { resolveSources } from '../source/resolve.js';
import { writeOut } from '../stdout.js';
import { intOpt } from './repo.js';
import { UsageError } from './usage.js';

/** Most worker threads --threads may ask for. */
const MAX_THREADS = 64;

/** The human summary of one VM's backup (progress.ts words it; guest names are made safe there). */
function summaryText(r: BackupResult, formatSummary: (s: BackupSummary) => string): string {
  return formatSummary({
    vm: r.vm,
    backupId: r.backupId,
    durationMs: r.durationMs,
    files: r.files,
    unchanged: r.unchanged,
    unchangedSince: r.unchangedSince,
    bytesScanned: r.bytesScanned,
    bytesRead: r.bytesRead,
    newChunks: r.newChunks,
    bytesSent: r.bytesSent,
    warnings: r.warningList,
    warningCount: r.warnings,
    volumes: r.volumes.map(
      (v) =>
        `${v.name}  ${v.mode === 'files' ? `${v.fsType}${v.label ? ` "${v.label}"` : ''}, ${v.entries} entries` : 'raw (allocated bytes only)'}${v.problems ? `, ${v.problems} problem(s)` : ''}`,
    ),
  });
}

/**
 * Crash tests set VDBAK_TEST_KILL_BACKUP_AT=<step>[:<n>] to die abruptly (SIGKILL)
 * the n-th time (default 1st) the backup reaches that step. Never set in production.
 */
function crashHook(): ((step: BackupStep) => void) | undefined {
  const spec = process.env.VDBAK_TEST_KILL_BACKUP_AT;
  if (!spec) return undefined;
  const [at, nth = '1'] = spec.split(':');
  let seen = 0;
  return (step) => {
    if (step === at && ++seen >= Number(nth)) process.kill(process.pid, 'SIGKILL');
  };
}

export async function cmdBackup(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      json: { type: 'boolean', default: false },
      name: { type: 'string' },
      threads: { type: 'string' },
      throttle: { type: 'boolean', default: false },
      'max-rate': { type: 'string' },
      rescan: { type: 'boolean', default: false },
    },
  });
  if (positionals.length === 0) throw new UsageError('backup needs a VM folder, a .vmx file or a disk image');
  const maxRate = intOpt(values['max-rate'], 'max-rate');
  const asked = values.threads === undefined ? undefined : Number(values.threads);
  if (asked !== undefined && (!Number.isInteger(asked) || asked < 1 || asked > MAX_THREADS)) {
    throw new UsageError(`--threads takes 1..${MAX_THREADS}`);
  }
  const sources = resolveSources(positionals);
  if (values.name) {
    if (sources.length !== 1) throw new UsageError('--name needs exactly one VM');
    sources[0]!.name = values.name;
  }
  const root = repoPath(values.repo);
  const repo = openRepo(root);
  let release: (() => void) | undefined;
  let pool: { close(): Promise<void> } | undefined;
  let failed = 0;
  let stopThrottle: (() => void) | undefined;
  try {
    const [{ backupVm }, { createPool, defaultThreads }, { formatSummary, ProgressBar }] = await Promise.all([
      import('../backup/job.js'),
      import('../backup/pool.js'),
      import('../progress.js'),
    ]);
    const workers = createPool(asked ?? defaultThreads());
    pool = workers;
    release = lockRepo(root, 'backup');
    const onSignal = () => {
      release?.();
      process.exit(130);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // --throttle: yield to the VMs' I/O on the devices under the disks (the daemon will do this by default)
    let loop: { bucket: { buffer: SharedArrayBuffer }; stop(): void } | undefined;
    if (values.throttle || maxRate !== undefined) {
      const { ThrottleLoop } = await import('../throttle/loop.js');
      const folders = [...new Set(sources.flatMap((s) => s.disks.map((d) => dirname(d.path))))];
      loop = new ThrottleLoop({
        paths: folders,
        limits: maxRate !== undefined ? { maxBytesPerSec: maxRate } : {},
        onChange: (s) => {
          if (!process.stderr.isTTY) process.stderr.write(`vdbak: throttle ${s.mode}: ${s.reason}\n`);
        },
      }).start();
    }
    stopThrottle = () => loop?.stop();
    for (const src of sources) {
      const bar = new ProgressBar(process.stderr, { label: src.name });
      try {
        const r = await backupVm(repo, src, {
          pool: workers,
          throttle: loop?.bucket.buffer,
          onProgress: (s) => bar.update({ ...s, totalBytes: s.totalBytes || undefined }),
          hook: crashHook(),
          rescan: values.rescan,
        });
        bar.done();
        await writeOut(values.json ? `${JSON.stringify(r)}\n` : summaryText(r, formatSummary));
      } catch (e) {
        bar.done();
        failed++;
        if (sources.length === 1) throw e;
        process.stderr.write(`vdbak: backup of ${src.name} failed: ${(e as Error).message}\n`);
      }
    }
    // a copy of the catalog goes to the target after every backup: a lost controller loses nothing
    if (failed < sources.length) await (await import('../ship/after-backup.js')).shipAfterBackup(repo);
  } finally {
    stopThrottle?.();
    await pool?.close();
    try {
      repo.catalog.checkpoint(); // fold the WAL into the catalog file: its size is the catalog's size
    } catch {
      // a reader holds the WAL: it is folded in later
    }
    release?.();
    repo.close();
  }
  return failed ? 1 : 0;
}
