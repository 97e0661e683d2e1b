/**
 * CPU cost of a backup worker per GiB (issue 5 §5, full backup): the worker's
 * task function run on this thread over every file of the backup benchmark's
 * mixed VMDK (read through image → volume → ext4, FastCDC, SHA-256, probe,
 * zstd), as the backup job would hand it out. CPU seconds (user + system of
 * this process), not wall time: on a shared machine they move far less than
 * wall time does, so a change to the worker can be judged in one run.
 *
 *   npm run build && node dist/benchmarks/backup.js --only 1   # builds the VMDK once
 *   node dist/benchmarks/worker-cpu.js [--size 1024] [--runs 3]
 *   VDBAK_ZSTD=wasm node dist/benchmarks/worker-cpu.js   # another zstd build (native | napi | wasm)
 *
 * Prints the best of `--runs` passes (the least disturbed by other work).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { valueSymbol } from 'piscina';
import run, { type ReadTask, type TaskItem, type TaskResult } from '../agent/backup/worker.js';
import { DEFAULT_CHUNK_SIZES } from '../agent/chunk/fastcdc.js';
import { openStack } from '../agent/stack.js';
import { DEFAULT_ZSTD_LEVEL, zstdBuild } from '../transport/codec.js';
import { arg, CACHE, MiB } from './lib.js';

const SIZE = arg('size', 1024);
const RUNS = arg('runs', 3);
/** As agent/backup/job.ts cuts work: 16 MiB segments, tasks of 8 MiB or 512 items. */
const SEGMENT_BYTES = 16 * MiB;
const TASK_BYTES = 8 * MiB;
const TASK_ITEMS = 512;

const image = join(CACHE, 'backup', 'vms', `mixed-${SIZE}m`, 'mixed.vmdk');
const scratch = mkdtempSync(join(tmpdir(), 'vdbak-worker-cpu-'));
const catalogPath = join(scratch, 'catalog.db');
// the worker asks the catalog whether a chunk is stored: an empty table makes every chunk new, as in a first backup
const db = new Database(catalogPath);
db.exec('CREATE TABLE chunks (hash BLOB PRIMARY KEY)');
db.close();

const stack = openStack(image);
const vol = stack.volumes.find((v) => v.fs);
if (!vol?.fs) throw new Error(`${image}: no filesystem; run 'node dist/benchmarks/backup.js --only 1' first`);
const tasks: TaskItem[][] = [];
let items: TaskItem[] = [];
let bytes = 0;
let key = 1;
for (const e of vol.fs.walk()) {
  if (e.type !== 'file' || e.size === 0) continue;
  for (let start = 0; start < e.size; start += SEGMENT_BYTES) {
    const end = Math.min(e.size, start + SEGMENT_BYTES);
    items.push({ kind: 'file', key: key++, entry: e, start, end });
    bytes += end - start;
    if (bytes >= TASK_BYTES || items.length >= TASK_ITEMS) {
      tasks.push(items);
      items = [];
      bytes = 0;
    }
  }
}
if (items.length > 0) tasks.push(items);
const volumeIndex = vol.volume.index;
stack.close();

const base: Omit<ReadTask, 'items'> = {
  image,
  openOptions: {},
  volumeIndex,
  catalogPath,
  chunkSizes: { ...DEFAULT_CHUNK_SIZES },
  zstdLevel: DEFAULT_ZSTD_LEVEL,
};

interface Pass {
  cpu: number;
  wall: number;
  read: number;
  stored: number;
}

function pass(): Pass {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let read = 0;
  let stored = 0;
  for (const list of tasks) {
    const moved = run({ ...base, items: list }) as unknown as Record<symbol, unknown>;
    const res = (moved[valueSymbol] ?? moved) as TaskResult;
    for (const it of res.items) {
      if (it.error) throw new Error(`${it.error.code}: ${it.error.message}`);
      read += it.bytesRead;
      for (const enc of it.encoded) stored += enc.stored.length;
    }
  }
  const c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1e6, wall: (performance.now() - t0) / 1000, read, stored };
}

const passes: Pass[] = [];
for (let i = 0; i < RUNS; i++) {
  const p = pass();
  passes.push(p);
  process.stderr.write(`pass ${i + 1}: ${p.cpu.toFixed(2)} s CPU, ${p.wall.toFixed(2)} s wall\n`);
}
rmSync(scratch, { recursive: true, force: true });
const best = passes.reduce((a, b) => (b.cpu < a.cpu ? b : a));
const gib = best.read / (1024 * MiB);
console.log(
  `worker CPU per GiB read: ${(best.cpu / gib).toFixed(2)} s (best of ${RUNS}; ${(best.read / MiB).toFixed(0)} MiB read, ` +
    `stored ${((100 * best.stored) / best.read).toFixed(1)} %, ${tasks.length} tasks, zstd ${zstdBuild()})`,
);
console.log(JSON.stringify({ benchmark: 'worker-cpu', zstd: zstdBuild(), cpuPerGiB: best.cpu / gib, passes }));
