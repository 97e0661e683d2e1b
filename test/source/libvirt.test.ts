/**
 * libvirt domain XML: what `virt-install --print-xml` writes for a VM with a
 * qcow2 and a raw disk, a CD-ROM and two NICs, read into a VmSource against
 * images made by qemu-img; and hostile files that must end in typed errors.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_DOMAIN_BYTES, normaliseUuid, parseDomainXml, sourceFromDomainXml } from '../../agent/source/libvirt.js';
import { MAX_XML_DEPTH, MAX_XML_VALUE_CHARS } from '../../agent/source/xml.js';
import { LimitError, NotFoundError, UnsupportedError, VdbakError } from '../../parsers/errors.js';
import { run } from '../helpers/fixtures.js';

let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'vdbak-libvirt-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The shape virt-install 4.x prints (--print-xml) for --disk …qcow2 --disk …raw --cdrom … --network ×2. */
function domainXml(o: { name: string; uuid: string; qcow2: string; raw: string; iso: string }): string {
  return `<domain type="kvm">
  <name>${o.name}</name>
  <uuid>${o.uuid}</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory>2097152</memory>
  <currentMemory>2097152</currentMemory>
  <vcpu>2</vcpu>
  <os>
    <type arch="x86_64" machine="q35">hvm</type>
    <boot dev="cdrom"/>
    <boot dev="hd"/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode="host-passthrough"/>
  <clock offset="utc">
    <timer name="rtc" tickpolicy="catchup"/>
  </clock>
  <pm>
    <suspend-to-mem enabled="no"/>
    <suspend-to-disk enabled="no"/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" discard="unmap"/>
      <source file="${o.qcow2}"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw"/>
      <source file="${o.raw}"/>
      <target dev="vdb" bus="virtio"/>
    </disk>
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <source file="${o.iso}"/>
      <target dev="sda" bus="sata"/>
      <readonly/>
    </disk>
    <controller type="usb" model="qemu-xhci" ports="15"/>
    <controller type="pci" model="pcie-root"/>
    <interface type="network">
      <source network="default"/>
      <mac address="52:54:00:6B:3C:58"/>
      <model type="virtio"/>
    </interface>
    <interface type="bridge">
      <source bridge="br0"/>
      <mac address="52:54:00:aa:01:02"/>
      <model type="e1000e"/>
    </interface>
    <console type="pty"/>
    <channel type="unix">
      <source mode="bind"/>
      <target type="virtio" name="org.qemu.guest_agent.0"/>
    </channel>
    <graphics type="spice" port="-1" tlsPort="-1" autoport="yes">
      <image compression="off"/>
    </graphics>
    <video>
      <model type="virtio"/>
    </video>
    <rng model="virtio">
      <backend model="random">/dev/urandom</backend>
    </rng>
  </devices>
</domain>
`;
}

function typedError(fn: () => unknown): VdbakError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VdbakError);
    return e as VdbakError;
  }
  throw new Error('expected a typed error');
}

const UUID = '4dea22b3-1d52-d8f3-2516-782e98ab3fa0';

