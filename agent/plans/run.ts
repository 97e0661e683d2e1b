/**
 * Runs a recovery plan: its steps in order, each step's VMs critical-first,
 * every VM restored from its latest complete backup into <to>/<vm name>.
 * A failed step stops the plan or lets it continue, as the plan says; the
 * report names every step and VM with what happened to it.
 */
import { join } from 'node:path';
import type { Catalog } from '../../catalog/catalog.js';
import { type PlanDefinition, PlanStore } from '../../catalog/plans.js';
import { safeName } from '../restore/safe-name.js';

export interface PlanVmTarget {
  backupId: number;
  vmName: string;
  vmIdentity: string;
  /** The folder this VM is restored into (inside the plan's `to`). */
  folder: string;
}

/** Restores one VM; throws (a typed error) when it fails. Returns a short description of what it wrote. */
export type RestoreVmFn = (t: PlanVmTarget, signal?: AbortSignal) => Promise<string>;

/** planned: a dry run's VM that would be restored. */
export type VmOutcome = 'restored' | 'planned' | 'failed' | 'skipped';

export interface VmReport {
  vm: string;
  identity: string;
  critical: boolean;
  backupId: number | null;
  folder: string | null;
  outcome: VmOutcome;
  detail: string;
  durationMs: number;
}

export interface StepReport {
  index: number;
  group: string;
  onFailure: 'continue' | 'stop';
  outcome: 'done' | 'failed' | 'skipped';
  vms: VmReport[];
  /** Names a group listed that match no VM (a step with such names fails). */
  unknown: string[];
}

export interface PlanReport {
  plan: string;
  to: string;
  ok: boolean;
  startedMs: number;
  durationMs: number;
  steps: StepReport[];
}

export type PlanEvent =
  { type: 'step'; step: number; group: string; vms: number } | { type: 'vm'; step: number; report: VmReport };

export interface RunPlanOptions {
  to: string;
  restoreVm: RestoreVmFn;
  onEvent?: (e: PlanEvent) => void;
  signal?: AbortSignal;
  /** Compute the order and folders, restore nothing. */
  dryRun?: boolean;
}

/** Runs `plan` (its definition read from the catalog) and reports each step. */
export async function runPlan(cat: Catalog, planName: string, opts: RunPlanOptions): Promise<PlanReport> {
  const store = new PlanStore(cat);
  const plan = store.plan(planName);
  if (!plan) throw new PlanNotFound(planName);
  return runDefinition(cat, store, planName, plan.definition, opts);
}

export class PlanNotFound extends Error {
  override name = 'PlanNotFound';
  readonly code = 'PLAN_NOT_FOUND';
  constructor(plan: string) {
    super(`no recovery plan '${plan}' ('vdbak plan ls' lists them)`);
  }
}

async function runDefinition(
  cat: Catalog,
  store: PlanStore,
  planName: string,
  def: PlanDefinition,
  opts: RunPlanOptions,
): Promise<PlanReport> {
  const t0 = Date.now();
  const steps: StepReport[] = [];
  const used = new Set<string>();
  let stopped = false;
  for (const [i, s] of def.steps.entries()) {
    const step: StepReport = {
      index: i + 1,
      group: s.group,
      onFailure: s.onFailure,
      outcome: 'done',
      vms: [],
      unknown: [],
    };
    steps.push(step);
    const { vms, unknown } = store.members(s.group);
    step.unknown = unknown;
    opts.onEvent?.({ type: 'step', step: step.index, group: s.group, vms: vms.length });
    for (const m of vms) {
      const r: VmReport = {
        vm: m.name,
        identity: m.identity,
        critical: m.critical,
        backupId: null,
        folder: null,
        outcome: 'skipped',
        detail: '',
        durationMs: 0,
      };
      step.vms.push(r);
      if (stopped) {
        r.detail = 'an earlier step failed and the plan stops on failure';
      } else if (opts.signal?.aborted) {
        r.detail = 'the plan was cancelled';
      } else {
        const last = cat.backups({ vmId: m.id }).at(-1);
        // Two VMs may share a display name: the second gets its id appended so neither overwrites the other.
        let folderName = safeName(m.name).name;
        if (used.has(folderName)) folderName = `${folderName}-${m.id}`;
        used.add(folderName);
        r.folder = join(opts.to, folderName);
        if (!last) {
          r.outcome = 'failed';
          r.detail = 'no complete backup of this VM';
        } else {
          r.backupId = last.id;
          if (opts.dryRun) {
            r.outcome = 'planned';
            r.detail = `would restore backup ${last.id} into ${r.folder}`;
          } else {
            const t = Date.now();
            try {
              r.detail = await opts.restoreVm(
                { backupId: last.id, vmName: m.name, vmIdentity: m.identity, folder: r.folder },
                opts.signal,
              );
              r.outcome = 'restored';
            } catch (e) {
              r.outcome = 'failed';
              r.detail = e instanceof Error ? e.message : String(e);
            }
            r.durationMs = Date.now() - t;
          }
        }
      }
      opts.onEvent?.({ type: 'vm', step: step.index, report: r });
    }
    if (stopped || opts.signal?.aborted) {
      step.outcome = 'skipped';
      continue;
    }
    if (unknown.length > 0 || step.vms.some((v) => v.outcome === 'failed')) {
      step.outcome = 'failed';
      if (s.onFailure === 'stop') stopped = true;
    }
  }
  return {
    plan: planName,
    to: opts.to,
    ok: steps.every((s) => s.outcome === 'done'),
    startedMs: t0,
    durationMs: Date.now() - t0,
    steps,
  };
}

/** The report as lines an administrator reads. */
export function formatPlanReport(r: PlanReport): string {
  const lines = [
    `plan ${r.plan} → ${r.to}: ${r.ok ? 'every step done' : 'FAILED'} in ${(r.durationMs / 1000).toFixed(1)} s`,
  ];
  for (const s of r.steps) {
    lines.push(`  step ${s.index} (group ${s.group}, on failure ${s.onFailure}): ${s.outcome}`);
    for (const u of s.unknown) lines.push(`    ${u}: no such VM in the catalog`);
    for (const v of s.vms) {
      const tag = v.critical ? ' [critical]' : '';
      const from = v.backupId !== null ? ` from backup ${v.backupId}` : '';
      lines.push(`    ${v.vm}${tag}: ${v.outcome}${from}${v.detail ? ` — ${v.detail}` : ''}`);
    }
  }
  return lines.join('\n');
}
