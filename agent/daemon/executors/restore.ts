/**
 * `restore` jobs: a file or folder of a backup into a folder inside the
 * configured restore roots (restore-target.ts). The restore reads through its
 * own read-only catalog connection: the shared one carries the running
 * backup's open batch, and a walk iterating across awaits there would block
 * the backup's writes (better-sqlite3 allows no statement while a query
 * iterates on the same connection).
 */
import { resolveBackup } from '../../browse/refs.js';
import { openRepo } from '../../repo.js';
import { DirSink } from '../../restore/dir-sink.js';
import { restorePath } from '../../restore/engine.js';
import type { RestoreReport, RestoreSink } from '../../restore/sink.js';
import type { RestoreJobParams } from '../types.js';
import { type Executor, JobFailedWithResult, type JobContext, throwIfCancelled } from './context.js';
import { resolveRestoreTarget } from './restore-target.js';

/** Checks the job's signal before each entry. */
function cancellable(sink: RestoreSink, ctx: JobContext): RestoreSink {
  return {
    add: (item, content) => {
      throwIfCancelled(ctx);
      return sink.add(item, content);
    },
    finish: () => sink.finish(),
  };
}

export const runRestore: Executor = async (ctx): Promise<RestoreReport> => {
  const p = ctx.job.params as RestoreJobParams;
  const to = resolveRestoreTarget(p.to, ctx.config.restoreRoots);
  const repo = openRepo(ctx.repo.root, { readonly: true, target: ctx.repo.target });
  try {
    const backup = resolveBackup(repo.catalog, p.backup);
    ctx.log.info({ backupId: backup.id, vm: backup.vmName, path: p.path, to }, 'restore started');
    const sink = cancellable(new DirSink(to, { overwrite: p.overwrite ?? false }), ctx);
    const report = await restorePath(repo.catalog, repo.target, backup, p.path, sink, (pr) =>
      ctx.progress({ phase: 'restoring', bytesDone: pr.bytes, files: pr.entries, current: pr.path }),
    );
    ctx.log.info(
      { files: report.files, dirs: report.dirs, bytes: report.bytes, notes: report.notes.length },
      'restore complete',
    );
    const failed = report.notes.filter((n) => n.kind === 'failed');
    if (failed.length) {
      // written in part: the job says so (the report, with every failed path, stays in its result)
      throw new JobFailedWithResult(
        'RESTORE_INCOMPLETE',
        `${failed.length} item(s) could not be restored, e.g. ${failed[0]!.path}: ${failed[0]!.detail}`,
        report,
      );
    }
    return report;
  } finally {
    repo.close();
  }
};
