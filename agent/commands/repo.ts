/**
 * Repository commands: init and backups. `backup` is in backup.ts: it loads
 * the disk parsers and the worker pool, which these two never need.
 */
import { parseArgs } from 'node:util';
import type { LiveStats } from '../backup/job.js';
import { humanBytes } from '../format.js';
import { initRepo, openRepo, repoPath } from '../repo.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

/** A byte count option: `524288`, `512K`, `16MiB`, `1G`. */
export function intOpt(v: string | undefined, name: string): number | undefined {
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
