/**
 * Minimal VMDK text descriptors (VMware "Virtual Disk Format 5.0" §
 * descriptor file) so qemu-img can open our hand-built extents: a flat base
 * and a snapshot delta that names it with parentFileNameHint / parentCID.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ImageFile } from './image.js';
import { writeImage } from './image.js';

export interface DescriptorSpec {
  createType: string;
  cid: string;
  parentCid?: string;
  parentHint?: string;
  extents: { sectors: number; type: string; file: string; offset?: number }[];
}

export function descriptorText(d: DescriptorSpec): string {
  const lines = [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${d.cid}`,
    `parentCID=${d.parentCid ?? 'ffffffff'}`,
    `createType="${d.createType}"`,
  ];
  if (d.parentHint) lines.push(`parentFileNameHint="${d.parentHint}"`);
  lines.push('', '# Extent description');
  for (const e of d.extents) {
    lines.push(`RW ${e.sectors} ${e.type} "${e.file}"${e.offset !== undefined ? ` ${e.offset}` : ''}`);
  }
  lines.push('', '# The Disk Data Base', '#DDB', '', 'ddb.adapterType = "lsilogic"', '');
  return lines.join('\n');
}

export const BASE_CID = '1b2c3d4e';
export const DELTA_CID = '5f6a7b8c';

/** Writes base.vmdk (monolithicFlat) + base-flat.vmdk holding `content`. */
export function writeFlatBase(dir: string, content: Uint8Array): string {
  writeFileSync(join(dir, 'base-flat.vmdk'), content);
  writeFileSync(
    join(dir, 'base.vmdk'),
    descriptorText({
      createType: 'monolithicFlat',
      cid: BASE_CID,
      extents: [{ sectors: content.length / 512, type: 'FLAT', file: 'base-flat.vmdk', offset: 0 }],
    }),
  );
  return join(dir, 'base.vmdk');
}

/**
 * Writes a delta: its extent file `<name>-delta.vmdk` and two descriptors,
 * `<name>.vmdk` (child of base.vmdk) and `<name>-alone.vmdk` (no parent).
 */
export function writeDelta(
  dir: string,
  name: string,
  createType: string,
  extentType: string,
  sectors: number,
  extent: ImageFile,
): { extentPath: string; withParent: string; alone: string } {
  const extentFile = `${name}-delta.vmdk`;
  writeImage(join(dir, extentFile), extent);
  const ext = [{ sectors, type: extentType, file: extentFile }];
  const withParent = join(dir, `${name}.vmdk`);
  writeFileSync(
    withParent,
    descriptorText({ createType, cid: DELTA_CID, parentCid: BASE_CID, parentHint: 'base.vmdk', extents: ext }),
  );
  const alone = join(dir, `${name}-alone.vmdk`);
  writeFileSync(alone, descriptorText({ createType, cid: DELTA_CID, extents: ext }));
  return { extentPath: join(dir, extentFile), withParent, alone };
}
