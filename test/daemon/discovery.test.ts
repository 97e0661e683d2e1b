/**
 * Discovery on a copy of the sample store, laid out as VMware folders (a
 * .vmx beside each VM's disks) in two datastores: VMs are found with their
 * identities, tracked by identity when they move (same catalog id, same
 * backups), marked vanished when gone (their backup made by the CLI still
 * listed and restorable) and present again when back; a libvirt domain
 * pointing at a qcow2 made by qemu-img is found; nothing leads discovery
 * out of its datastores.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inventoryVm } from '../../catalog/inventory.js';
import type { DatastoreConfig } from '../../agent/config/types.js';
import {
  discover,
  discoverVms,
  type DiscoveryLog,
  locateVm,
  type DiscoveryResult,
} from '../../agent/daemon/discovery.js';
import { openRepo, type Repo } from '../../agent/repo.js';
import { run } from '../helpers/fixtures.js';
import { sampleStore, vdbakOk } from '../helpers/vdbak.js';

const WIN_UUID = '564d1a2b-3c4d-5e6f-7081-92a3b4c5d6e7';
const LIN_UUID = '564d9988-7766-5544-3322-1100ffeeddcc';
const WEB_UUID = '0b3c4d5e-6f70-4182-93a4-b5c6d7e8f901';

let tmp: string;
let ds1: string;
let ds2: string;
let repoDir: string;
let repo: Repo;
let datastores: DatastoreConfig[];
let clock = 1_000_000;

/** VMware's "56 4d 1a 2b 3c 4d 5e 6f-70 81 92 a3 b4 c5 d6 e7" form of a uuid. */
function vmwareUuid(u: string): string {
  const h = u.replace(/-/g, '');
  const bytes = h.match(/../g) ?? [];
  return `${bytes.slice(0, 8).join(' ')}-${bytes.slice(8).join(' ')}`;
}

function vmx(name: string, uuid: string, disk: string, guest: string): string {
  return [
    '.encoding = "UTF-8"',
    'config.version = "8"',
    'virtualHW.version = "19"',
    `displayName = "${name}"`,
    `guestOS = "${guest}"`,
    `uuid.bios = "${vmwareUuid(uuid)}"`,
    `uuid.location = "${vmwareUuid(uuid)}"`,
    'memSize = "2048"',
    'scsi0.present = "TRUE"',
    'scsi0.virtualDev = "lsisas1068"',
    'scsi0:0.present = "TRUE"',
    `scsi0:0.fileName = "${disk}"`,
    'sata0.present = "TRUE"',
    'sata0:1.present = "TRUE"',
    'sata0:1.deviceType = "cdrom-image"',
    'sata0:1.fileName = "/vmfs/volumes/iso/install.iso"',
    'ethernet0.present = "TRUE"',
    'ethernet0.addressType = "generated"',
    'ethernet0.generatedAddress = "00:0c:29:12:34:56"',
    '',
  ].join('\n');
}

function domainXml(name: string, uuid: string, qcow2: string): string {
  return `<domain type="kvm">
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory>1048576</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type></os>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source file="${qcow2}"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <target dev="sda" bus="sata"/>
      <readonly/>
    </disk>
    <interface type="network">
      <source network="default"/>
      <mac address="52:54:00:12:34:56"/>
      <model type="virtio"/>
    </interface>
  </devices>
</domain>
`;
}

let store: string;

/** lin01 as a VMware folder in `ds`: the sample store's disk and a .vmx. */
function makeLin01(ds: string): void {
  mkdirSync(join(ds, 'lin01'));
  copyFileSync(join(store, 'lin01', 'lin01.vmdk'), join(ds, 'lin01', 'lin01.vmdk'));
  writeFileSync(join(ds, 'lin01', 'lin01.vmx'), vmx('lin01', LIN_UUID, 'lin01.vmdk', 'debian12-64'));
}

function scan(): DiscoveryResult {
  clock += 60_000;
  return discover(repo.catalog, datastores, clock);
}

const names = (list: { name: string }[]): string[] => list.map((v) => v.name).sort();

