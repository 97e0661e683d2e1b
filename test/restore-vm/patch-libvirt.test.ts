/**
 * The patcher on a libvirt domain XML (issue 7 §3): name, uuid, disk source
 * paths, MAC addresses and firmware paths, read back by Python's
 * xml.etree (a reader no one here wrote) and by our own domain reader; every
 * other character of the file stays as it was.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatPlan, patchFolder, planPatch } from '../../agent/restore-vm/patch/index.js';
import { parseDomainXml } from '../../agent/source/libvirt.js';
import { run } from '../helpers/fixtures.js';
import { snapshotFolder } from './patch-fixture.js';

const DOMAIN = `<?xml version="1.0" encoding="UTF-8"?>
<!--
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
  virsh edit lin01
-->
<domain type='kvm'>
  <name>lin01</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <title>Linux &amp; friends</title>
  <memory unit='KiB'>2097152</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/lin01_VARS.fd</nvram>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/lin01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw"/>
      <source file="/var/lib/libvirt/images/lin01-data.img"/>
      <target dev="vdb" bus="virtio"/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/var/lib/libvirt/images/debian.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address="52:54:00:11:22:33"/>
      <source bridge='br0'/>
    </interface>
  </devices>
</domain>
`;

/** Python's ElementTree: what a domain says, independently of our XML reader. */
const ORACLE = `
import json, sys, xml.etree.ElementTree as ET
d = ET.parse(sys.argv[1]).getroot()
print(json.dumps({
  "name": d.findtext("name"), "uuid": d.findtext("uuid"), "title": d.findtext("title"),
  "disks": [s.get("file") for s in d.findall("devices/disk/source")],
  "macs": [m.get("address") for m in d.findall("devices/interface/mac")],
  "loader": d.findtext("os/loader"), "nvram": d.findtext("os/nvram"),
  "template": d.find("os/nvram").get("template"),
}))
`;

interface Domain {
  name: string;
  uuid: string;
  title: string;
  disks: string[];
  macs: string[];
  loader: string;
  nvram: string;
  template: string;
}

function readDomain(path: string): Domain {
  return JSON.parse(run('python3', ['-c', ORACLE, path])) as Domain;
}

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-patch-kvm-'));
  writeFileSync(join(dir, 'lin01.xml'), DOMAIN);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'lin01-restored.qcow2'), '16M']);
  writeFileSync(join(dir, 'lin01-data.img'), Buffer.alloc(4096));
  return dir;
}

const OPTS = {
  name: 'lin01-dr',
  targetFolder: '/srv/recovery/lin01',
  datastoreMap: [
    { from: '/var/lib/libvirt/images', to: '/srv/recovery/images' },
    { from: '/var/lib/libvirt/qemu/nvram/', to: '/srv/recovery/nvram' },
  ],
  diskFiles: [
    { old: '/var/lib/libvirt/images/lin01.qcow2', new: 'lin01-restored.qcow2' },
    { old: 'lin01-data.img', new: 'lin01-data.img' },
  ],
};

describe('a libvirt domain with two disks, a CD-ROM and two NICs', () => {
  it('--dry-run lists every change and writes nothing', () => {
    const dir = folder();
    const before = snapshotFolder(dir);
    const text = formatPlan(planPatch(dir, OPTS));
    for (const f of [
      'name',
      'uuid',
      'devices/disk[0]/source@file',
      'devices/disk[1]/source@file',
      'devices/disk[2]/source@file',
    ]) {
      expect(text).toContain(`${f}:`);
    }
    expect(text).toContain('devices/interface[1]/mac@address');
    expect(text).toContain('os/nvram');
    expect(snapshotFolder(dir)).toEqual(before);
  });

  it('patches name, uuid, disk paths, MACs and the nvram path; every other character stays', async () => {
    const dir = folder();
    const old = readDomain(join(dir, 'lin01.xml'));
    const { plan } = await patchFolder(dir, OPTS);
    const now = readDomain(join(dir, 'lin01.xml'));
    expect(now.name).toBe('lin01-dr');
    expect(now.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(now.uuid).not.toBe(old.uuid);
    expect(now.disks).toEqual([
      '/srv/recovery/lin01/lin01-restored.qcow2',
      '/srv/recovery/lin01/lin01-data.img',
      '/srv/recovery/images/debian.iso',
    ]);
    expect(now.macs).toHaveLength(2);
    for (const mac of now.macs) {
      expect(mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
      expect(old.macs).not.toContain(mac);
    }
    expect(new Set(now.macs).size).toBe(2);
    expect(now.nvram).toBe('/srv/recovery/nvram/lin01_VARS.fd');
    expect(now.loader).toBe(old.loader);
    expect(now.template).toBe(old.template);
    expect(now.title).toBe('Linux & friends');
    // the old text with exactly the new values put in is the new text
    let expected = DOMAIN;
    for (const [a, b] of [
      ['<name>lin01</name>', `<name>${now.name}</name>`],
      [old.uuid, now.uuid],
      ['/var/lib/libvirt/images/lin01.qcow2', now.disks[0]],
      ['/var/lib/libvirt/images/lin01-data.img', now.disks[1]],
      ['/var/lib/libvirt/images/debian.iso', now.disks[2]],
      [old.macs[0], now.macs[0]],
      [old.macs[1], now.macs[1]],
      ['>/var/lib/libvirt/qemu/nvram/lin01_VARS.fd<', `>${now.nvram}<`],
    ] as const) {
      expected = expected.replace(a ?? '', b ?? '');
    }
    expect(readFileSync(join(dir, 'lin01.xml'), 'utf8')).toBe(expected);
    // our own domain reader agrees
    const ours = parseDomainXml(readFileSync(join(dir, 'lin01.xml'), 'utf8'), 'lin01.xml');
    expect([ours.name, ours.uuid, ours.macs]).toEqual([now.name, now.uuid, now.macs]);
    expect(ours.disks.map((d) => d.source)).toEqual(now.disks.slice(0, 2));
    expect(ours.warnings).toEqual([]);
    expect(plan.warnings).toEqual([]);
    // the domain file keeps its name; the disks are the rebuild's
    expect(Object.keys(snapshotFolder(dir)).sort()).toEqual(['lin01-data.img', 'lin01-restored.qcow2', 'lin01.xml']);
  });

  it('escapes a name with markup in it; --keep-identity keeps uuid and MACs', async () => {
    const dir = folder();
    await patchFolder(dir, { ...OPTS, name: 'lin01 <dr> & "co"', keepIdentity: true });
    const now = readDomain(join(dir, 'lin01.xml'));
    expect(now.name).toBe('lin01 <dr> & "co"');
    expect(now.uuid).toBe('4dea22b3-1d52-d8f3-2516-782e98ab3fa0');
    expect(now.macs).toEqual(['52:54:00:aa:bb:cc', '52:54:00:11:22:33']);
  });

  it('hostile XML is a typed error naming the file, and nothing is written', () => {
    const dir = folder();
    writeFileSync(
      join(dir, 'lin01.xml'),
      '<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY a "aaaa">]>\n<domain><name>&a;</name></domain>\n',
    );
    const before = snapshotFolder(dir);
    expect(() => planPatch(dir, OPTS)).toThrow(
      expect.objectContaining({ code: 'XML_DTD', image: join(dir, 'lin01.xml') }),
    );
    expect(snapshotFolder(dir)).toEqual(before);
  });
});