describe('parseDomainXml', () => {
  const xml = domainXml({
    name: 'web01',
    uuid: UUID.toUpperCase(),
    qcow2: '/a/web01.qcow2',
    raw: '/a/data.raw',
    iso: '/iso/debian.iso',
  });

  it('reads name, uuid, the two disks (not the CD-ROM) and both MACs', () => {
    const d = parseDomainXml(xml, 'web01.xml');
    expect(d.name).toBe('web01');
    expect(d.uuid).toBe(UUID);
    expect(d.hypervisor).toBe('kvm');
    expect(d.disks).toEqual([
      { slot: 'vda', type: 'file', source: '/a/web01.qcow2', format: 'qcow2', bus: 'virtio' },
      { slot: 'vdb', type: 'file', source: '/a/data.raw', format: 'raw', bus: 'virtio' },
    ]);
    expect(d.skipped).toEqual([{ slot: 'sda', reason: 'a cdrom, not a disk' }]);
    expect(d.macs).toEqual(['52:54:00:6b:3c:58', '52:54:00:aa:01:02']);
    expect(d.warnings).toEqual([]);
  });

  it('takes a disk without a driver type as raw, a block device by its dev, and skips what has no file here', () => {
    const d = parseDomainXml(
      `<domain type='kvm'><name>x</name><devices>
        <disk type='file'><source file='/a/plain.img'/><target dev='hda'/></disk>
        <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg0/lv1'/><target dev='sdb'/></disk>
        <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdc'/></disk>
        <disk type='volume' device='disk'><source pool='p' volume='v'/><target dev='vdd'/></disk>
        <disk type='file' device='disk'><driver type='vdi'/><source file='/a/x.vdi'/><target dev='vde'/></disk>
        <disk type='file' device='floppy'><source file='/a/f.img'/><target dev='fda'/></disk>
        <disk type='file' device='disk'><driver type='vmdk'/><source file='/a/y.vmdk'/></disk>
        <disk type='file' device='cdrom'><target dev='hdc'/></disk>
      </devices></domain>`,
      'x.xml',
    );
    expect(d.uuid).toBeUndefined();
    expect(d.disks.map((x) => [x.slot, x.type, x.source, x.format])).toEqual([
      ['hda', 'file', '/a/plain.img', 'raw'],
      ['sdb', 'block', '/dev/vg0/lv1', 'raw'],
      ['disk6', 'file', '/a/y.vmdk', 'vmdk'],
    ]);
    expect(d.skipped.map((s) => s.slot)).toEqual(['vdc', 'vdd', 'vde', 'fda', 'hdc']);
    expect(d.skipped[2]?.reason).toMatch(/format 'vdi'/);
    expect(d.warnings).toEqual(['disk 6 has no <target dev>; called disk6']);
  });

  it('normalises UUIDs as libvirt accepts them', () => {
    expect(normaliseUuid('4DEA22B31D52D8F32516782E98AB3FA0')).toBe(UUID);
    expect(normaliseUuid(' 4dea22b3-1d52-d8f3-2516-782e98ab3fa0\n')).toBe(UUID);
    expect(normaliseUuid('4dea22b3-1d52-d8f3-2516-782e98ab3fa')).toBeUndefined();
  });

  it('gives typed errors for what is not a usable domain', () => {
    expect(typedError(() => parseDomainXml('<network><name>default</name></network>', 'n.xml')).code).toBe(
      'LIBVIRT_NOT_DOMAIN',
    );
    expect(typedError(() => parseDomainXml('<domain><uuid>x</uuid></domain>', 'd.xml')).code).toBe('LIBVIRT_NO_NAME');
    expect(
      typedError(() => parseDomainXml('<domain><name>a</name><uuid>not-a-uuid</uuid></domain>', 'd.xml')).code,
    ).toBe('LIBVIRT_BAD_UUID');
    const many = `<domain><name>a</name><devices>${'<interface type="network"/>'.repeat(1025)}</devices></domain>`;
    expect(typedError(() => parseDomainXml(many, 'd.xml'))).toBeInstanceOf(LimitError);
  });

  it('refuses hostile XML with typed errors: entity bombs, external entities, deep nesting, huge attributes', () => {
    const bomb = `<?xml version="1.0"?>
<!DOCTYPE domain [
  <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<domain type="kvm"><name>&c;</name></domain>`;
    const e1 = typedError(() => parseDomainXml(bomb, 'bomb.xml'));
    expect(e1).toBeInstanceOf(UnsupportedError);
    expect(e1.code).toBe('XML_DTD');

    const xxe = `<!DOCTYPE domain SYSTEM "http://attacker.example/x.dtd"><domain><name>x</name></domain>`;
    expect(typedError(() => parseDomainXml(xxe, 'xxe.xml')).code).toBe('XML_DTD');
    expect(typedError(() => parseDomainXml('<domain><name>&passwd;</name></domain>', 'e.xml')).code).toBe('XML_ENTITY');

    const deep = `<domain><name>x</name><metadata>${'<m>'.repeat(MAX_XML_DEPTH * 10)}</metadata></domain>`;
    const e2 = typedError(() => parseDomainXml(deep, 'deep.xml'));
    expect(e2).toBeInstanceOf(LimitError);
    expect(e2.code).toBe('XML_DEPTH');

    const huge = `<domain><name>x</name><devices><disk><source file="${'A'.repeat(MAX_XML_VALUE_CHARS + 10)}"/></disk></devices></domain>`;
    const e3 = typedError(() => parseDomainXml(huge, 'huge.xml'));
    expect(e3).toBeInstanceOf(LimitError);
    expect(e3.code).toBe('XML_VALUE_LONG');
    expect(e3.image).toBe('huge.xml');
  });
});

