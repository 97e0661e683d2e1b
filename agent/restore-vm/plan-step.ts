/**
 * One step of a recovery plan: a whole-VM restore of a backup into the
 * folder the plan chose (agent/plans/run.ts calls this through RestoreVmFn).
 */
import { errorsFor } from '../../parsers/errors.js';
import type { RestoreVmFn } from '../plans/run.js';
import type { Repo } from '../repo.js';
import type { DatastoreMapping } from './patch/index.js';
import { restoreVm } from './restore-vm.js';
import type { DiskFormat } from './writers/types.js';

export interface PlanRestoreOptions {
  format?: DiskFormat;
  datastoreMap: DatastoreMapping[];
  keepIdentity: boolean;
}

export function planRestoreVm(repo: Repo, opts: PlanRestoreOptions): RestoreVmFn {
  return async (t, signal) => {
    const err = errorsFor({ image: `backup ${t.backupId} (${t.vmName})`, layer: 'restore' });
    const backup = repo.catalog.backup(t.backupId);
    if (!backup) throw err.notFound('PLAN_BACKUP_GONE', 'the backup vanished from the catalog while the plan ran');
    const r = await restoreVm(repo.catalog, repo.target, backup, {
      to: t.folder,
      format: opts.format,
      datastoreMap: opts.datastoreMap,
      keepIdentity: opts.keepIdentity,
      signal,
    });
    const text = `${r.status}: ${r.disks.length} disk(s) as ${r.format} into ${r.folder}`;
    // An incomplete disk (a backup without regions) is not a recovered VM: the step must say so.
    if (r.status !== 'success') throw err.unsupported('RESTORE_VM_INCOMPLETE', text);
    return text;
  };
}
