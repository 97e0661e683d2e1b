/**
 * Whole-VM restores and recovery plans (issue 7) are queued and validated
 * already, but their orchestration (agent/restore-vm/restore-vm.ts,
 * agent/plans/run.ts) is not wired in yet: such a job fails with a clear
 * error instead of sitting in the queue.
 */
import { type Executor, jobErrors } from './context.js';
import { resolveRestoreTarget } from './restore-target.js';

export const notWiredYet: Executor = (ctx) => {
  const to = (ctx.job.params as { to?: string }).to ?? '';
  resolveRestoreTarget(to, ctx.config.restoreRoots);
  return Promise.reject(
    jobErrors(ctx.job).unsupported(
      'JOB_KIND_NOT_AVAILABLE',
      `${ctx.job.kind} jobs are not run by this daemon yet; use the vdbak ${ctx.job.kind === 'plan' ? 'plan' : 'restore-vm'} command`,
    ),
  );
};
