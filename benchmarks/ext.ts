/**
 * ext4 benchmark (issue 3): our reader next to The Sleuth Kit and sha256sum,
 * in one run, as ratios.
 *
 * - Listing: an ext4 image with 100 000 files (1 000 folders × 100 small
 *   files, made by mkfs.ext4 -d). Ours: open + walk() every entry (each with
 *   its inode decoded, xattrs and symlink targets included). Peer:
 *   `fls -r -p IMAGE`. Target: ours ≤ 1.5 × fls.
 * - Content: an ext4 image made by mkfs.ext4 -d from a ~2 GiB source tree
 *   (files of 1–256 MiB of random data). Ours: walk and read every file in
 *   4 MiB pieces, hashing with SHA-256 as a backup does. Peer: `sha256sum`
 *   over every file of the source tree. Target: ours ≥ 80 % of sha256sum's
 *   throughput.
 * Both images are cached in .cache/bench; every timing is the best of N runs
 * after one warm-up (page cache warm for both sides).
 *
 * Run: npm run build && node dist/benchmarks/ext.js [--runs N] [--content-mib M] [--files N]
 */
import { join } from 'node:path';
import { RawImage } from '../parsers/disk/raw.js';
import { extDriver } from '../parsers/fs/ext/index.js';
import { arg, bash, CACHE, CONTENT_TREE, cached, MiB, ourContent, seconds, treeBytes } from './lib.js';

const RUNS = arg('runs', 3);
const CONTENT_MIB = arg('content-mib', 2048);
const FILES = arg('files', 100_000);

const MANY_FILES = `
files=$2; dirs=$(( (files + 99) / 100 ))
mkdir -p src
for ((d = 0; d < dirs; d++)); do
  mkdir "src/d$d"
  for ((f = 0; f < 100 && d * 100 + f < files; f++)); do printf 'file %d/%d\\n' $d $f >"src/d$d/file-$f.txt"; done
done
mkfs.ext4 -q -F -b 4096 -N $(( files + dirs + 1000 )) -L bench -d src "$1" $(( 256 + files / 128 ))M`;

const CONTENT = `${CONTENT_TREE}
mkfs.ext4 -q -F -b 4096 -L content -d "$src" "$1" $(( mib + mib / 8 + 64 ))M`;

function best(fn: () => void): number {
  fn(); // warm-up
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < RUNS; i++) min = Math.min(min, seconds(fn));
  return min;
}

function ourWalk(img: string): number {
  const dev = new RawImage(img);
  const fs = extDriver.open(dev);
  let n = 0;
  for (const _ of fs.walk()) n++;
  if (fs.problems.length > 0) throw new Error(`walk recorded problems: ${JSON.stringify(fs.problems[0])}`);
  dev.close();
  return n;
}

function main(): void {
  const many = cached(`ext4-${FILES}-files.img`, MANY_FILES, String(FILES));
  const src = join(CACHE, `ext4-content-${CONTENT_MIB}m.src`);
  const content = cached(`ext4-content-${CONTENT_MIB}m.img`, CONTENT, String(CONTENT_MIB), src);

  const entries = ourWalk(many);
  const flsLines = bash('fls -r -p "$1" | wc -l', many).trim();
  const tOurs = best(() => ourWalk(many));
  const tFls = best(() => bash('fls -r -p "$1" >/dev/null', many));
  console.log(`listing ${entries} entries incl. the root (fls prints ${flsLines} lines incl. $OrphanFiles)`);
  console.log(
    `  ours ${tOurs.toFixed(3)} s   fls -r -p ${tFls.toFixed(3)} s   ratio ours/fls ${(tOurs / tFls).toFixed(2)} (target <= 1.5)`,
  );

  const bytes = treeBytes(src);
  let read = 0;
  const tRead = best(() => {
    read = ourContent(extDriver, content);
  });
  if (read !== bytes) throw new Error(`read ${read} bytes, the source tree holds ${bytes}`);
  const tSum = best(() => bash('cd "$1" && find . -type f -print0 | xargs -0 sha256sum >/dev/null', src));
  const mbs = (t: number) => (bytes / MiB / t).toFixed(0);
  console.log(`content ${(bytes / MiB).toFixed(0)} MiB`);
  console.log(
    `  ours read+sha256 ${tRead.toFixed(2)} s (${mbs(tRead)} MiB/s)   sha256sum ${tSum.toFixed(2)} s (${mbs(tSum)} MiB/s)   throughput ours/sha256sum ${((tSum / tRead) * 100).toFixed(0)} % (target >= 80 %)`,
  );
}

main();
