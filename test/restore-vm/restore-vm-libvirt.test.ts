/**
 * A KVM VM end to end: a libvirt domain (.xml) whose qcow2 disk holds the
 * sample store's ext4-on-MBR disk (qemu-img convert) is backed up through its
 * domain file, then restored with restore-vm under a new name with a
 * datastore map. The disk must equal the source (qemu-img compare) and the
 * domain XML must come back patched: name, uuid, disk source path, MACs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../agent/source/libvirt.js';
import { newRepo, sampleStore, vdbakOk } from '../helpers/vdbak.js';

const UUID = '6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const MACS = ['52:54:00:11:22:33', '52:54:00:44:55:66'];

let ds: string;
let repo: string;
let disk: string;

function ok(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

beforeAll(() => {
  ds = mkdtempSync(join(tmpdir(), 'vdbak-kvm-'));
  const vm = join(ds, 'web01');
  mkdirSync(vm);
  disk = join(vm, 'web01.qcow2');
  ok('qemu-img', ['convert', '-O', 'qcow2', join(sampleStore(), 'lin01', 'lin01.vmdk'), disk]);
  writeFileSync(
    join(vm, 'web01.xml'),
    `<domain type='kvm'>
  <name>web01</name>
  <uuid>${UUID}</uuid>
  <memory unit='KiB'>1048576</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><mac address='${MACS[0]}'/><source network='default'/></interface>
    <interface type='bridge'><mac address='${MACS[1]}'/><source bridge='br0'/></interface>
  </devices>
</domain>
`,
  );
  repo = newRepo('kvm');
  vdbakOk(['backup', '--repo', repo, join(vm, 'web01.xml')]);
}, 300_000);

describe('restore-vm of a libvirt VM', () => {
  it('rebuilds its disk and patches its domain XML for the new place', () => {
    const to = join(mkdtempSync(join(tmpdir(), 'vdbak-kvm-to-')), 'dr');
    const r = vdbakOk([
      'restore-vm',
      '--repo',
      repo,
      'web01',
      '--to',
      to,
      '--name',
      'web01-dr',
      '--format',
      'qcow2',
      '--datastore-map',
      `${ds}=/srv/dr`,
    ]);
    expect(r.stdout).toMatch(/: success/);
    const files = readdirSync(to).sort();
    expect(files).toContain('web01-dr.qcow2');
    // every byte the guest can see is the source's
    ok('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', disk, join(to, 'web01-dr.qcow2')]);
    const xmlName = files.find((f) => f.endsWith('.xml'))!;
    const text = readFileSync(join(to, xmlName), 'utf8');
    const d = parseDomainXml(text, xmlName);
    expect(d.name).toBe('web01-dr');
    expect(d.uuid).toBeDefined();
    expect(d.uuid).not.toBe(UUID);
    expect(d.disks.map((x) => x.source)).toEqual([join(to, 'web01-dr.qcow2')]);
    expect(d.macs).toHaveLength(2);
    for (const m of d.macs) {
      expect(m).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
      expect(MACS).not.toContain(m);
    }
    // the rest of the file is as it was
    expect(text).toContain("<source network='default'/>");
    expect(text).toContain("<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>");
  }, 300_000);
});
