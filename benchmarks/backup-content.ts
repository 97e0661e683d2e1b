/**
 * The content of the backup benchmark (issue 5 §5): source trees made on the
 * fly from fixed seeds, and the same trees inside VMDKs (ext4 on an MBR disk,
 * made by real tools: sfdisk, mkfs.ext4 -d, debugfs, qemu-img convert).
 * restic and borg back up the trees; vdbak backs up the VMDKs.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { prng } from '../transport/prng.js';
import { bash, MiB, randomBytes, textBytes } from './lib.js';

const KiB = 1024;
/** Files per folder in every generated tree. */
const PER_FOLDER = 100;
/** Shares of the mixed tree: small files, large incompressible, large compressible (the rest). */
const SMALL_SHARE = 0.2;
const RANDOM_SHARE = 0.4;

function write(path: string, data: Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/** Writes large files of kind `kind` totalling `bytes` under `dir`, sizes drawn from [minMiB, maxMiB]. */
function largeFiles(
  dir: string,
  bytes: number,
  kind: 'random' | 'text',
  minMiB: number,
  maxMiB: number,
  seed: number,
): void {
  const rnd = prng(seed);
  let left = bytes;
  for (let i = 0; left > 0; i++) {
    const size = Math.min(left, (minMiB + Math.floor(rnd() * (maxMiB - minMiB + 1))) * MiB);
    const data = kind === 'random' ? randomBytes(size, seed + i) : textBytes(size, seed + i);
    write(join(dir, `${kind}-${i}.${kind === 'random' ? 'bin' : 'log'}`), data);
    left -= size;
  }
}

/**
 * The mixed tree of the throughput and incremental measures, `mib` MiB in all:
 * 20 % small files (1–64 KiB, half text, half random, 100 per folder), 40 %
 * large incompressible files (16–128 MiB, like media or encrypted archives),
 * 40 % large compressible files (8–64 MiB, like logs and databases dumps).
 * Returns the number of files.
 */
export function mixedTree(dir: string, mib: number): number {
  rmSync(dir, { recursive: true, force: true });
  const total = mib * MiB;
  const rnd = prng(7);
  let files = 0;
  for (let left = Math.floor(total * SMALL_SHARE); left > 0; files++) {
    const size = Math.min(left, (1 + Math.floor(rnd() * 64)) * KiB);
    const data = files % 2 === 0 ? textBytes(size, 1000 + files) : randomBytes(size, 1000 + files);
    write(
      join(dir, 'small', `d${Math.floor(files / PER_FOLDER)}`, `f${files}.${files % 2 === 0 ? 'txt' : 'bin'}`),
      data,
    );
    left -= size;
  }
  const rand = Math.floor(total * RANDOM_SHARE);
  largeFiles(join(dir, 'media'), rand, 'random', 16, 128, 1 << 20);
  largeFiles(join(dir, 'logs'), total - Math.floor(total * SMALL_SHARE) - rand, 'text', 8, 64, 2 << 20);
  return files;
}

/** Where the 1 MiB file of the restore measure lives, inside the versions tree. */
export const ONE_MIB_PATH = 'big/one-mib.bin';

/**
 * Generation `gen` (1…) of the versions tree: `files` tiny files, 100 per
 * folder, whose content names the generation (so every file is a new version
 * in every generation), and one 1 MiB random file at ONE_MIB_PATH that never changes.
 */
export function versionsTree(dir: string, files: number, gen: number): void {
  if (gen === 1) {
    rmSync(dir, { recursive: true, force: true });
    write(join(dir, ONE_MIB_PATH), randomBytes(MiB, 99));
  }
  for (let i = 0; i < files; i++) {
    const folder = join(dir, 'tiny', `d${Math.floor(i / PER_FOLDER)}`);
    if (gen === 1 && i % PER_FOLDER === 0) mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, `t${i}.txt`), `generation ${gen} of tiny file ${i}\n`);
  }
}

