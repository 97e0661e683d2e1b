/**
 * Maintenance jobs: check (its own read-only connection, like a restore),
 * forget by the config's retention policy (then prune if asked), prune.
 */
import { checkRepo, type CheckReport } from '../../maint/check.js';
import { pruneRepo, type PruneReport } from '../../maint/prune.js';
import { openRepo, processAlive } from '../../repo.js';
import { forgetByPolicy, type ForgetVmDecision } from '../../maint/forget.js';
import type { CheckJobParams, ForgetJobParams } from '../types.js';
import { type Executor, JobFailedWithResult, jobErrors, throwIfCancelled } from './context.js';

export const runCheck: Executor = async (ctx): Promise<CheckReport> => {
  const p = ctx.job.params as CheckJobParams;
  // a backup whose process died left rows no reader sees: removed first (the daemon holds the lock), so they are not counted
  const reaped = ctx.repo.catalog.writeOutsideBatch(() => ctx.repo.catalog.reapDeadBackups(processAlive));
  if (reaped.length) ctx.log.info({ backups: reaped }, 'interrupted backups cleaned up before the check');
  const repo = openRepo(ctx.repo.root, { readonly: true, target: ctx.repo.target });
  try {
    const report = await checkRepo(repo, {
      readData: p.readData ?? false,
      onProgress: (pr) => {
        // the check loop calls this between packs: the place to stop
        throwIfCancelled(ctx);
        ctx.progress({
          phase: 'checking packs',
          bytesDone: pr.bytesRead,
          files: pr.packsDone,
          current: `${pr.packsDone}/${pr.packs} packs`,
        });
      },
    });
    ctx.log.info(
      {
        packs: report.packs,
        chunks: report.chunks,
        errors: report.errors.length,
        damaged: report.damaged.length,
        orphanPacks: report.orphanPacks.length,
      },
      report.ok ? 'check passed' : 'check found errors',
    );
    if (!report.ok) {
      // the job fails; its report stays in the job's result
      throw new JobFailedWithResult(
        'CHECK_ERRORS',
        `check found ${report.errors.length} error(s): ${report.errors.slice(0, 3).join('; ')}`,
        report,
      );
    }
    return report;
  } finally {
    repo.close();
  }
};

export interface ForgetResult {
  vms: ForgetVmDecision[];
  versionsRemoved: number;
  prune?: PruneReport;
}

export const runForget: Executor = async (ctx): Promise<ForgetResult> => {
  const p = ctx.job.params as ForgetJobParams;
  const cat = ctx.repo.catalog;
  let vms = cat.vms();
  if (p.vm !== undefined) {
    vms = cat.findVms(p.vm);
    if (vms.length === 0) throw jobErrors(ctx.job).notFound('VM_NOT_FOUND', `no VM named '${p.vm}' in the catalog`);
  }
  const {
    vms: decided,
    remove,
    versionsRemoved,
  } = forgetByPolicy(cat, vms, ctx.config.retention, {
    beforeEach: () => throwIfCancelled(ctx),
  });
  const out: ForgetResult = { vms: decided, versionsRemoved };
  ctx.log.info({ removed: remove, versionsRemoved: out.versionsRemoved }, 'forget done');
  if (p.prune) out.prune = await prune(ctx);
  return out;
};

async function prune(ctx: Parameters<Executor>[0]): Promise<PruneReport> {
  throwIfCancelled(ctx);
  ctx.progress({ phase: 'pruning', bytesDone: 0 });
  const r = await pruneRepo(ctx.repo);
  ctx.log.info(
    { bytesFreed: r.bytesFreed, packsDeleted: r.packsDeleted, packsRewritten: r.packsRewritten },
    'prune done',
  );
  return r;
}

export const runPrune: Executor = (ctx) => prune(ctx);
