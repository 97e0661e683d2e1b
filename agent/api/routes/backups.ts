/** Backups: list, one backup, its tree, and starting a backup job. */
import type { BackupState } from '../../../catalog/catalog.js';
import { takePage } from '../../browse/page.js';
import { resolveBackup } from '../../browse/refs.js';
import { treeRowJson, treeRows } from '../../browse/tree.js';
import { findOneVm, findVmsOrThrow } from '../../browse/vms.js';
import { inventoryVm } from '../../../catalog/inventory.js';
import { errorsFor } from '../../../parsers/errors.js';
import type { Route } from '../router.js';
import { ok, PAGE_PARAMS, pageOf, str } from './common.js';

const STATES: Readonly<Record<string, BackupState[]>> = {
  complete: ['complete'],
  running: ['running'],
  failed: ['failed'],
  all: ['complete', 'running', 'failed'],
};

export const backupRoutes: Route[] = [
  {
    method: 'GET',
    path: '/backups',
    auth: true,
    query: {
      ...PAGE_PARAMS,
      vm: { type: 'string', description: 'Only this VM (name, identity or id).' },
      state: { type: 'string', enum: Object.keys(STATES), description: 'Backup state (default complete).' },
    },
    handle: ({ ctx, query }) => {
      const cat = ctx.repo.catalog;
      const vm = str(query, 'vm');
      const states = STATES[str(query, 'state') ?? 'complete']!;
      const ids = vm === undefined ? [undefined] : findVmsOrThrow(cat, vm).map((v) => v.id);
      const rows = ids.flatMap((vmId) => cat.backups({ vmId, states })).sort((a, b) => a.id - b.id);
      return ok(takePage(rows, pageOf(query), (b) => b));
    },
  },
  {
    method: 'GET',
    path: '/backups/{ref}',
    auth: true,
    handle: ({ ctx, params }) => {
      const cat = ctx.repo.catalog;
      const b = resolveBackup(cat, params.ref!);
      return ok({ ...b, disks: cat.backupDisks(b.id), volumes: cat.backupVolumes(b.id) });
    },
  },
  {
    method: 'GET',
    path: '/backups/{ref}/tree',
    auth: true,
    query: {
      ...PAGE_PARAMS,
      path: { type: 'string', description: 'A path in the backup: / (its volumes), /<volume>/<path>; default /.' },
      recursive: { type: 'boolean', description: 'Everything below the path, not just its entries.' },
    },
    handle: ({ ctx, params, query }) => {
      const cat = ctx.repo.catalog;
      const b = resolveBackup(cat, params.ref!);
      const path = str(query, 'path') ?? '/';
      const rows = treeRows(cat, b, path, (query.recursive as boolean | undefined) ?? false);
      return ok({ backup: b.id, path, ...takePage(rows, pageOf(query), treeRowJson) });
    },
  },
  {
    method: 'POST',
    path: '/backups',
    auth: true,
    body: { vm: { type: 'string', required: true } },
    handle: ({ ctx, body }) => {
      const cat = ctx.repo.catalog;
      const vm = findOneVm(cat, body.vm as string);
      if (inventoryVm(cat, vm.identity)?.vanishedMs != null) {
        throw errorsFor({ image: vm.name, layer: 'job' }).unsupported(
          'VM_VANISHED',
          `VM '${vm.name}' is no longer found in any datastore; its backups stay restorable`,
        );
      }
      const job = ctx.jobs.submit('backup', { vm: vm.identity }, 'api');
      return { status: 202, body: job, headers: { Location: `/jobs/${job.id}` } };
    },
  },
];
