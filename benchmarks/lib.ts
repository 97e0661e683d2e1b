/**
 * Helpers shared by the benchmarks: where the repo and the image cache are,
 * `--name N` arguments, running peers through bash, building a cached test
 * image once, timing, and our side of the filesystem benchmarks (walk and
 * read every file as a backup does).
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RawImage } from '../parsers/disk/raw.js';
import type { FileSystemDriver } from '../parsers/fs/types.js';
import { prng } from '../transport/prng.js';

export const MiB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
/** The repo root, whether this runs from benchmarks/ (tsx) or dist/benchmarks/. */
export const ROOT = existsSync(join(here, '..', 'package.json')) ? resolve(here, '..') : resolve(here, '..', '..');
/** Where built benchmark images are kept between runs. */
export const CACHE = join(ROOT, '.cache', 'bench');

/** The number after `--name` on the command line, or `dflt`. */
export function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

/** Runs a bash script with `args` as $1…; returns its stdout, throws if it fails. */
export function bash(script: string, ...args: string[]): string {
  const r = spawnSync('bash', ['-c', script, 'bench', ...args], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`bash exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Runs `script OUT_IMAGE …` once and caches its image under `name`. */
export function cached(name: string, script: string, ...args: string[]): string {
  mkdirSync(CACHE, { recursive: true });
  const img = join(CACHE, name);
  if (existsSync(img)) return img;
  const work = join(CACHE, `${name}.work`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work);
  const t = process.hrtime.bigint();
  bash(`set -euo pipefail; cd "${work}"; ${script}`, `${img}.tmp`, ...args);
  renameSync(`${img}.tmp`, img);
  rmSync(work, { recursive: true, force: true });
  process.stderr.write(`built ${name} in ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)} s\n`);
  return img;
}

/**
 * Bash that fills the folder $3 with $2 MiB of random data in files of 1, 16,
 * 64 and 256 MiB spread over 8 folders: the source tree of the content
 * benchmarks, before each copies it into its filesystem image.
 */
export const CONTENT_TREE = `
mib=$2; src=$3
rm -rf "$src" && mkdir -p "$src"
left=$mib; i=0
while (( left > 0 )); do
  size=$(( (i % 4 == 0 ? 256 : i % 4 == 1 ? 64 : i % 4 == 2 ? 16 : 1) ))
  (( size > left )) && size=$left
  mkdir -p "$src/d$(( i % 8 ))"
  head -c $(( size * 1048576 )) /dev/urandom >"$src/d$(( i % 8 ))/f$i.bin"
  left=$(( left - size )); i=$(( i + 1 ))
done
`;

/** Wall-clock seconds one call of `fn` takes. */
export function seconds(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Our side of the content benchmark: walk a raw filesystem image and read every file in 4 MiB pieces, hashing with SHA-256; returns the bytes read. */
export function ourContent(driver: FileSystemDriver, img: string): number {
  const dev = new RawImage(img);
  const fs = driver.open(dev);
  let bytes = 0;
  for (const e of fs.walk()) {
    if (e.type !== 'file') continue;
    const h = createHash('sha256');
    for (let off = 0; off < e.size; off += 4 * MiB) h.update(fs.read(e, off, Math.min(4 * MiB, e.size - off)));
    h.digest();
    bytes += e.size;
  }
  dev.close();
  return bytes;
}

/** Total size of the regular files under `dir`. */
export function treeBytes(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const st = statSync(join(dir, name));
    if (st.isFile()) n += st.size;
  }
  return n;
}

// ---- synthetic content shared by the benchmarks --------------------------------------------

/** Words for text-like data, Zipf-ish letter frequencies, fixed by their seed. */
const VOCAB = (() => {
  const rnd = prng(12345);
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  return Array.from({ length: 4096 }, () => {
    const n = 2 + Math.floor(rnd() * 9);
    let w = '';
    for (let i = 0; i < n; i++) w += letters[Math.floor(rnd() ** 2 * letters.length)];
    return Buffer.from(w, 'latin1');
  });
})();

/** `length` incompressible bytes, fixed by `seed` (AES-CTR keystream). */
export function randomBytes(length: number, seed: number, ivWord = 0): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0, 0);
  const iv = Buffer.alloc(16);
  iv.writeUInt32LE(ivWord >>> 0, 0);
  return createCipheriv('aes-128-ctr', key, iv).update(Buffer.alloc(length));
}

/** `length` bytes of text-like data (Zipf-ish words; zstd/lz4 compress it about 2–3×), fixed by `seed`. */
export function textBytes(length: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(length);
  let at = 0;
  while (at < length) {
    const w = VOCAB[Math.floor(rnd() ** 3 * VOCAB.length)]!;
    at += w.copy(b, at);
    if (at < length) b[at++] = rnd() < 0.08 ? 0x0a : 0x20;
  }
  return b;
}
