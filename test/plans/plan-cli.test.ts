/**
 * A recovery plan end to end through the CLI: groups and a plan defined on a
 * repository holding backups of the sample store, run into a folder in the
 * plan's order, each VM's disks rebuilt (checked with qemu-img) and the
 * report naming every step; the definitions survive a lost controller
 * because they ship with the catalog.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PlanReport } from '../../agent/plans/run.js';
import { fixture } from '../helpers/fixtures.js';
import { newRepo, sampleStore, vdbak, vdbakOk } from '../helpers/vdbak.js';

let repo: string;

let vm1Vmx: string;

beforeAll(() => {
  const store = sampleStore();
  // a third VM, a VMware folder with its .vmx: its configuration comes back patched
  const vm1 = join(fixture('regions-vm.sh'), 'store', 'vm1');
  vm1Vmx = readFileSync(join(vm1, 'vm1.vmx'), 'utf8');
  repo = newRepo('vdbak-plan-');
  vdbakOk(['backup', '--repo', repo, join(store, 'win01'), join(store, 'lin01'), vm1]);
}, 300_000);

function vmxValue(text: string, key: string): string | undefined {
  const m = new RegExp(`^${key.replace('.', '\\.')} = "(.*)"$`, 'm').exec(text);
  return m?.[1];
}

describe('vdbak plan run', () => {
  it('restores three VMs step by step, critical VMs first, and reports each step', () => {
    vdbakOk(['group', 'set', 'core', '--repo', repo, '--vm', 'vm1', '--vm', 'lin01', '--critical', 'lin01']);
    vdbakOk(['group', 'set', 'windows', '--repo', repo, '--vm', 'win01']);
    vdbakOk(['plan', 'set', 'dr', '--repo', repo, '--step', 'core:stop', '--step', 'windows:continue']);
    const shown = vdbakOk(['plan', 'show', 'dr', '--repo', repo, '--json']).json<{ definition: unknown }>();
    expect(shown.definition).toEqual({
      steps: [
        { group: 'core', onFailure: 'stop' },
        { group: 'windows', onFailure: 'continue' },
      ],
    });

    const to = mkdtempSync(join(tmpdir(), 'vdbak-plan-to-'));
    const r = vdbak(['plan', 'run', 'dr', '--repo', repo, '--to', to, '--format', 'qcow2', '--json']);
    const report = r.json<PlanReport>();
    expect(report.steps.map((s) => [s.group, s.outcome])).toEqual([
      ['core', 'done'],
      ['windows', 'done'],
    ]);
    expect(report.steps.flatMap((s) => s.vms.map((v) => [v.vm, v.critical]))).toEqual([
      ['lin01', true],
      ['vm1', false],
      ['win01', false],
    ]);
    for (const s of report.steps)
      for (const v of s.vms) expect(v, JSON.stringify(v)).toMatchObject({ outcome: 'restored' });
    expect(report.ok).toBe(true);
    expect(r.code).toBe(0);
    for (const vm of ['lin01', 'vm1', 'win01']) {
      const disks = readdirSync(join(to, vm)).filter((f) => f.endsWith('.qcow2'));
      expect(disks.length, vm).toBeGreaterThan(0);
      for (const d of disks) {
        const check = spawnSync('qemu-img', ['check', join(to, vm, d)], { encoding: 'utf8' });
        expect(check.status, check.stdout + check.stderr).toBe(0);
      }
    }
    // the VMware VM's configuration came back patched for its new place
    const vmx = readFileSync(join(to, 'vm1', 'vm1.vmx'), 'utf8');
    expect(vmxValue(vmx, 'displayName')).toBe('vm1');
    expect(vmxValue(vmx, 'uuid.bios')).toMatch(/^56 4d /);
    expect(vmxValue(vmx, 'uuid.bios')).not.toBe(vmxValue(vm1Vmx, 'uuid.bios'));
    expect(vmxValue(vmx, 'ethernet0.generatedAddress')).toBeUndefined();
    expect(vmxValue(vmx, 'scsi0:0.fileName')).toBe('vm1.qcow2');
    expect(existsSync(join(to, 'vm1', vmxValue(vmx, 'scsi0:0.fileName')!))).toBe(true);

    // the human form names every step and VM in order
    const text = vdbak([
      'plan',
      'run',
      'dr',
      '--repo',
      repo,
      '--to',
      mkdtempSync(join(tmpdir(), 'vdbak-plan-to-')),
      '--dry-run',
    ]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      /step 1 \(group core, on failure stop\): done\n +lin01 \[critical\]: planned from backup \d+ — would restore/,
    );
    expect(text.stdout).toMatch(/step 2 \(group windows, on failure continue\): done\n +win01: planned/);
  }, 300_000);

  it('stops at a failed step marked stop and says why', () => {
    vdbakOk(['group', 'set', 'ghosts', '--repo', repo, '--vm', 'no-such-vm']);
    vdbakOk(['group', 'set', 'linux', '--repo', repo, '--vm', 'lin01']);
    vdbakOk(['plan', 'set', 'broken', '--repo', repo, '--step', 'ghosts:stop', '--step', 'linux']);
    const to = mkdtempSync(join(tmpdir(), 'vdbak-plan-to-'));
    const r = vdbak(['plan', 'run', 'broken', '--repo', repo, '--to', to]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/step 1 \(group ghosts, on failure stop\): failed/);
    expect(r.stdout).toMatch(/no-such-vm: no such VM in the catalog/);
    expect(r.stdout).toMatch(/step 2 \(group linux, on failure stop\): skipped/);
    expect(existsSync(join(to, 'lin01'))).toBe(false);
  }, 120_000);

  it('refuses unknown groups and bad names with one clear line', () => {
    const r = vdbak(['plan', 'set', 'p', '--repo', repo, '--step', 'nope']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/names group 'nope', which does not exist \[PLAN_UNKNOWN_GROUP\]/);
    const bad = vdbak(['group', 'set', '../evil', '--repo', repo, '--vm', 'lin01']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/PLAN_BAD_NAME/);
  });

  it('keeps plans in the shipped catalog: a recovered repository still has them', () => {
    vdbakOk(['group', 'set', 'keepme', '--repo', repo, '--vm', 'lin01']);
    vdbakOk(['plan', 'set', 'shipped', '--repo', repo, '--step', 'keepme']);
    vdbakOk(['ship-catalog', '--repo', repo]);
    const fresh = join(mkdtempSync(join(tmpdir(), 'vdbak-plan-rec-')), 'repo');
    vdbakOk(['recover', '--from-target', join(repo, 'target'), '--repo', fresh]);
    const plans = vdbakOk(['plan', 'ls', '--repo', fresh, '--json']).json<{ name: string }[]>();
    expect(plans.map((p) => p.name)).toContain('shipped');
  }, 120_000);
});
