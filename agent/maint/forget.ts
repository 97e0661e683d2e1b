/**
 * Forget by retention policy: for each VM (or one), which backups the policy
 * keeps and which it removes; the removed ones are dropped from the catalog
 * (their chunks stay until a prune). Shared by `vdbak forget` and the daemon's
 * forget jobs.
 */
import type { Catalog, VmRow } from '../../catalog/catalog.js';
import { applyRetention, type RetentionPolicy } from '../retention.js';

export interface ForgetVmDecision {
  vm: string;
  keep: { id: number; reasons: string[] }[];
  remove: number[];
}

export interface ForgetOutcome {
  vms: ForgetVmDecision[];
  /** Ids of every backup removed (or, in a dry run, that would be). */
  remove: number[];
  versionsRemoved: number;
}

/** `vms` empty means none matched: the caller decides whether that is an error. */
export function forgetByPolicy(
  cat: Catalog,
  vms: readonly VmRow[],
  policy: RetentionPolicy,
  opts: { dryRun?: boolean; beforeEach?: () => void } = {},
): ForgetOutcome {
  const decisions: ForgetVmDecision[] = [];
  for (const vm of vms) {
    opts.beforeEach?.();
    const list = cat.backups({ vmId: vm.id });
    if (list.length === 0) continue;
    const d = applyRetention(
      list.map((b) => ({ id: b.id, time: new Date(b.startedMs) })),
      policy,
    );
    decisions.push({ vm: vm.name, ...d });
  }
  const remove = decisions.flatMap((r) => r.remove);
  const versionsRemoved = !opts.dryRun && remove.length ? cat.forgetBackups(remove).versionsRemoved : 0;
  return { vms: decisions, remove, versionsRemoved };
}
