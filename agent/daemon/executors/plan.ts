/**
 * `plan` jobs (issue 7 §4): a recovery plan's steps in order, every VM of
 * each step restored whole into <to>/<vm> (agent/plans/run.ts with
 * agent/restore-vm/plan-step.ts), through a read-only connection. A plan with
 * a failed step fails the job; its report stays in the result.
 */
import { type PlanReport, runPlan } from '../../plans/run.js';
import { openRepo } from '../../repo.js';
import { planRestoreVm } from '../../restore-vm/plan-step.js';
import type { PlanJobParams } from '../types.js';
import { type Executor, JobFailedWithResult } from './context.js';
import { resolveRestoreTarget } from './restore-target.js';

export const runPlanJob: Executor = async (ctx): Promise<PlanReport> => {
  const p = ctx.job.params as PlanJobParams;
  const to = resolveRestoreTarget(p.to, ctx.config.restoreRoots);
  const repo = openRepo(ctx.repo.root, { readonly: true, target: ctx.repo.target });
  try {
    let vmsDone = 0;
    const report = await runPlan(repo.catalog, p.plan, {
      to,
      signal: ctx.signal,
      restoreVm: planRestoreVm(repo, { format: p.format, datastoreMap: p.datastoreMap ?? [], keepIdentity: false }),
      onEvent: (e) => {
        if (e.type === 'step') {
          ctx.log.info({ step: e.step, group: e.group, vms: e.vms }, 'plan step started');
          ctx.progress({ phase: `step ${e.step} (${e.group})`, bytesDone: 0, files: vmsDone });
        } else {
          vmsDone++;
          ctx.log.info(
            { step: e.step, vm: e.report.vm, outcome: e.report.outcome, detail: e.report.detail },
            'plan VM',
          );
          ctx.progress({ phase: `step ${e.step}`, bytesDone: 0, files: vmsDone, current: e.report.vm });
        }
      },
    });
    if (!report.ok) {
      const bad = report.steps.filter((s) => s.outcome === 'failed').map((s) => `${s.index} (${s.group})`);
      throw new JobFailedWithResult('PLAN_FAILED', `plan ${p.plan}: step(s) ${bad.join(', ')} failed`, report);
    }
    return report;
  } finally {
    repo.close();
  }
};