/** The churn tree of the catalog measure: `files` files of 1–32 KiB (half text, half random). Returns their relative paths. */
export function churnTree(dir: string, files: number): string[] {
  rmSync(dir, { recursive: true, force: true });
  const rnd = prng(11);
  const paths: string[] = [];
  for (let i = 0; i < files; i++) {
    const rel = `d${Math.floor(i / PER_FOLDER)}/c${i}.${i % 2 === 0 ? 'txt' : 'bin'}`;
    write(join(dir, rel), churnFile(rnd, i));
    paths.push(rel);
  }
  return paths;
}

function churnFile(rnd: () => number, seed: number): Buffer {
  const size = (1 + Math.floor(rnd() * 32)) * KiB;
  return seed % 2 === 0 ? textBytes(size, 5000 + seed) : randomBytes(size, 5000 + seed);
}

/**
 * One step of churn applied to the ext4 image `fsImg` with debugfs: `pct` %
 * of the files change — 60 % of them rewritten (new content, new inode, as an
 * editor's save does), 40 % deleted and replaced by as many new files under new
 * names, so the file count stays put. `paths` is updated in place; `scratch` holds the new contents.
 */
export function churnStep(fsImg: string, paths: string[], pct: number, step: number, scratch: string): number {
  const rnd = prng(100 + step);
  const n = Math.max(1, Math.round((paths.length * pct) / 100));
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const cmds: string[] = [];
  const picked = new Set<number>();
  while (picked.size < n) picked.add(Math.floor(rnd() * paths.length));
  let k = 0;
  const removed: number[] = [];
  for (const i of picked) {
    const rel = paths[i]!;
    cmds.push(`rm /${rel}`);
    if (k++ % 5 < 3) {
      const local = join(scratch, `n${k}`);
      writeFileSync(local, churnFile(rnd, step * 1_000_003 + k));
      cmds.push(`write ${local} /${rel}`);
    } else removed.push(i);
  }
  for (const i of removed) {
    const rel = `${dirname(paths[i]!)}/s${step}-${i}.bin`;
    const local = join(scratch, `a${i}`);
    writeFileSync(local, churnFile(rnd, step * 1_000_033 + i));
    cmds.push(`write ${local} /${rel}`);
    paths[i] = rel;
  }
  writeFileSync(join(scratch, 'cmds'), `${cmds.join('\n')}\n`);
  bash('debugfs -w -f "$1" "$2" >/dev/null 2>&1', join(scratch, 'cmds'), fsImg);
  return n;
}

/** Bash: MiB of an ext4 filesystem that holds the tree $1 with room to spare (for $2 inodes). */
const FS_MIB = `echo $(( $(du -s --block-size=1M "$1" | cut -f1) * 11 / 10 + $2 * 4 / 1024 / 8 + 64 ))`;

/** Makes an ext4 image of the tree `src` (label `label`) as the file `fsImg`. */
export function ext4Image(src: string, fsImg: string, label: string, inodes: number): void {
  const mib = bash(FS_MIB, src, String(inodes)).trim();
  bash(`mkfs.ext4 -q -F -b 4096 -N "$4" -L "$3" -d "$1" "$2" "$5"M`, src, fsImg, label, String(inodes), mib);
}

/**
 * Makes the VMDK `vmdk` (monolithicSparse) of an MBR disk whose one Linux
 * partition, at 1 MiB, holds the ext4 image `fsImg`.
 */
export function vmdkOf(fsImg: string, vmdk: string): void {
  bash(
    `set -euo pipefail
    fs=$(stat -c %s "$1"); raw="$2.raw"
    mkdir -p "$(dirname "$2")"
    rm -f "$raw"; truncate -s $(( fs + 2 * 1048576 )) "$raw"
    printf 'label: dos\\nstart=2048, size=%d, type=83\\n' $(( fs / 512 )) | sfdisk -q "$raw"
    dd if="$1" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
    rm -f "$2"
    qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$raw" "$2"
    rm -f "$raw"`,
    fsImg,
    vmdk,
  );
}

/** The tree `src` as an ext4 partition in the VMDK `vmdk`; the ext4 image is left at `vmdk`.ext4 for later changes. */
export function vmOfTree(src: string, vmdk: string, label: string, inodes: number): void {
  mkdirSync(dirname(vmdk), { recursive: true });
  const fsImg = `${vmdk}.ext4`;
  ext4Image(src, fsImg, label, inodes);
  vmdkOf(fsImg, vmdk);
}