describe('sourceFromDomainXml', () => {
  let folder: string;

  beforeAll(() => {
    folder = join(tmp, 'vms', 'web01');
    mkdirSync(folder, { recursive: true });
    run('qemu-img', ['create', '-q', '-f', 'qcow2', join(folder, 'web01.qcow2'), '64M']);
    run('qemu-img', ['create', '-q', '-f', 'raw', join(folder, 'data.raw'), '16M']);
  });

  it('is a VM with the uuid as identity and its two disks as qemu-img made them', () => {
    const xml = join(folder, 'web01.xml');
    writeFileSync(
      xml,
      domainXml({
        name: 'web01',
        uuid: UUID,
        qcow2: join(folder, 'web01.qcow2'),
        raw: join(folder, 'data.raw'),
        iso: '/iso/debian.iso',
      }),
    );
    const vm = sourceFromDomainXml(xml);
    expect(vm).toMatchObject({ name: 'web01', identity: `libvirt:${UUID}`, kind: 'libvirt', configPath: xml, folder });
    expect(vm.disks).toEqual([
      { slot: 'vda', path: join(folder, 'web01.qcow2'), format: 'qcow2' },
      { slot: 'vdb', path: join(folder, 'data.raw'), format: 'raw' },
    ]);
    // the formats are the ones qemu-img reports for the files
    for (const d of vm.disks) {
      const info = JSON.parse(run('qemu-img', ['info', '--output=json', d.path])) as { format: string };
      expect(info.format).toBe(d.format);
    }
    expect(vm.warnings).toEqual(['web01.xml: sda not backed up: a cdrom, not a disk']);
  });

  it('finds a disk next to the XML when the host path is not mounted here', () => {
    const xml = join(folder, 'moved.xml');
    writeFileSync(
      xml,
      domainXml({
        name: 'web01~copy',
        uuid: '11111111-2222-3333-4444-555555555555',
        qcow2: '/var/lib/libvirt/images/web01.qcow2',
        raw: 'data.raw',
        iso: '/iso/x.iso',
      }),
    );
    const vm = sourceFromDomainXml(xml);
    expect(vm.disks.map((d) => d.path)).toEqual([join(folder, 'web01.qcow2'), join(folder, 'data.raw')]);
    expect(vm.name).toBe('web01-copy');
    expect(vm.warnings).toContain(
      'moved.xml: vda: "/var/lib/libvirt/images/web01.qcow2" is not here; using web01.qcow2 next to the domain XML',
    );
  });

  it('a missing disk, a missing file and an oversized file are typed errors', () => {
    const xml = join(folder, 'broken.xml');
    writeFileSync(
      xml,
      domainXml({ name: 'b', uuid: UUID, qcow2: '/nowhere/gone.qcow2', raw: 'data.raw', iso: '/i.iso' }),
    );
    const e = typedError(() => sourceFromDomainXml(xml));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.code).toBe('LIBVIRT_DISK_MISSING');
    expect(typedError(() => sourceFromDomainXml(join(folder, 'none.xml'))).code).toBe('SOURCE_NOT_FOUND');
    const big = join(folder, 'big.xml');
    writeFileSync(big, Buffer.alloc(MAX_DOMAIN_BYTES + 1, 0x20));
    expect(typedError(() => sourceFromDomainXml(big)).code).toBe('LIBVIRT_TOO_LARGE');
  });
});
