/**
 * openDisk's own rules, around every format: a forced format from the VM's
 * configuration, parents confined to allowed folders, only regular files.
 * Images are made by qemu-img.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDisk } from '../../parsers/disk/open.js';
import { ChainError, NotFoundError, UnsupportedError } from '../../parsers/errors.js';
import { run } from '../helpers/fixtures.js';

let dir: string;

/** A 1 MiB qcow2 naming `backing` as its raw backing file, made without checking that it exists (-u). */
function qcow2Over(backing: string, out: string): void {
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', 'raw', out, '1M']);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vdbak-open-'));
  mkdirSync(join(dir, 'store'));
  mkdirSync(join(dir, 'elsewhere'));
  writeFileSync(join(dir, 'elsewhere', 'secret.raw'), Buffer.alloc(1 << 20, 0x41));
  // a qcow2 whose backing file lies outside the store (as a guest could forge in a raw disk)
  qcow2Over(join(dir, 'elsewhere', 'secret.raw'), join(dir, 'store', 'forged.img'));
  execFileSync('mkfifo', [join(dir, 'store', 'fifo')]);
  qcow2Over('fifo', join(dir, 'store', 'fifo-child.qcow2'));
});

describe('openDisk', () => {
  it('follows a parent anywhere by default, and refuses one outside parentRoots', () => {
    const img = join(dir, 'store', 'forged.img');
    const open = openDisk(img);
    expect(open.format).toBe('qcow2');
    expect(open.read(0, 4).toString()).toBe('AAAA');
    open.close();
    expect(() => openDisk(img, { parentRoots: [join(dir, 'store')] })).toThrow(ChainError);
    try {
      openDisk(img, { parentRoots: [join(dir, 'store')] });
    } catch (e) {
      expect((e as ChainError).code).toBe('CHAIN_PARENT_OUTSIDE_ROOTS');
    }
    const inside = openDisk(img, { parentRoots: [dir] });
    expect(inside.chain).toHaveLength(2);
    inside.close();
  });

  it('takes the format from the caller when the VM configuration knows it', () => {
    const img = join(dir, 'store', 'forged.img');
    const raw = openDisk(img, { format: 'raw' });
    expect(raw.format).toBe('raw');
    // the header a guest wrote is just data of a raw disk
    expect(raw.read(0, 4).toString('latin1')).toBe('QFI\xfb');
    raw.close();
    expect(() => openDisk(img, { format: 'vhd' })).toThrow(UnsupportedError);
  });

  it('never opens a FIFO or a folder (no hang), and names a missing image', () => {
    expect(() => openDisk(join(dir, 'store', 'fifo-child.qcow2'))).toThrow(/FILE_NOT_REGULAR/);
    expect(() => openDisk(join(dir, 'store', 'fifo'))).toThrow(/FILE_NOT_REGULAR/);
    expect(() => openDisk(join(dir, 'store'))).toThrow(/FILE_NOT_REGULAR/);
    expect(() => openDisk(join(dir, 'nope.vmdk'))).toThrow(NotFoundError);
  });
});
