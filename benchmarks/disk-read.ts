/**
 * Disk-read benchmark: our VMDK reader next to qemu-img on the same images, in
 * one run, as a ratio.
 *
 * A 2 GiB raw disk with mixed content (random, compressible text, zeros and
 * holes) is built once under .cache/bench and converted by qemu-img to
 * monolithicSparse and streamOptimized. For each image we time the same job
 * both ways: copy the device into a raw file on tmpfs, skipping what the
 * image does not hold (qemu-img convert does that with block status; we use
 * allocated()). We also time a plain front-to-back read of the device.
 *
 * Run: npm run build && node dist/benchmarks/disk-read.js [--runs N]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDisk } from '../parsers/disk/open.js';
import { CACHE, MiB, seconds } from './lib.js';

const SIZE = 2048 * MiB;
const CHUNK = 4 * MiB;
const OUT_DIR = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}`);
}

/** Each MiB of the disk is, in turn: random, text, text, zeros, hole, random, text, hole. */
function buildRaw(path: string): void {
  const text = Buffer.alloc(MiB);
  let line = '';
  for (let i = 0; line.length < MiB; i++) line += `${i}: the quick brown fox jumps over the lazy dog, ${i * 7919}\n`;
  text.write(line.slice(0, MiB), 'latin1');
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  ftruncateSync(fd, SIZE);
  for (let mb = 0; mb < SIZE / MiB; mb++) {
    const kind = mb % 8;
    if (kind === 0 || kind === 5) writeSync(fd, randomBytes(MiB), 0, MiB, mb * MiB);
    else if (kind === 1 || kind === 2 || kind === 6) writeSync(fd, text, 0, MiB, mb * MiB);
    else if (kind === 3) writeSync(fd, Buffer.alloc(MiB), 0, MiB, mb * MiB);
  }
  closeSync(fd);
  renameSync(tmp, path);
}

function prepare(): Record<string, string> {
  mkdirSync(CACHE, { recursive: true });
  const raw = join(CACHE, 'mixed-2g.raw');
  if (!existsSync(raw)) buildRaw(raw);
  const images: Record<string, string> = {};
  for (const sub of ['monolithicSparse', 'streamOptimized']) {
    const img = join(CACHE, `mixed-2g-${sub}.vmdk`);
    if (!existsSync(img)) {
      sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${sub}`, raw, `${img}.tmp`]);
      renameSync(`${img}.tmp`, img);
    }
    images[sub] = img;
  }
  return images;
}

/** Our side of the copy: allocated ranges only, into a sparse raw file. */
function oursCopy(img: string, out: string): void {
  const dev = openDisk(img);
  const fd = openSync(out, 'w');
  try {
    ftruncateSync(fd, dev.size);
    for (const r of dev.allocated(0, dev.size)) {
      for (let off = r.offset; off < r.offset + r.length; off += CHUNK) {
        const n = Math.min(CHUNK, r.offset + r.length - off);
        writeSync(fd, dev.read(off, n), 0, n, off);
      }
    }
  } finally {
    closeSync(fd);
    dev.close();
  }
}

function oursReadAll(img: string): void {
  const dev = openDisk(img);
  try {
    for (let off = 0; off < dev.size; off += CHUNK) dev.read(off, Math.min(CHUNK, dev.size - off));
  } finally {
    dev.close();
  }
}

function qemuCopy(img: string, out: string): void {
  sh('qemu-img', ['convert', '-f', 'vmdk', '-O', 'raw', img, out]);
}

/** Runs the jobs in turn `runs` times (so load spikes hit all of them) and keeps each one's best time. */
function bestInterleaved(runs: number, jobs: (() => void)[]): number[] {
  const t = jobs.map(() => Number.POSITIVE_INFINITY);
  for (let i = 0; i < runs; i++) {
    jobs.forEach((job, j) => {
      t[j] = Math.min(t[j] ?? Number.POSITIVE_INFINITY, seconds(job));
    });
  }
  return t;
}

function main(): void {
  const runsArg = process.argv.indexOf('--runs');
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
  const images = prepare();
  const out = join(OUT_DIR, `vdbak-bench-${process.pid}.raw`);
  const mibs = (t: number) => (SIZE / MiB / t).toFixed(0);
  console.log(`disk-read: 2 GiB mixed disk, best of ${runs} interleaved runs, output on ${OUT_DIR}, page cache warm`);
  console.log('image             | vdbak copy MiB/s | qemu-img convert MiB/s | ratio | vdbak plain read MiB/s');
  try {
    for (const [sub, img] of Object.entries(images)) {
      oursReadAll(img); // warm the page cache for both sides
      const [q = 0, o = 0, r = 0] = bestInterleaved(runs, [
        () => {
          qemuCopy(img, out);
          rmSync(out, { force: true });
        },
        () => {
          oursCopy(img, out);
          rmSync(out, { force: true });
        },
        () => oursReadAll(img),
      ]);
      console.log(
        `${sub.padEnd(17)} | ${mibs(o).padStart(16)} | ${mibs(q).padStart(22)} | ${(q / o).toFixed(2).padStart(5)} | ${mibs(r).padStart(22)}`,
      );
    }
  } finally {
    rmSync(out, { force: true });
  }
}

main();