beforeAll(() => {
  store = sampleStore();
  tmp = mkdtempSync(join(tmpdir(), 'vdbak-discovery-'));
  ds1 = join(tmp, 'ds1');
  ds2 = join(tmp, 'ds2');
  mkdirSync(join(ds1, 'win01'), { recursive: true });
  mkdirSync(join(ds1, 'iso-library'), { recursive: true });
  mkdirSync(ds2);
  for (const f of ['win01.vmdk', 'win01-000001.vmdk']) copyFileSync(join(store, 'win01', f), join(ds1, 'win01', f));
  writeFileSync(join(ds1, 'win01', 'win01.vmx'), vmx('win01', WIN_UUID, 'win01-000001.vmdk', 'windows2019srv-64'));
  makeLin01(ds1);
  // a folder with no VM, and an XML that is not a domain: neither is a VM nor a problem
  writeFileSync(join(ds1, 'iso-library', 'install.iso'), 'not a disk');
  writeFileSync(join(ds1, 'iso-library', 'catalog.xml'), '<library><item>install.iso</item></library>');
  datastores = [
    { name: 'ds1', path: ds1 },
    { name: 'ds2', path: ds2 },
  ];
  repoDir = join(tmp, 'repo');
  vdbakOk(['init', '--repo', repoDir]);
  vdbakOk(['backup', '--repo', repoDir, '--json', join(ds1, 'lin01', 'lin01.vmx')]);
  repo = openRepo(repoDir);
});

