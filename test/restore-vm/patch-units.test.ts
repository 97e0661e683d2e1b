/**
 * The patcher's small parts: datastore path mapping in every form VMware and
 * libvirt write, and in-place dictionary edits that keep CRLF line ends,
 * a non-UTF-8 charset and VMware's |XX escapes (read back by our reader).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { patchFolder } from '../../agent/restore-vm/patch/index.js';
import { baseName, mapDatastore } from '../../agent/restore-vm/patch/paths.js';
import { newCid, newKvmMac, newVmwareBiosUuid } from '../../agent/restore-vm/patch/ids.js';
import { decodeDictionary } from '../../agent/source/dictionary.js';
import { parseVmx } from '../../agent/source/vmx.js';

describe('datastore paths', () => {
  const map = [
    { from: 'ds1', to: 'ds2' },
    { from: 'old-ds', to: '/mnt/recovery' },
    { from: '/var/lib/libvirt/images/', to: '/srv/images' },
  ];
  it.each([
    ['/vmfs/volumes/ds1/vm/a.vmdk', '/vmfs/volumes/ds2/vm/a.vmdk'],
    ['[ds1] vm/a.vmdk', '[ds2] vm/a.vmdk'],
    ['/vmfs/volumes/old-ds/vm/a.vmdk', '/mnt/recovery/vm/a.vmdk'],
    ['[old-ds] vm/a.vmdk', '/mnt/recovery/vm/a.vmdk'],
    ['/var/lib/libvirt/images/a.qcow2', '/srv/images/a.qcow2'],
    ['/var/lib/libvirt/images', '/srv/images'],
  ])('%s → %s', (from, to) => expect(mapDatastore(from, map)).toBe(to));

  it.each([['/vmfs/volumes/ds10/vm/a.vmdk'], ['[ds10] a.vmdk'], ['/var/lib/libvirt/images2/a'], ['a.vmdk'], ['ds1']])(
    '%s is not mapped',
    (v) => expect(mapDatastore(v, map)).toBeUndefined(),
  );

  it('base names from any host', () => {
    expect(['[ds1] vm/a.vmdk', '[ds1] a.vmdk', 'C:\\VMs\\a.vmdk', '/x/a.vmdk', 'a.vmdk'].map(baseName)).toEqual(
      Array(5).fill('a.vmdk'),
    );
  });
});

describe('new identities', () => {
  it('are VMware-shaped, locally administered, never a reserved CID, and differ', () => {
    const uuids = new Set(Array.from({ length: 50 }, newVmwareBiosUuid));
    expect(uuids.size).toBe(50);
    for (const u of uuids) expect(u).toMatch(/^56 4d( [0-9a-f]{2}){6}-[0-9a-f]{2}( [0-9a-f]{2}){7}$/);
    const taken = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const mac = newKvmMac(taken);
      expect(taken.has(mac)).toBe(false);
      taken.add(mac);
      // 0x52: bit 1 set (locally administered), bit 0 clear (unicast)
      expect(Number.parseInt(mac.slice(0, 2), 16) & 0b11).toBe(0b10);
    }
    for (let i = 0; i < 50; i++) expect([0, 0xffffffff, 0xfffffffe, 7]).not.toContain(newCid(7));
  });
});

describe('in-place dictionary edits', () => {
  function vmFolder(vmx: Buffer): string {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-patch-unit-'));
    writeFileSync(join(dir, 'vm.vmx'), vmx);
    return dir;
  }

  it('keep CRLF line ends and escape what a value cannot hold', async () => {
    const text =
      '.encoding = "UTF-8"\r\ndisplayName = "vm"\r\nuuid.bios = "56 4d 00 11 22 33 44 55-66 77 88 99 aa bb cc dd"\r\nfoo = "bar"\r\n';
    const dir = vmFolder(Buffer.from(text));
    await patchFolder(dir, { name: 'new "vm" | x\u00e9', datastoreMap: [], diskFiles: [], keepIdentity: true });
    const out = readFileSync(join(dir, 'new "vm" | x\u00e9.vmx'), 'latin1');
    expect(out).toBe(
      `.encoding = "UTF-8"\r\ndisplayName = "new |22vm|22 |7C x${Buffer.from('\u00e9').toString('latin1')}"\r\nuuid.bios = "56 4d 00 11 22 33 44 55-66 77 88 99 aa bb cc dd"\r\nfoo = "bar"\r\n`,
    );
    expect(parseVmx(Buffer.from(out, 'latin1').toString('utf8'), 'x').displayName).toBe('new "vm" | x\u00e9');
  });

  it('keep a windows-1252 file’s bytes; a new non-ASCII value is escaped', async () => {
    const text = Buffer.concat([
      Buffer.from('.encoding = "windows-1252"\nannotation = "caf'),
      Buffer.of(0xe9),
      Buffer.from('"\ndisplayName = "vm"\n'),
    ]);
    const dir = vmFolder(text);
    await patchFolder(dir, { name: 'n\u00e9', datastoreMap: [], diskFiles: [], keepIdentity: true });
    const out = readFileSync(join(dir, 'n\u00e9.vmx'));
    expect(out.subarray(0, text.length - 'displayName = "vm"\n'.length)).toEqual(
      text.subarray(0, text.length - 'displayName = "vm"\n'.length),
    );
    const vmx = parseVmx(decodeDictionary(out, 'x'), 'x');
    expect(vmx.displayName).toBe('n\u00e9');
    expect(vmx.entries.get('annotation')?.value).toBe('caf\u00e9');
  });
});
