/**
 * Protection groups and recovery plans (issue 7 §4):
 *   vdbak group set NAME [--vm VM]... [--datastore DS]... [--critical VM]...
 *   vdbak group ls | show NAME | rm NAME
 *   vdbak plan set NAME --step GROUP[:stop|:continue]...
 *   vdbak plan ls | show NAME | rm NAME
 *   vdbak plan run NAME --to DIR [--format F] [--datastore-map OLD=NEW]... [--dry-run] [--json]
 * Definitions live in the catalog (shipped with it); `plan run` restores each
 * step's VMs in order with restore-vm.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type OnFailure, PlanDefinitionError, PlanStore } from '../../catalog/plans.js';
import { formatPlanReport, PlanNotFound, runPlan, type RestoreVmFn } from '../plans/run.js';
import { type Repo, withRepo } from '../repo.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

/** Plan and group mistakes are the caller's: one line, exit 1. */
async function guarded(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof PlanDefinitionError || e instanceof PlanNotFound) {
      process.stderr.write(`vdbak: ${e.message} [${e.code}]\n`);
      return 1;
    }
    throw e;
  }
}

function parseStep(s: string): { group: string; onFailure: OnFailure } {
  const m = /^(.+?)(?::(stop|continue))?$/.exec(s);
  if (!m) throw new UsageError(`--step takes GROUP[:stop|:continue], not '${s}'`);
  return { group: m[1]!, onFailure: (m[2] as OnFailure | undefined) ?? 'stop' };
}

export async function cmdGroup(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      vm: { type: 'string', multiple: true },
      datastore: { type: 'string', multiple: true },
      critical: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
    },
  });
  const [sub, name] = positionals;
  return guarded(() =>
    withRepo(
      values.repo,
      async (repo) => {
        const store = new PlanStore(repo.catalog);
        switch (sub) {
          case 'set': {
            if (!name) throw new UsageError('group set needs a NAME');
            const g = store.setGroup(name, {
              vms: values.vm ?? [],
              datastores: values.datastore ?? [],
              critical: values.critical ?? [],
            });
            const { vms, unknown } = store.members(name);
            await writeOut(
              values.json
                ? `${JSON.stringify({ ...g, members: vms, unknown })}\n`
                : `group ${name}: ${vms.length} VM(s) now (${vms.map((v) => v.name + (v.critical ? '*' : '')).join(', ') || 'none yet'})${unknown.length ? `; not in the catalog yet: ${unknown.join(', ')}` : ''}\n`,
            );
            return 0;
          }
          case 'ls':
          case 'show': {
            const groups = sub === 'show' ? [store.group(name ?? '')].filter((g) => g !== undefined) : store.groups();
            if (sub === 'show' && groups.length === 0)
              throw new PlanDefinitionError('PLAN_UNKNOWN_GROUP', `no protection group '${name}'`);
            const rows = groups.map((g) => ({ ...g, ...store.members(g.name) }));
            if (values.json) {
              await writeOut(`${JSON.stringify(sub === 'show' ? rows[0] : rows)}\n`);
            } else {
              const lines = rows.map(
                (g) =>
                  `${g.name}: ${g.vms.map((v) => v.name + (v.critical ? ' (critical)' : '')).join(', ') || 'no VM'}` +
                  `${g.definition.datastores.length ? ` — datastores ${g.definition.datastores.join(', ')}` : ''}` +
                  `${g.unknown.length ? ` — unknown: ${g.unknown.join(', ')}` : ''}`,
              );
              await writeOut(lines.length ? `${lines.join('\n')}\n` : 'no protection groups\n');
            }
            return 0;
          }
          case 'rm': {
            if (!name) throw new UsageError('group rm needs a NAME');
            if (!store.removeGroup(name))
              throw new PlanDefinitionError('PLAN_UNKNOWN_GROUP', `no protection group '${name}'`);
            await writeOut(`group ${name} removed\n`);
            return 0;
          }
          default:
            throw new UsageError(`group takes set, ls, show or rm, not '${sub ?? ''}'`);
        }
      },
      { readonly: sub === 'ls' || sub === 'show' },
    ),
  );
}

