/**
 * Repository commands: init, backup, backups.
 */
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { humanBytes } from '../format.js';
import { initRepo, lockRepo, openRepo, repoPath } from '../repo.js';
import { backupVm, type BackupResult, type BackupStep, type LiveStats } from '../backup/job.js';
import { createPool, defaultThreads } from '../backup/pool.js';
import { resolveSources } from '../source/resolve.js';
import { formatSummary, ProgressBar } from '../progress.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

function intOpt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(v.trim());
  if (!m) throw new UsageError(`--${name} takes a byte count such as 524288 or 512K, not '${v}'`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m[2] ?? '').charAt(0).toUpperCase()] ?? 1;
  return Number(m[1]) * mult;
}

export async function cmdInit(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: 'string' },
      target: { type: 'string' },
      'chunk-min': { type: 'string' },
      'chunk-avg': { type: 'string' },
      'chunk-max': { type: 'string' },
      'pack-size': { type: 'string' },
      'zstd-level': { type: 'string' },
    },
  });
  const root = repoPath(values.repo);
  const chunkSizes: Record<string, number> = {};
  const min = intOpt(values['chunk-min'], 'chunk-min');
  const avg = intOpt(values['chunk-avg'], 'chunk-avg');
  const max = intOpt(values['chunk-max'], 'chunk-max');
  if (min !== undefined) chunkSizes.minSize = min;
  if (avg !== undefined) chunkSizes.avgSize = avg;
  if (max !== undefined) chunkSizes.maxSize = max;
  const s = initRepo(root, {
    target: values.target,
    chunkSizes,
    packTargetSize: intOpt(values['pack-size'], 'pack-size'),
    zstdLevel: values['zstd-level'] === undefined ? undefined : Number(values['zstd-level']),
  });
  await writeOut(
    `created repository ${root}\n  catalog  ${root}/catalog.db\n  target   ${s.targetPath}\n  chunks   ${humanBytes(s.chunkSizes.minSize)} / ${humanBytes(s.chunkSizes.avgSize)} / ${humanBytes(s.chunkSizes.maxSize)} (min/avg/max), packs of ${humanBytes(s.packTargetSize)}, zstd level ${s.zstdLevel}\n`,
  );
  return 0;
}

/** The human summary of one VM's backup (progress.ts words it; guest names are made safe there). */
function summaryText(r: BackupResult): string {
  return formatSummary({
    vm: r.vm,
    backupId: r.backupId,
    durationMs: r.durationMs,
    files: r.files,
    unchanged: r.unchanged,
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
    },
  });
  if (positionals.length === 0) throw new UsageError('backup needs a VM folder, a .vmx file or a disk image');
  const maxRate = intOpt(values['max-rate'], 'max-rate');
  const threads = values.threads === undefined ? defaultThreads() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new UsageError('--threads takes 1..64');
  const sources = resolveSources(positionals);
  if (values.name) {
    if (sources.length !== 1) throw new UsageError('--name needs exactly one VM');
    sources[0]!.name = values.name;
  }
  const root = repoPath(values.repo);
  const repo = openRepo(root);
  let release: (() => void) | undefined;
  const pool = createPool(threads);
  let failed = 0;
  let stopThrottle: (() => void) | undefined;
  try {
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
          pool,
          throttle: loop?.bucket.buffer,
          onProgress: (s) => bar.update({ ...s, totalBytes: s.totalBytes || undefined }),
          hook: crashHook(),
        });
        bar.done();
        await writeOut(values.json ? `${JSON.stringify(r)}\n` : summaryText(r));
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
    await pool.close();
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

export async function cmdBackups(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      json: { type: 'boolean', default: false },
      all: { type: 'boolean', default: false },
    },
  });
  const repo = openRepo(repoPath(values.repo), { readonly: true });
  try {
    const cat = repo.catalog;
    let vmId: number | undefined;
    if (positionals[0]) {
      const vms = cat.findVms(positionals[0]);
      if (vms.length === 0) throw new UsageError(`no VM named '${positionals[0]}'`);
      vmId = vms[0]!.id;
    }
    const list = cat.backups({ vmId, states: values.all ? ['complete', 'running', 'failed'] : ['complete'] });
    if (values.json) {
      await writeOut(`${JSON.stringify(list)}\n`);
      return 0;
    }
    const lines = ['  ID  VM                    STARTED (UTC)         STATE      FILES      SCANNED       SENT'];
    for (const b of list) {
      const st = (b.stats ?? {}) as Partial<LiveStats>;
      lines.push(
        `${String(b.id).padStart(4)}  ${b.vmName.padEnd(20).slice(0, 20)}  ${new Date(b.startedMs).toISOString().slice(0, 19).replace('T', ' ')}   ${b.state.padEnd(9)} ${String(st.files ?? '').padStart(6)} ${humanBytes(st.bytesScanned ?? 0).padStart(12)} ${humanBytes(st.bytesSent ?? 0).padStart(10)}`,
      );
    }
    if (list.length === 0) lines.push('  (no backups yet)');
    await writeOut(`${lines.join('\n')}\n`);
    return 0;
  } finally {
    repo.close();
  }
}
