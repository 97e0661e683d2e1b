import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../catalog/catalog.js';
import { PlanDefinitionError, PlanStore } from '../../catalog/plans.js';
import { formatPlanReport, runPlan, type PlanVmTarget } from '../../agent/plans/run.js';

let dir: string;
let cat: Catalog;
let store: PlanStore;

function vm(name: string, identity: string, datastore: string | null, configPath: string | null, backups = 1): number {
  const id = cat.upsertVm({ identity, name, kind: 'vmware', configPath: configPath ?? undefined });
  cat.db.prepare('UPDATE vms SET datastore = ? WHERE id = ?').run(datastore, id);
  for (let i = 0; i < backups; i++) {
    cat.startSeen();
    const b = cat.beginBackup(id, process.pid, 'host');
    cat.completeBackup(b, {});
  }
  return id;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-plans-'));
  cat = Catalog.open(join(dir, 'catalog.db'), { create: true });
  store = new PlanStore(cat);
  vm('db01', 'uuid-db01', 'ds1', '/vmfs/ds1/db01/db01.vmx');
  vm('web01', 'uuid-web01', 'ds1', '/vmfs/ds1/web01/web01.vmx');
  vm('app01', 'uuid-app01', 'ds2', '/vmfs/ds2/app01/app01.vmx');
  vm('lab01', 'uuid-lab01', null, '/srv/lab/lab01/lab01.vmx', 0);
});
afterEach(() => {
  cat.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('protection groups', () => {
  it('resolves members by name, identity, datastore name and datastore folder, critical first', () => {
    store.setGroup('tier1', { vms: ['uuid-app01'], datastores: ['ds1'], critical: ['web01'] });
    expect(store.members('tier1').vms.map((v) => [v.name, v.critical])).toEqual([
      ['web01', true],
      ['app01', false],
      ['db01', false],
    ]);
    store.setGroup('lab', { vms: [], datastores: ['/srv/lab'], critical: [] });
    expect(store.members('lab').vms.map((v) => v.name)).toEqual(['lab01']);
    store.setGroup('ghosts', { vms: ['nope', 'db01'], datastores: [], critical: [] });
    expect(store.members('ghosts')).toMatchObject({ vms: [{ name: 'db01' }], unknown: ['nope'] });
  });

  it('refuses bad names, empty groups, unknown groups in plans, and removing a group a plan uses', () => {
    expect(() => store.setGroup('../x', { vms: ['db01'], datastores: [], critical: [] })).toThrow(PlanDefinitionError);
    expect(() => store.setGroup('empty', { vms: [], datastores: [], critical: [] })).toThrow(/names no VM/);
    expect(() => store.setPlan('p', { steps: [{ group: 'missing', onFailure: 'stop' }] })).toThrow(/does not exist/);
    expect(() => store.setPlan('p', { steps: [] })).toThrow(/no steps/);
    store.setGroup('g', { vms: ['db01'], datastores: [], critical: [] });
    store.setPlan('p', { steps: [{ group: 'g', onFailure: 'stop' }] });
    expect(() => store.removeGroup('g')).toThrow(/used by plan/);
    expect(store.removePlan('p')).toBe(true);
    expect(store.removeGroup('g')).toBe(true);
  });

  it('keeps definitions in the catalog file (they ship with it)', () => {
    store.setGroup('g', { vms: ['db01'], datastores: [], critical: [] });
    store.setPlan('p', { steps: [{ group: 'g', onFailure: 'continue' }] });
    cat.close();
    cat = Catalog.open(join(dir, 'catalog.db'));
    store = new PlanStore(cat);
    expect(store.plan('p')?.definition).toEqual({ steps: [{ group: 'g', onFailure: 'continue' }] });
    expect(store.group('g')?.definition.vms).toEqual(['db01']);
  });
});

describe('running a recovery plan', () => {
  function recorder(fail: Set<string> = new Set()) {
    const calls: PlanVmTarget[] = [];
    const fn = (t: PlanVmTarget) => {
      calls.push(t);
      return fail.has(t.vmName) ? Promise.reject(new Error(`disk of ${t.vmName} unreadable`)) : Promise.resolve('ok');
    };
    return { calls, fn };
  }

  it('restores steps in order, critical VMs first, each from its latest backup into its own folder', async () => {
    store.setGroup('core', { vms: ['db01', 'web01'], datastores: [], critical: ['db01'] });
    store.setGroup('apps', { vms: ['app01'], datastores: [], critical: [] });
    store.setPlan('dr', {
      steps: [
        { group: 'core', onFailure: 'stop' },
        { group: 'apps', onFailure: 'stop' },
      ],
    });
    const r = recorder();
    const report = await runPlan(cat, 'dr', { to: '/restore', restoreVm: r.fn });
    expect(r.calls.map((c) => c.vmName)).toEqual(['db01', 'web01', 'app01']);
    expect(r.calls.map((c) => c.folder)).toEqual(['/restore/db01', '/restore/web01', '/restore/app01']);
    const latest = cat.backups({ vmId: cat.findVms('db01')[0]!.id }).at(-1)!.id;
    expect(r.calls[0]!.backupId).toBe(latest);
    expect(report.ok).toBe(true);
    expect(report.steps.map((s) => s.outcome)).toEqual(['done', 'done']);
    expect(formatPlanReport(report)).toMatch(/step 1 \(group core.*\n.*db01 \[critical\]: restored/);
  });

  it('stops after a failed step marked stop, and goes on after one marked continue', async () => {
    store.setGroup('core', { vms: ['db01', 'web01'], datastores: [], critical: [] });
    store.setGroup('apps', { vms: ['app01'], datastores: [], critical: [] });
    store.setPlan('stopper', {
      steps: [
        { group: 'core', onFailure: 'stop' },
        { group: 'apps', onFailure: 'stop' },
      ],
    });
    store.setPlan('goer', {
      steps: [
        { group: 'core', onFailure: 'continue' },
        { group: 'apps', onFailure: 'stop' },
      ],
    });
    const a = recorder(new Set(['db01']));
    const stopped = await runPlan(cat, 'stopper', { to: '/r', restoreVm: a.fn });
    expect(a.calls.map((c) => c.vmName)).toEqual(['db01', 'web01']);
    expect(stopped.ok).toBe(false);
    expect(stopped.steps.map((s) => s.outcome)).toEqual(['failed', 'skipped']);
    expect(stopped.steps[0]!.vms[0]).toMatchObject({
      vm: 'db01',
      outcome: 'failed',
      detail: 'disk of db01 unreadable',
    });
    expect(stopped.steps[1]!.vms[0]).toMatchObject({ vm: 'app01', outcome: 'skipped' });

    const b = recorder(new Set(['db01']));
    const went = await runPlan(cat, 'goer', { to: '/r', restoreVm: b.fn });
    expect(b.calls.map((c) => c.vmName)).toEqual(['db01', 'web01', 'app01']);
    expect(went.steps.map((s) => s.outcome)).toEqual(['failed', 'done']);
  });

  it('fails a step whose VM has no backup or whose group names an unknown VM, without calling restore for it', async () => {
    store.setGroup('lab', { vms: ['lab01', 'ghost'], datastores: [], critical: [] });
    store.setPlan('p', { steps: [{ group: 'lab', onFailure: 'stop' }] });
    const r = recorder();
    const report = await runPlan(cat, 'p', { to: '/r', restoreVm: r.fn });
    expect(r.calls).toEqual([]);
    expect(report.steps[0]).toMatchObject({ outcome: 'failed', unknown: ['ghost'] });
    expect(report.steps[0]!.vms[0]).toMatchObject({
      vm: 'lab01',
      outcome: 'failed',
      detail: 'no complete backup of this VM',
    });
  });

  it('gives two VMs with one display name distinct folders, and makes hostile names safe', async () => {
    vm('web01', 'uuid-web01-clone', 'ds3', null);
    vm('../../etc', 'uuid-evil', 'ds3', null);
    store.setGroup('ds3', { vms: ['web01'], datastores: ['ds3'], critical: [] });
    store.setPlan('p', { steps: [{ group: 'ds3', onFailure: 'continue' }] });
    const r = recorder();
    await runPlan(cat, 'p', { to: '/r', restoreVm: r.fn });
    const folders = r.calls.map((c) => c.folder);
    expect(new Set(folders).size).toBe(folders.length);
    for (const f of folders) expect(f.startsWith('/r/') && !f.slice(3).includes('/')).toBe(true);
  });

  it('dry run computes the order and folders and restores nothing', async () => {
    store.setGroup('core', { vms: ['db01'], datastores: [], critical: [] });
    store.setPlan('p', { steps: [{ group: 'core', onFailure: 'stop' }] });
    const r = recorder();
    const report = await runPlan(cat, 'p', { to: '/r', restoreVm: r.fn, dryRun: true });
    expect(r.calls).toEqual([]);
    expect(report.steps[0]!.vms[0]).toMatchObject({ outcome: 'planned' });
    expect(report.steps[0]!.vms[0]!.detail).toMatch(/would restore backup \d+ into \/r\/db01/);
  });
});