/** How `plan run` restores one VM: restore-vm, loaded only when a plan runs. */
async function restoreVmFn(
  repo: Repo,
  opts: { format?: string; datastoreMap: string[]; keepIdentity: boolean },
): Promise<RestoreVmFn> {
  const [{ planRestoreVm }, { isDiskFormat, DISK_FORMATS }, { parseMap }] = await Promise.all([
    import('../restore-vm/plan-step.js'),
    import('../restore-vm/writers/types.js'),
    import('./restore-vm.js'),
  ]);
  if (opts.format !== undefined && !isDiskFormat(opts.format)) {
    throw new UsageError(`--format takes one of ${DISK_FORMATS.join(', ')}, not '${opts.format}'`);
  }
  return planRestoreVm(repo, {
    format: opts.format,
    datastoreMap: parseMap(opts.datastoreMap),
    keepIdentity: opts.keepIdentity,
  });
}

export async function cmdPlan(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      step: { type: 'string', multiple: true },
      to: { type: 'string' },
      format: { type: 'string' },
      'datastore-map': { type: 'string', multiple: true },
      'keep-identity': { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const [sub, name] = positionals;
  // a plan run only reads the catalog: restores never take the writer lock
  const readonly = sub === 'ls' || sub === 'show' || sub === 'run';
  return guarded(() =>
    withRepo(
      values.repo,
      async (repo) => {
        const store = new PlanStore(repo.catalog);
        switch (sub) {
          case 'set': {
            if (!name) throw new UsageError('plan set needs a NAME');
            const p = store.setPlan(name, { steps: (values.step ?? []).map(parseStep) });
            await writeOut(
              values.json
                ? `${JSON.stringify(p)}\n`
                : `plan ${name}: ${p.definition.steps.map((s, i) => `${i + 1}. ${s.group} (on failure ${s.onFailure})`).join('; ')}\n`,
            );
            return 0;
          }
          case 'ls':
          case 'show': {
            const plans = sub === 'show' ? [store.plan(name ?? '')].filter((p) => p !== undefined) : store.plans();
            if (sub === 'show' && plans.length === 0) throw new PlanNotFound(name ?? '');
            if (values.json) {
              await writeOut(`${JSON.stringify(sub === 'show' ? plans[0] : plans)}\n`);
            } else {
              const lines = plans.map(
                (p) =>
                  `${p.name}: ${p.definition.steps.map((s, i) => `${i + 1}. ${s.group}${s.onFailure === 'continue' ? ' (continue on failure)' : ''}`).join(' → ')}`,
              );
              await writeOut(lines.length ? `${lines.join('\n')}\n` : 'no recovery plans\n');
            }
            return 0;
          }
          case 'rm': {
            if (!name) throw new UsageError('plan rm needs a NAME');
            if (!store.removePlan(name)) throw new PlanNotFound(name);
            await writeOut(`plan ${name} removed\n`);
            return 0;
          }
          case 'run': {
            if (!name) throw new UsageError('plan run needs a NAME');
            if (!values.to) throw new UsageError('plan run needs --to FOLDER');
            const dryRun = values['dry-run'] ?? false;
            const restoreVm: RestoreVmFn = dryRun
              ? () => Promise.resolve('dry run')
              : await restoreVmFn(repo, {
                  format: values.format,
                  datastoreMap: values['datastore-map'] ?? [],
                  keepIdentity: values['keep-identity'] ?? false,
                });
            {
              const report = await runPlan(repo.catalog, name, {
                to: resolve(values.to),
                dryRun,
                restoreVm,
                onEvent: values.json
                  ? undefined
                  : (e) => {
                      if (e.type === 'step') process.stderr.write(`step ${e.step}: group ${e.group}, ${e.vms} VM(s)\n`);
                      else process.stderr.write(`  ${e.report.vm}: ${e.report.outcome}\n`);
                    },
              });
              await writeOut(values.json ? `${JSON.stringify(report)}\n` : `${formatPlanReport(report)}\n`);
              return report.ok ? 0 : 1;
            }
          }
          default:
            throw new UsageError(`plan takes set, ls, show, rm or run, not '${sub ?? ''}'`);
        }
      },
      { readonly },
    ),
  );
}
