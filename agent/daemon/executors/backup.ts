/**
 * `backup` jobs: find the VM by its identity (it may have moved), back it up
 * through the shared pool with its reads on the runner's bucket, then ship
 * the catalog when the config says so.
 */
import { backupVm, type BackupResult } from '../../backup/job.js';
import type { BackupJobParams } from '../types.js';
import { type Executor, jobErrors, throwIfCancelled } from './context.js';
import { shipAfterBackupJob } from './ship.js';

export const runBackup: Executor = async (ctx): Promise<BackupResult> => {
  const { vm } = ctx.job.params as BackupJobParams;
  const source = ctx.locate(vm);
  if (!source) {
    throw jobErrors(ctx.job).notFound(
      'VM_NOT_FOUND',
      `VM ${vm} was not found in any datastore (it vanished or its datastore is not configured); its backups stay restorable`,
    );
  }
  throwIfCancelled(ctx);
  const log = ctx.log.child({ vm: source.name });
  log.info({ identity: source.identity, disks: source.disks.length }, 'backup started');
  for (const w of source.warnings) log.warn({ warning: w }, 'source warning');
  const result = await backupVm(ctx.repo, source, {
    pool: ctx.pool(),
    signal: ctx.signal,
    throttle: ctx.bucketFor(source).buffer,
    parentRoots: ctx.config.datastores.map((d) => d.path),
    onProgress: (s) =>
      ctx.progress({
        phase: 'reading',
        bytesDone: s.bytesScanned,
        bytesTotal: s.totalBytes || undefined,
        files: s.files,
        current: s.currentPath,
      }),
  });
  log.info(
    {
      backupId: result.backupId,
      files: result.files,
      bytesRead: result.bytesRead,
      bytesSent: result.bytesSent,
      warnings: result.warnings,
      durationMs: result.durationMs,
    },
    'backup complete',
  );
  await shipAfterBackupJob(ctx);
  return result;
};
