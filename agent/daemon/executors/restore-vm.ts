/**
 * `restore-vm` jobs (issue 7 §2): a backup's disks rebuilt and its
 * configuration restored and patched into a folder inside the restore roots
 * (agent/restore-vm/restore-vm.ts). Reads through a read-only connection,
 * like file restores. A VM restored without every disk byte (a backup made
 * before disk regions were stored) is not a recovered VM: the job fails with
 * RESTORE_VM_INCOMPLETE, its result kept.
 */
import { resolveBackup } from '../../browse/refs.js';
import { openRepo } from '../../repo.js';
import { restoreVm, type RestoreVmResult } from '../../restore-vm/restore-vm.js';
import type { RestoreVmJobParams } from '../types.js';
import { type Executor, JobFailedWithResult } from './context.js';
import { resolveRestoreTarget } from './restore-target.js';

export const runRestoreVm: Executor = async (ctx): Promise<RestoreVmResult> => {
  const p = ctx.job.params as RestoreVmJobParams;
  const to = resolveRestoreTarget(p.to, ctx.config.restoreRoots);
  const repo = openRepo(ctx.repo.root, { readonly: true, target: ctx.repo.target });
  try {
    const backup = resolveBackup(repo.catalog, p.backup);
    ctx.log.info({ backupId: backup.id, vm: backup.vmName, to, format: p.format }, 'whole-VM restore started');
    const r = await restoreVm(repo.catalog, repo.target, backup, {
      to,
      name: p.name,
      format: p.format,
      datastoreMap: p.datastoreMap,
      keepIdentity: p.keepIdentity,
      signal: ctx.signal,
      onProgress: ({ updatedMs: _, ...pr }) => ctx.progress(pr),
    });
    ctx.log.info(
      { status: r.status, disks: r.disks.length, folder: r.folder, durationMs: r.durationMs },
      'whole-VM restore ended',
    );
    if (r.status !== 'success') {
      throw new JobFailedWithResult(
        'RESTORE_VM_INCOMPLETE',
        `${r.vm} restored into ${r.folder}, but some disk lacks bytes (the backup holds no disk regions)`,
        r,
      );
    }
    return r;
  } finally {
    repo.close();
  }
};
