/** Restore requests (files and folders; whole VMs) into a restore folder: checked here, run by the job runner. */
import { resolveBackup } from '../../browse/refs.js';
import { treeRows } from '../../browse/tree.js';
import { resolveRestoreTarget } from '../../daemon/executors/restore-target.js';
import type { RestoreJobParams, RestoreVmJobParams } from '../../daemon/types.js';
import type { Route } from '../router.js';

export const restoreRoutes: Route[] = [
  {
    method: 'POST',
    path: '/restores',
    auth: true,
    body: {
      backup: { type: 'string', required: true },
      path: { type: 'string', required: true },
      to: { type: 'string', required: true },
      overwrite: { type: 'boolean' },
    },
    handle: ({ ctx, body }) => {
      const cat = ctx.repo.catalog;
      const b = resolveBackup(cat, body.backup as string);
      const path = body.path as string;
      // resolving the rows checks the path exists (404 now, not a failed job later); nothing is listed
      treeRows(cat, b, path, false);
      // the job checks again when it runs (a symlink may change in between)
      const to = resolveRestoreTarget(body.to as string, ctx.config().restoreRoots);
      // the backup id, not the ref: 'win01' must not become a newer backup while the job waits
      const params: RestoreJobParams = { backup: String(b.id), path, to, overwrite: body.overwrite === true };
      const job = ctx.jobs.submit('restore', params, 'api');
      return { status: 202, body: job, headers: { Location: `/jobs/${job.id}` } };
    },
  },
  {
    method: 'POST',
    path: '/restores/vm',
    auth: true,
    body: {
      backup: { type: 'string', required: true },
      to: { type: 'string', required: true },
      name: { type: 'string' },
      format: { type: 'string' },
      datastoreMap: { type: 'array' },
      keepIdentity: { type: 'boolean' },
    },
    handle: ({ ctx, body }) => {
      const b = resolveBackup(ctx.repo.catalog, body.backup as string);
      const to = resolveRestoreTarget(body.to as string, ctx.config().restoreRoots);
      const params: RestoreVmJobParams = { backup: String(b.id), to };
      if (body.name !== undefined) params.name = body.name as string;
      if (body.format !== undefined) params.format = body.format as RestoreVmJobParams['format'];
      if (body.datastoreMap !== undefined)
        params.datastoreMap = body.datastoreMap as RestoreVmJobParams['datastoreMap'];
      if (body.keepIdentity !== undefined) params.keepIdentity = body.keepIdentity as boolean;
      // the queue checks format and the map's entries (JOB_BAD_PARAMS, a 400)
      const job = ctx.jobs.submit('restore-vm', params, 'api');
      return { status: 202, body: job, headers: { Location: `/jobs/${job.id}` } };
    },
  },
];
