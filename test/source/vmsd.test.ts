/**
 * The .vmsd snapshot dictionary: what a VM with two snapshots looks like in
 * VMware's file, counts that lie, and mutated inputs (parse or typed error).
 */
import { describe, expect, it } from 'vitest';
import { decodeDictionary } from '../../agent/source/dictionary.js';
import { MAX_SNAPSHOTS, parseVmsd } from '../../agent/source/vmsd.js';
import { LimitError } from '../../parsers/errors.js';
import { catchTyped, expectTypedOrOk, mutate, newTally } from '../helpers/fuzz.js';

const PATH = '/store/win01/win01.vmsd';

const VMSD = `.encoding = "UTF-8"
snapshot.lastUID = "2"
snapshot.current = "2"
snapshot0.uid = "1"
snapshot0.filename = "win01-Snapshot1.vmsn"
snapshot0.displayName = "clean install"
snapshot0.description = "before |22roles|22"
snapshot0.createTimeHigh = "398204"
snapshot0.createTimeLow = "-1245446528"
snapshot0.numDisks = "2"
snapshot0.disk0.fileName = "win01.vmdk"
snapshot0.disk0.node = "scsi0:0"
snapshot0.disk1.fileName = "win01_1.vmdk"
snapshot0.disk1.node = "nvme0:0"
snapshot1.uid = "2"
snapshot1.parent = "1"
snapshot1.filename = "win01-Snapshot2.vmsn"
snapshot1.displayName = "after patch Tuesday"
snapshot1.numDisks = "7"
snapshot1.disk0.fileName = "win01-000001.vmdk"
snapshot1.disk0.node = "scsi0:0"
snapshot.numSnapshots = "2"
`;

describe('parseVmsd', () => {
  it('lists snapshots with their parent, times and frozen disks; counts in the file are not trusted', () => {
    const v = parseVmsd(VMSD, PATH);
    expect(v.current).toBe('2');
    expect(v.warnings).toEqual([]);
    expect(v.snapshots.map((s) => [s.index, s.uid, s.parent ?? null, s.displayName])).toEqual([
      [0, '1', null, 'clean install'],
      [1, '2', '1', 'after patch Tuesday'],
    ]);
    // (398204 << 32) + (-1245446528 as u32) = 1710276206657152 µs since 1970
    expect(v.snapshots[0]?.createTime).toBe('2024-03-12T20:43:26.657Z');
    expect(v.snapshots[0]?.disks).toEqual([
      { fileName: 'win01.vmdk', node: 'scsi0:0' },
      { fileName: 'win01_1.vmdk', node: 'nvme0:0' },
    ]);
    expect(v.snapshots[1]?.disks).toEqual([{ fileName: 'win01-000001.vmdk', node: 'scsi0:0' }]);
  });

  it('warns when snapshot.current names no snapshot', () => {
    expect(parseVmsd('snapshot.current = "9"\n', PATH).warnings.join()).toContain('names no snapshot');
  });

  it('refuses more snapshots than the cap', () => {
    const lines = Array.from({ length: MAX_SNAPSHOTS + 1 }, (_, i) => `snapshot${i}.uid = "${i}"`);
    const e = catchTyped(() => parseVmsd(lines.join('\n'), PATH));
    expect(e).toBeInstanceOf(LimitError);
    expect(e.code).toBe('VMSD_TOO_MANY_SNAPSHOTS');
  });

  it('mutations parse or throw typed errors', () => {
    const tally = newTally();
    for (const { index, bytes } of mutate(Buffer.from(VMSD), 2000, 3)) {
      expectTypedOrOk(tally, index, () => parseVmsd(decodeDictionary(bytes, PATH), PATH));
    }
    expect(tally.ok).toBeGreaterThan(0);
  });
});
