/**
 * A restored VMware VM folder for the patcher tests: the VMDKs of
 * test/fixtures/patch-vms.sh (a 3-link snapshot chain, flat, split, stream-
 * optimized and sparse disks) copied into a temp folder, with a hand-written
 * .vmx holding every kind of field the patcher touches and a .vmsd with two
 * snapshots.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from '../helpers/fixtures.js';

export const VMX = `.encoding = "UTF-8"
# written by hand for the patcher tests: every field kind
config.version = "8"
virtualHW.version = "19"
displayName = "win01"
annotation = "line one|0Aline two with a |22quote|22"
guestOS = "windows9-64"
uuid.bios = "56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc"
uuid.location = "56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc"
vc.uuid = "52 9e 11 22 33 44 55 66-77 88 99 aa bb cc dd ee"
nvram = "win01.nvram"
extendedConfigFile = "win01.vmxf"
workingDir = "/vmfs/volumes/ds1/win01"
sched.swap.derivedName = "/vmfs/volumes/ds1/win01/win01-d1a2b3c4.vswp"
checkpoint.vmState = "win01-gone.vmss"
scsi0.present = "TRUE"
scsi0.virtualDev = "lsisas1068"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "win01-000002.vmdk"
scsi0:1.present = "TRUE"
SCSI0:1.FILENAME   =   "/vmfs/volumes/ds1/win01/data.vmdk"   # odd case and spacing
scsi0:2.present = "FALSE"
scsi0:2.fileName = "/vmfs/volumes/ds1/win01/removed.vmdk"
sata0.present = "TRUE"
sata0:0.present = "TRUE"
sata0:0.fileName = "[ds1] win01/sata.vmdk"
sata0:1.present = "TRUE"
sata0:1.deviceType = "cdrom-image"
sata0:1.fileName = "[ds1] iso/win.iso"
nvme0.present = "TRUE"
nvme0:0.present = "TRUE"
nvme0:0.fileName = "nvme.vmdk"
ide0:0.present = "TRUE"
ide0:0.fileName = "ide.vmdk"
ethernet0.present = "TRUE"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "00:0c:29:12:34:56"
ethernet0.generatedAddressOffset = "0"
ethernet1.present = "TRUE"
ethernet1.addressType = "static"
ethernet1.address = "00:50:56:01:02:03"
floppy0.present = "FALSE"
`;

export const VMSD = `.encoding = "UTF-8"
snapshot.lastUID = "2"
snapshot.current = "2"
snapshot.numSnapshots = "2"
snapshot.mru0.uid = "2"
snapshot.mru1.uid = "1"
snapshot0.uid = "1"
snapshot0.filename = "win01-Snapshot1.vmsn"
snapshot0.displayName = "before update"
snapshot0.createTimeHigh = "398204"
snapshot0.createTimeLow = "-1245446528"
snapshot0.numDisks = "1"
snapshot0.disk0.fileName = "win01.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot1.uid = "2"
snapshot1.parent = "1"
snapshot1.filename = "win01-Snapshot2.vmsn"
snapshot1.displayName = "after update"
snapshot1.numDisks = "1"
snapshot1.disk0.fileName = "win01-000001.vmdk"
snapshot1.disk0.node = "scsi0:0"
`;

/** The disk files of the fixture, as the backup named them. */
export const DISK_FILES = [
  'win01.vmdk',
  'win01-000001.vmdk',
  'win01-000002.vmdk',
  'data.vmdk',
  'data-flat.vmdk',
  'sata.vmdk',
  'sata-s001.vmdk',
  'nvme.vmdk',
  'ide.vmdk',
] as const;

export function vmsFixture(): string {
  return join(fixture('patch-vms.sh'), 'vm');
}

/**
 * A restored folder: the fixture's disks renamed as `renames` says (the
 * rebuild's renames), the .vmx/.vmsd, two .vmsn, a .nvram and a .vmxf.
 */
export function makeVmFolder(renames: Record<string, string> = {}, files: Record<string, string> = {}): string {
  const src = vmsFixture();
  const dir = mkdtempSync(join(tmpdir(), 'vdbak-patch-'));
  for (const f of DISK_FILES) copyFileSync(join(src, f), join(dir, renames[f] ?? f));
  writeFileSync(join(dir, 'win01.vmx'), VMX);
  writeFileSync(join(dir, 'win01.vmsd'), VMSD);
  writeFileSync(join(dir, 'win01-Snapshot1.vmsn'), 'state 1');
  writeFileSync(join(dir, 'win01-Snapshot2.vmsn'), 'state 2');
  writeFileSync(join(dir, 'win01.nvram'), 'nvram');
  writeFileSync(join(dir, 'win01.vmxf'), '<Foundry/>');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Renames a file inside a folder. */
export function mv(dir: string, from: string, to: string): void {
  renameSync(join(dir, from), join(dir, to));
}

/** Every file's name and SHA-256 (folders skipped): what "nothing was written" compares. */
export function snapshotFolder(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    if (!statSync(join(dir, f)).isFile()) continue;
    out[f] = createHash('sha256')
      .update(readFileSync(join(dir, f)))
      .digest('hex');
  }
  return out;
}

/**
 * The lines of a dictionary or descriptor text whose key is not among
 * `keys` (lower case): what must be byte-identical after a patch.
 */
export function untouchedLines(text: string, keys: Set<string>): string[] {
  return text.split('\n').filter((line) => {
    const m = /^\s*([^\s="#]+)\s*=/.exec(line);
    return !m || !keys.has((m[1] ?? '').toLowerCase());
  });
}
