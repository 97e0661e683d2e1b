/**
 * A worker task on WHOLE_DISK reads its raw ranges in disk coordinates (the
 * regions no file covers: partition tables, boot code, filesystem metadata).
 * The oracle is the disk as qemu-img converts it to raw bytes.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { valueSymbol } from 'piscina';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import run, { type ReadTask, type TaskItem, type TaskResult, WHOLE_DISK } from '../../agent/backup/worker.js';
import { chunkBuffer, DEFAULT_CHUNK_SIZES } from '../../agent/chunk/fastcdc.js';
import { decodeChunk } from '../../transport/codec.js';
import { fixture, run as sh } from '../helpers/fixtures.js';

let scratch: string;
let image: string;
let rawDisk: Buffer;
let catalogPath: string;
/** Partition starts in bytes, from sfdisk (the oracle for the layout). */
let partStarts: number[];

beforeAll(() => {
  const dir = fixture('backup-raw.sh');
  image = join(dir, 'disk.vmdk');
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-worker-disk-'));
  const rawPath = join(scratch, 'disk.raw');
  sh('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', image, rawPath]);
  rawDisk = readFileSync(rawPath);
  const table = JSON.parse(sh('sfdisk', ['--json', rawPath])) as {
    partitiontable: { sectorsize?: number; partitions: { start: number }[] };
  };
  const sector = table.partitiontable.sectorsize ?? 512;
  partStarts = table.partitiontable.partitions.map((p) => p.start * sector);
  // the worker only asks the catalog whether a chunk is stored: an empty chunks table says "none"
  catalogPath = join(scratch, 'catalog.db');
  const db = new Database(catalogPath);
  db.exec('CREATE TABLE chunks (hash BLOB PRIMARY KEY)');
  db.close();
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function task(volumeIndex: number, items: TaskItem[]): ReadTask {
  return {
    image,
    openOptions: {},
    volumeIndex,
    catalogPath,
    chunkSizes: { ...DEFAULT_CHUNK_SIZES },
    zstdLevel: 1,
    items,
  };
}

/** The worker's answer without piscina's transfer wrapper (called here on the test's own thread). */
function runTask(t: ReadTask): TaskResult {
  const moved = run(t) as unknown as Record<symbol, unknown>;
  return (moved[valueSymbol] ?? moved) as TaskResult;
}

/** Reassembles an item's bytes from its chunk list and the encoded chunks. */
function bytesOf(item: TaskResult['items'][number]): Buffer {
  const byHash = new Map(item.encoded.map((e) => [e.hash, decodeChunk(e.stored, e.rawLength, { image, offset: 0 })]));
  return Buffer.concat(item.chunks.map((c) => byHash.get(c.hash)!));
}

describe('worker: raw ranges in disk coordinates', () => {
  test('reads the partition table and ranges across partitions exactly as the disk holds them', () => {
    const gptArea = { offset: 0, length: 34 * 512 };
    // the end of partition 1 and the start of partition 2 in one range: only the whole disk can serve it
    const across = { offset: partStarts[1]! - 300_000, length: 700_000 };
    const beforeP3 = { offset: partStarts[2]! - 4096, length: 4096 + 8192 };
    const result = runTask(
      task(WHOLE_DISK, [
        { kind: 'raw', key: 7, ranges: [gptArea] },
        { kind: 'raw', key: 8, ranges: [across, beforeP3] },
      ]),
    );
    expect(result.items.map((i) => [i.key, i.error])).toEqual([
      [7, undefined],
      [8, undefined],
    ]);
    const slice = (r: { offset: number; length: number }): Buffer => rawDisk.subarray(r.offset, r.offset + r.length);
    const want = [slice(gptArea), Buffer.concat([slice(across), slice(beforeP3)])];
    result.items.forEach((item, i) => {
      expect(item.bytesRead).toBe(want[i]!.length);
      expect(bytesOf(item).equals(want[i]!)).toBe(true);
      expect(item.chunks).toEqual(chunkBuffer(want[i]!).map((c) => ({ hash: c.hash, length: c.length })));
    });
    // the protective MBR's signature and the GPT header are in the first item's bytes
    expect(bytesOf(result.items[0]!).subarray(510, 512)).toEqual(Buffer.from([0x55, 0xaa]));
    expect(bytesOf(result.items[0]!).subarray(512, 520).toString('latin1')).toBe('EFI PART');
  });

  test('a volume index (1: the first partition) still reads in volume coordinates', () => {
    const r = { offset: 0, length: 65536 };
    const [item] = runTask(task(1, [{ kind: 'raw', key: 1, ranges: [r] }])).items;
    expect(item!.error).toBeUndefined();
    expect(bytesOf(item!).equals(rawDisk.subarray(partStarts[0]!, partStarts[0]! + r.length))).toBe(true);
  });

  test('a range past the end of the disk is a typed error, not a short read', () => {
    const [item] = runTask(
      task(WHOLE_DISK, [{ kind: 'raw', key: 1, ranges: [{ offset: rawDisk.length - 512, length: 1024 }] }]),
    ).items;
    expect(item!.error?.code).toBe('RANGE_OUTSIDE');
    expect(item!.chunks).toEqual([]);
  });

  test('a file item on the whole disk is refused', () => {
    const entry = { id: 1, path: '/x', type: 'file', size: 1 } as unknown as Extract<
      TaskItem,
      { kind: 'file' }
    >['entry'];
    const [item] = runTask(task(WHOLE_DISK, [{ kind: 'file', key: 1, entry, start: 0, end: 1 }])).items;
    expect(item!.error?.code).toBe('VOLUME_GONE');
  });
});
