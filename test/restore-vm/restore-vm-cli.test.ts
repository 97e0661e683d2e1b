/**
 * `vdbak restore-vm` as an administrator runs it (the built CLI): the final
 * status and exit code, --json, --dry-run writing nothing, refusing to
 * overwrite, and argument mistakes as usage errors.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from '../helpers/fixtures.js';
import { newRepo, sampleStore, vdbak, vdbakOk } from '../helpers/vdbak.js';

interface StatusJson {
  status: string;
  disks?: { name: string; complete: boolean; outputs: string[] }[];
  error?: { code: string; file: string; field?: string };
  patch?: { text: string } | null;
}

describe('vdbak restore-vm', () => {
  const store = sampleStore();
  const vmFix = fixture('regions-vm.sh');
  const work = mkdtempSync(join(tmpdir(), 'vdbak-restore-vm-cli-'));
  let repo: string;
  let linRaw: string;

  beforeAll(() => {
    repo = newRepo('restore-vm-cli');
    vdbakOk(['backup', '--repo', repo, join(store, 'lin01'), join(vmFix, 'store', 'vm1')]);
    linRaw = join(work, 'lin01-source.raw');
    expect(spawnSync('qemu-img', ['convert', '-O', 'raw', join(store, 'lin01', 'lin01.vmdk'), linRaw]).status).toBe(0);
  });

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
    if (repo) rmSync(dirname(repo), { recursive: true, force: true });
  });

  it('restores, says success, exit 0; --json gives the same status', () => {
    const to = join(work, 'lin01');
    const r = vdbakOk(['restore-vm', '--repo', repo, 'lin01', '--to', to, '--format', 'qcow2']);
    expect(r.stdout).toMatch(/restored backup \d+ \(lin01\) into .* as qcow2: success/);
    expect(r.stdout).toMatch(/lin01\.qcow2 .* complete/);
    const cmp = spawnSync('qemu-img', ['compare', join(to, 'lin01.qcow2'), linRaw], { encoding: 'utf8' });
    expect(cmp.status, cmp.stdout).toBe(0);
    const to2 = join(work, 'lin01-json');
    const j = vdbakOk([
      'restore-vm',
      '--repo',
      repo,
      'lin01',
      '--to',
      to2,
      '--format',
      'raw',
      '--json',
    ]).json<StatusJson>();
    expect(j.status).toBe('success');
    expect(j.disks?.[0]).toMatchObject({ name: 'lin01.raw', complete: true, outputs: [join(to2, 'lin01.raw')] });
  });

  it('refuses to overwrite: exit 1, the error names the file; nothing changed', () => {
    const to = join(work, 'lin01');
    const before = readFileSync(join(to, 'lin01.qcow2'));
    const r = vdbak(['restore-vm', '--repo', repo, 'lin01', '--to', to, '--format', 'qcow2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/restore-vm failed: .*lin01\.qcow2 exists \(use --overwrite\)/);
    const j = vdbak([
      'restore-vm',
      '--repo',
      repo,
      'lin01',
      '--to',
      to,
      '--format',
      'qcow2',
      '--json',
    ]).json<StatusJson>();
    expect(j).toMatchObject({ status: 'failed', error: { code: 'RESTORE_VM_EXISTS', file: join(to, 'lin01.qcow2') } });
    expect(readFileSync(join(to, 'lin01.qcow2')).equals(before)).toBe(true);
    vdbakOk(['restore-vm', '--repo', repo, 'lin01', '--to', to, '--format', 'qcow2', '--overwrite']);
  });

  it('--dry-run prints the disks, the configuration files and the patch plan, and writes nothing', () => {
    const to = join(work, 'vm1-dry');
    const r = vdbakOk([
      'restore-vm',
      '--repo',
      repo,
      'vm1',
      '--to',
      to,
      '--name',
      'vm1-dr',
      '--datastore-map',
      'ds1=ds2',
      '--dry-run',
    ]);
    expect(r.stdout).toMatch(/would restore backup \d+ \(vm1\) into .* as vmdk-sparse: dry-run/);
    expect(r.stdout).toMatch(/vm1\.vmdk → vm1-dr\.vmdk/);
    expect(r.stdout).toMatch(/config vm1\.vmx/);
    expect(r.stdout).toMatch(/displayName/);
    expect(existsSync(to)).toBe(false);
  });

  it('restores a VM with its configuration, patched, under a new name', () => {
    const to = join(work, 'vm1-new');
    const r = vdbakOk(['restore-vm', '--repo', repo, 'vm1', '--to', to, '--name', 'vm1-new', '--format', 'vmdk-flat']);
    expect(r.stdout).toMatch(/: success/);
    expect(r.stdout).toMatch(/patched: \d+ change\(s\)/);
    const files = readdirSync(to).sort();
    expect(files).toEqual(
      expect.arrayContaining(['vm1-new.vmdk', 'vm1-new-flat.vmdk', 'vm1-new.vmx', 'vm1-new.vmsd', 'vm1-new.nvram']),
    );
    expect(readFileSync(join(to, 'vm1-new.vmx'), 'utf8')).toMatch(/^scsi0:0\.fileName = "vm1-new\.vmdk"$/m);
    expect(spawnSync('qemu-img', ['info', join(to, 'vm1-new.vmdk')]).status).toBe(0);
  });

  it('argument mistakes are usage errors (exit 2)', () => {
    for (const args of [
      ['lin01'],
      ['--to', join(work, 'x')],
      ['lin01', '--to', join(work, 'x'), '--format', 'vdi'],
      ['lin01', '--to', join(work, 'x'), '--datastore-map', 'nodelimiter'],
    ]) {
      const r = vdbak(['restore-vm', '--repo', repo, ...args]);
      expect(r.code, r.stderr).toBe(2);
    }
    expect(existsSync(join(work, 'x'))).toBe(false);
  });
});
