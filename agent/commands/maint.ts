/**
 * Repository health: check, forget, prune.
 */
import { parseArgs } from 'node:util';
import { humanBytes } from '../format.js';
import { checkRepo } from '../maint/check.js';
import { forgetByPolicy } from '../maint/forget.js';
import { pruneRepo, type PruneReport } from '../maint/prune.js';
import { lockRepo, openRepo, processAlive, repoPath } from '../repo.js';
import { parseRetentionArgs, RETENTION_PARSE_OPTIONS, RetentionError, type RetentionPolicy } from '../retention.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

function pruneText(r: PruneReport): string {
  const verb = r.dryRun ? 'would free' : 'freed';
  return `prune${r.dryRun ? ' (dry run)' : ''}: ${verb} ${humanBytes(r.bytesFreed)}; ${r.packsDeleted} pack(s) deleted, ${r.packsRewritten} rewritten into ${r.packsWritten} new, ${r.chunksRemoved} unreferenced chunk(s) removed${r.reapedBackups.length ? `; interrupted backups cleaned up: ${r.reapedBackups.join(', ')}` : ''}${r.adoptedPacks ? `; ${r.adoptedPacks} pack(s) of interrupted runs found` : ''}\n`;
}

export async function cmdCheck(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: 'string' },
      'read-data': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  // check only reads, but takes the lock so that it never sees a prune half way
  const root = repoPath(values.repo);
  const repo = openRepo(root);
  const release = lockRepo(root, 'check');
  try {
    // a backup that died left rows no reader sees; with the lock held, remove them so they are not counted
    repo.catalog.reapDeadBackups((pid, host) => processAlive(pid, host));
    const tty = process.stderr.isTTY;
    const report = await checkRepo(repo, {
      readData: values['read-data'],
      onProgress: (p) => {
        if (tty)
          process.stderr.write(`\r\x1b[2Kchecking packs: ${p.packsDone}/${p.packs}, ${humanBytes(p.bytesRead)} read`);
      },
    });
    if (tty) process.stderr.write('\r\x1b[2K');
    if (values.json) {
      await writeOut(`${JSON.stringify(report)}\n`);
    } else {
      const lines = [
        `checked ${report.packs} pack(s), ${report.chunks} chunk(s), ${report.referencedChunks} referenced by backups${values['read-data'] ? `, ${humanBytes(report.bytesRead)} read and every chunk's hash verified` : ' (indexes only; --read-data verifies every chunk)'}`,
      ];
      for (const e of report.errors.slice(0, 50)) lines.push(`  error: ${e}`);
      if (report.errors.length > 50) lines.push(`  … and ${report.errors.length - 50} more errors`);
      for (const d of report.damaged.slice(0, 100)) {
        lines.push(
          `  damaged: ${d.vm} /${d.volume}${d.path}${d.stream ? `:${d.stream}` : ''} in backup(s) ${d.backups.join(', ')}`,
        );
      }
      if (report.damaged.length > 100) lines.push(`  … and ${report.damaged.length - 100} more damaged files`);
      if (report.orphanPacks.length) {
        lines.push(
          `  note: ${report.orphanPacks.length} pack(s) on the target are not in the catalog (left by an interrupted run; prune removes them)`,
        );
      }
      lines.push(report.ok ? 'no errors were found' : `${report.errors.length} error(s) found`);
      await writeOut(`${lines.join('\n')}\n`);
    }
    return report.ok ? 0 : 1;
  } finally {
    release();
    repo.close();
  }
}

export async function cmdForget(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: 'string' },
      vm: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      prune: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      ...RETENTION_PARSE_OPTIONS,
    },
  });
  let policy: RetentionPolicy;
  try {
    policy = parseRetentionArgs(values);
  } catch (e) {
    if (e instanceof RetentionError && e.usage) throw new UsageError(e.message);
    throw e;
  }
  const root = repoPath(values.repo);
  const repo = openRepo(root);
  const release = lockRepo(root, 'forget');
  try {
    const cat = repo.catalog;
    let vms = cat.vms();
    if (values.vm) {
      vms = cat.findVms(values.vm);
      if (vms.length === 0) throw new UsageError(`no VM named '${values.vm}'`);
    }
    const { vms: result, remove, versionsRemoved } = forgetByPolicy(cat, vms, policy, { dryRun: values['dry-run'] });
    let pruned: PruneReport | undefined;
    if (values.prune && !values['dry-run']) pruned = await pruneRepo(repo);
    if (values.json) {
      await writeOut(
        `${JSON.stringify({ dryRun: values['dry-run'], vms: result, versionsRemoved, prune: pruned ?? null })}\n`,
      );
    } else {
      const lines: string[] = [];
      for (const r of result) {
        lines.push(
          `${r.vm}: keep ${r.keep.length}, ${values['dry-run'] ? 'would remove' : 'removed'} ${r.remove.length}`,
        );
        for (const k of r.keep) lines.push(`  keep   ${k.id}  (${k.reasons.join(', ')})`);
        for (const id of r.remove) lines.push(`  remove ${id}`);
      }
      if (!values['dry-run'] && remove.length) {
        lines.push(
          `${versionsRemoved} file version(s) no remaining backup holds were removed from the catalog; run 'vdbak prune' to free their chunks`,
        );
      }
      await writeOut(`${lines.join('\n')}\n${pruned ? pruneText(pruned) : ''}`);
    }
    return 0;
  } finally {
    release();
    repo.close();
  }
}

export async function cmdPrune(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const root = repoPath(values.repo);
  const repo = openRepo(root);
  const release = lockRepo(root, 'prune');
  try {
    const hookAt = process.env.VDBAK_TEST_KILL_PRUNE_AT;
    const report = await pruneRepo(repo, {
      dryRun: values['dry-run'],
      // crash tests: die abruptly at a named step (never set in production)
      hook: hookAt
        ? (step) => {
            if (step === hookAt) process.kill(process.pid, 'SIGKILL');
          }
        : undefined,
    });
    await writeOut(values.json ? `${JSON.stringify(report)}\n` : pruneText(report));
    return 0;
  } finally {
    release();
    repo.close();
  }
}