afterAll(() => {
  repo?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('discover', () => {
  let linId: number;

  it('finds win01 and lin01 by their uuid.bios, with their disks; lin01 keeps the id its CLI backup gave it', () => {
    const backedUp = repo.catalog.findVms('lin01');
    expect(backedUp.map((v) => v.identity)).toEqual([`vmware:${LIN_UUID}`]);
    const r = scan();
    expect(r.warnings).toEqual([]);
    expect(r.vms.map((v) => [v.name, v.identity, v.datastore, v.source.kind]).sort()).toEqual([
      ['lin01', `vmware:${LIN_UUID}`, 'ds1', 'vmware'],
      ['win01', `vmware:${WIN_UUID}`, 'ds1', 'vmware'],
    ]);
    const win = r.vms.find((v) => v.name === 'win01');
    expect(win?.source.disks).toEqual([
      { slot: 'scsi0:0', path: join(ds1, 'win01', 'win01-000001.vmdk'), format: 'vmdk' },
    ]);
    expect(names(r.appeared)).toEqual(['lin01', 'win01']);
    expect(r.appeared.every((a) => !a.returned)).toBe(true);
    expect(r.moved).toEqual([]);
    expect(r.vanished).toEqual([]);
    linId = r.vms.find((v) => v.name === 'lin01')?.vmId ?? -1;
    expect(linId).toBe(backedUp[0]?.id);
    const row = inventoryVm(repo.catalog, `vmware:${LIN_UUID}`);
    expect(row).toMatchObject({ datastore: 'ds1', configPath: join(ds1, 'lin01', 'lin01.vmx'), vanishedMs: null });

    // a second scan with nothing changed reports nothing
    const again = scan();
    expect([again.appeared, again.moved, again.vanished]).toEqual([[], [], []]);
  });

  it('a moved folder is the same VM (same id), found where it is now', () => {
    renameSync(join(ds1, 'lin01'), join(ds1, 'lin01-moved'));
    const r = scan();
    expect(r.moved).toEqual([
      {
        vmId: linId,
        identity: `vmware:${LIN_UUID}`,
        name: 'lin01',
        from: { datastore: 'ds1', configPath: join(ds1, 'lin01', 'lin01.vmx') },
        to: { datastore: 'ds1', configPath: join(ds1, 'lin01-moved', 'lin01.vmx') },
      },
    ]);
    expect(r.appeared).toEqual([]);
    expect(r.vanished).toEqual([]);
    expect(repo.catalog.findVms('lin01').map((v) => v.id)).toEqual([linId]);

    // to another datastore: moved again, logged as such, and locateVm finds it there
    renameSync(join(ds1, 'lin01-moved'), join(ds2, 'lin01'));
    const lines: Record<string, unknown>[] = [];
    const log: DiscoveryLog = pino(
      { level: 'info' },
      { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) },
    );
    const r2 = discover(repo.catalog, datastores, (clock += 60_000), log);
    expect(lines.map((l) => [l.msg, l.vm, l.identity])).toEqual([['VM moved', 'lin01', `vmware:${LIN_UUID}`]]);
    expect(
      discoverVms(repo.catalog, datastores, (clock += 60_000))
        .map((v) => [v.name, v.datastore])
        .sort(),
    ).toEqual([
      ['lin01', 'ds2'],
      ['win01', 'ds1'],
    ]);
    expect(r2.moved.map((m) => [m.vmId, m.from.datastore, m.to.datastore])).toEqual([[linId, 'ds1', 'ds2']]);
    expect(locateVm(repo.catalog, datastores, `vmware:${LIN_UUID}`)?.configPath).toBe(join(ds2, 'lin01', 'lin01.vmx'));
  });

  it('a deleted VM is vanished, and its backup is still listed and restorable', () => {
    // deleted for real: the backup must not need the VM's files
    rmSync(join(ds2, 'lin01'), { recursive: true });
    const r = scan();
    expect(r.vanished).toEqual([
      {
        vmId: linId,
        identity: `vmware:${LIN_UUID}`,
        name: 'lin01',
        from: { datastore: 'ds2', configPath: join(ds2, 'lin01', 'lin01.vmx') },
      },
    ]);
    expect(names(r.vms)).toEqual(['win01']);
    expect(inventoryVm(repo.catalog, `vmware:${LIN_UUID}`)?.vanishedMs).toBe(clock);
    expect(locateVm(repo.catalog, datastores, `vmware:${LIN_UUID}`)).toBeUndefined();

    const backups = vdbakOk(['backups', '--repo', repoDir, 'lin01', '--json']).json<
      { vmName: string; state: string }[]
    >();
    expect(backups.map((b) => [b.vmName, b.state])).toEqual([['lin01', 'complete']]);
    const to = join(tmp, 'restored');
    vdbakOk(['restore', '--repo', repoDir, 'lin01', '/d0p1/home/bob/notes.txt', '--to', to]);
    expect(readFileSync(join(to, 'notes.txt'), 'utf8')).toBe('remember the milk\n');

    // put back (from the store, as a restore would): present again, as itself
    makeLin01(ds1);
    const back = scan();
    expect(back.appeared).toEqual([
      {
        vmId: linId,
        identity: `vmware:${LIN_UUID}`,
        name: 'lin01',
        returned: true,
        to: { datastore: 'ds1', configPath: join(ds1, 'lin01', 'lin01.vmx') },
        from: { datastore: 'ds2', configPath: join(ds2, 'lin01', 'lin01.vmx') },
      },
    ]);
    expect(inventoryVm(repo.catalog, `vmware:${LIN_UUID}`)?.vanishedMs).toBeNull();
  });

  it('finds a libvirt domain whose qcow2 was made by qemu-img, and does not list its image again', () => {
    const web = join(ds2, 'web01');
    mkdirSync(web);
    run('qemu-img', ['create', '-q', '-f', 'qcow2', join(web, 'web01.qcow2'), '32M']);
    writeFileSync(join(web, 'web01.xml'), domainXml('web01', WEB_UUID, join(web, 'web01.qcow2')));
    const r = scan();
    expect(r.appeared.map((a) => [a.name, a.identity, a.to.datastore])).toEqual([
      ['web01', `libvirt:${WEB_UUID}`, 'ds2'],
    ]);
    const vm = r.vms.find((v) => v.name === 'web01');
    expect(vm?.source.kind).toBe('libvirt');
    expect(vm?.source.disks).toEqual([{ slot: 'vda', path: join(web, 'web01.qcow2'), format: 'qcow2' }]);
    expect(names(r.vms)).toEqual(['lin01', 'web01', 'win01']);
    expect(locateVm(repo.catalog, datastores, `libvirt:${WEB_UUID}`)?.configPath).toBe(join(web, 'web01.xml'));
  });

  it('a VM copied with its uuid: the original keeps the identity, the copy is told apart by its path', () => {
    const copy = join(ds2, 'win01-copy');
    mkdirSync(copy);
    for (const f of ['win01.vmx', 'win01.vmdk', 'win01-000001.vmdk'])
      copyFileSync(join(ds1, 'win01', f), join(copy, f));
    const r = scan();
    const wins = r.vms.filter((v) => v.name === 'win01');
    expect(wins.map((v) => v.identity).sort()).toEqual([
      `vmware:${WIN_UUID}`,
      `vmware:${WIN_UUID}@${join(copy, 'win01.vmx')}`,
    ]);
    expect(wins.find((v) => v.identity === `vmware:${WIN_UUID}`)?.datastore).toBe('ds1');
    expect(r.moved).toEqual([]);
    expect(r.warnings).toEqual([
      `${join(copy, 'win01.vmx')}: identity vmware:${WIN_UUID} is also ${join(ds1, 'win01', 'win01.vmx')}'s; tracked as vmware:${WIN_UUID}@${join(copy, 'win01.vmx')}`,
    ]);
    rmSync(copy, { recursive: true });
    expect(scan().vanished.map((v) => v.identity)).toEqual([`vmware:${WIN_UUID}@${join(copy, 'win01.vmx')}`]);
  });

  it('never leaves its datastores: disks named outside are not read, symlinked folders out are not scanned', () => {
    const secret = join(tmp, 'secret');
    mkdirSync(secret);
    run('qemu-img', ['create', '-q', '-f', 'qcow2', join(secret, 'host.qcow2'), '1M']);
    const evil = join(ds2, 'evil');
    mkdirSync(evil);
    writeFileSync(
      join(evil, 'evil.xml'),
      domainXml('evil', '99999999-8888-4777-8666-555555555555', join(secret, 'host.qcow2')),
    );
    symlinkSync(secret, join(ds2, 'escape'));
    // a filer's snapshot folder holds yesterday's copies of the VMs: not VMs of their own
    mkdirSync(join(ds1, '.snapshot'));
    copyFileSync(join(ds1, 'win01', 'win01.vmx'), join(ds1, '.snapshot', 'win01.vmx'));
    const r = scan();
    expect(r.vms.filter((v) => v.name === 'win01')).toHaveLength(1);
    const vm = r.vms.find((v) => v.name === 'evil');
    expect(vm?.source.disks).toEqual([]);
    expect(vm?.source.warnings).toContain(`vda: ${join(secret, 'host.qcow2')} lies outside every datastore; not read`);
    expect(r.vms.some((v) => v.source.disks.some((d) => d.path.startsWith(secret)))).toBe(false);
    expect(r.warnings).toContain(`datastore ds2: escape leads out of the datastore (${secret}); not scanned`);
    rmSync(evil, { recursive: true });
    rmSync(join(ds2, 'escape'));
    rmSync(join(ds1, '.snapshot'), { recursive: true });
  });

  it('a datastore that cannot be read marks none of its VMs vanished', () => {
    const r = discover(
      repo.catalog,
      [{ name: 'ds1', path: join(tmp, 'unmounted') }, datastores[1]!],
      (clock += 60_000),
    );
    expect(r.warnings[0]).toMatch(/^datastore ds1 \(.*unmounted\) cannot be read: ENOENT/);
    expect(r.vanished.map((v) => v.name)).not.toContain('win01');
    expect(inventoryVm(repo.catalog, `vmware:${WIN_UUID}`)?.vanishedMs).toBeNull();
  });

  it('a broken VM is a warning, and the others of its datastore are still found', () => {
    const broken = join(ds1, 'broken');
    mkdirSync(broken);
    writeFileSync(
      join(broken, 'broken.vmx'),
      vmx('broken', '12345678-1234-1234-1234-123456789abc', 'gone.vmdk', 'other'),
    );
    writeFileSync(join(broken, 'bad.xml'), '<domain><name>x</name><uuid>nope</uuid></domain>');
    const r = scan();
    expect(names(r.vms)).toEqual(['lin01', 'web01', 'win01']);
    expect(r.warnings).toHaveLength(2);
    expect(r.warnings[0]).toMatch(/broken: .*VMX_DISK_MISSING/);
    expect(r.warnings[1]).toMatch(/bad\.xml: .*LIBVIRT_BAD_UUID/);
    rmSync(broken, { recursive: true });
  });
});
