/** The VMs the catalog knows, present or vanished, and their disks. */
import { takePage } from '../../browse/page.js';
import { findOneVm, vmDisks, vmSummaries } from '../../browse/vms.js';
import type { Route } from '../router.js';
import { ok, PAGE_PARAMS, pageOf } from './common.js';

export const vmRoutes: Route[] = [
  {
    method: 'GET',
    path: '/vms',
    auth: true,
    query: {
      ...PAGE_PARAMS,
      present: { type: 'boolean', description: 'Only VMs discovery still finds (true) or only vanished ones (false).' },
    },
    handle: ({ ctx, query }) => {
      const all = vmSummaries(ctx.repo.catalog);
      const want = query.present as boolean | undefined;
      return ok(takePage(want === undefined ? all : all.filter((v) => v.present === want), pageOf(query), (v) => v));
    },
  },
  {
    method: 'GET',
    path: '/vms/{vm}/disks',
    auth: true,
    handle: ({ ctx, params }) => {
      const cat = ctx.repo.catalog;
      const vm = findOneVm(cat, params.vm!);
      return ok({ vm: { id: vm.id, identity: vm.identity, name: vm.name }, ...vmDisks(cat, vm) });
    },
  },
];
