/**
 * Chunking benchmark: single-thread throughput of the backup data path
 * (FastCDC + SHA-256 + zstd + packing) on ~1 GiB of mixed synthetic data, the
 * codec's speed and ratio per kind of data, and the dedup left after a 1% edit
 * for candidate min/avg/max chunk sizes.
 *
 *   npm run build && node dist/benchmarks/chunking.js [--size MiB]
 *
 * The data is made on the fly, in 1 MiB blocks, from fixed seeds, so every run
 * sees the same bytes and memory stays bounded: text-like (words from a
 * vocabulary, compressible ~3x), structured binary (records of small integers,
 * ~2x), random (AES-CTR keystream, incompressible: media, encrypted data),
 * zeros, and copies of earlier blocks (duplicated files). The 1% edit changes
 * about 1% of the bytes: 8% of the blocks, each at one place (overwrite,
 * insertion or deletion of 4–256 KiB), as when files change inside a disk.
 *
 * Throughput numbers exclude making the data. The machine may be shared:
 * compare figures from one run, not across runs.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { type ChunkSizes, ContentChunker, DEFAULT_CHUNK_SIZES } from '../agent/chunk/fastcdc.js';
import { decodeChunk, encodeChunk, zstdBuild } from '../transport/codec.js';
import { PackWriter } from '../transport/pack.js';
import { prng } from '../transport/prng.js';
import { randomBytes, textBytes } from './lib.js';

const BLOCK = 1 << 20;
const MB = 1e6;

type Kind = 'text' | 'binary' | 'random' | 'zeros' | 'copy';

function kindOf(block: number): Kind {
  const r = prng(block * 7919 + 1)();
  if (r < 0.35) return 'text';
  if (r < 0.65) return 'binary';
  if (r < 0.85) return 'random';
  if (r < 0.95) return 'zeros';
  return block > 0 ? 'copy' : 'text';
}

/** Block `i` of the data set (1 MiB, deterministic). */
function makeBlock(i: number): Buffer {
  const kind = kindOf(i);
  if (kind === 'copy') return makeBlock(Math.floor(prng(i)() * i));
  if (kind === 'zeros') return Buffer.alloc(BLOCK);
  if (kind === 'random') return randomBytes(BLOCK, i, 0x5eed);
  if (kind === 'text') return textBytes(BLOCK, i * 31 + 7);
  const rnd = prng(i * 31 + 7);
  const b = Buffer.alloc(BLOCK);
  // binary: 16-byte records: a counter, a small value, a type code, a random-ish id
  for (let at = 0, n = i * 65536; at + 16 <= BLOCK; at += 16, n++) {
    b.writeUInt32LE(n, at);
    b.writeUInt32LE(Math.floor(rnd() * 1000), at + 4);
    b.writeUInt32LE(Math.floor(rnd() * 8), at + 8);
    b.writeUInt32LE(Math.floor(rnd() * 2 ** 32), at + 12);
  }
  return b;
}

/** The 1%-edited version of block `i` (most blocks unchanged). */
function editedBlock(i: number): { bytes: Buffer; edited: number } {
  const b = makeBlock(i);
  const rnd = prng(i * 104729 + 3);
  // 8% of blocks, each with one edit of 130 KiB on average: about 1% of the bytes
  if (rnd() >= 0.08) return { bytes: b, edited: 0 };
  const len = 4096 + Math.floor(rnd() * 252 * 1024);
  const at = Math.floor(rnd() * (BLOCK - len));
  const op = rnd();
  const fresh = randomBytes(len, 1e6 + i, 0x5eed);
  if (op < 0.5) {
    fresh.copy(b, at);
    return { bytes: b, edited: len };
  }
  if (op < 0.75) return { bytes: Buffer.concat([b.subarray(0, at), fresh, b.subarray(at)]), edited: len };
  return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + len)]), edited: len };
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

/** Full pipeline at one chunk size: chunk + hash, dedup, compress, pack. */
function pipeline(blocks: number, sizes: ChunkSizes) {
  const chunker = new ContentChunker(sizes);
  const packer = new PackWriter();
  const seen = new Set<string>();
  let tChunk = 0;
  let tEncode = 0;
  let tPack = 0;
  let rawNew = 0;
  let stored = 0;
  let chunks = 0;
  const handle = (list: ReturnType<ContentChunker['push']>) => {
    for (const c of list) {
      chunks++;
      if (seen.has(c.hash)) continue;
      seen.add(c.hash);
      rawNew += c.length;
      let t = performance.now();
      const enc = encodeChunk(c);
      tEncode += performance.now() - t;
      stored += enc.stored.length;
      t = performance.now();
      if (packer.add(enc)) packer.finish();
      tPack += performance.now() - t;
    }
  };
  for (let i = 0; i < blocks; i++) {
    const data = makeBlock(i);
    const t = performance.now();
    const out = chunker.push(data);
    tChunk += performance.now() - t;
    handle(out);
  }
  const t = performance.now();
  const out = chunker.end();
  tChunk += performance.now() - t;
  handle(out);
  if (packer.count > 0) packer.finish();
  return { tChunk, tEncode, tPack, rawNew, stored, chunks, unique: seen.size };
}

/** Chunks the original and the edited data; returns what the second backup must send. */
function dedupAfterEdit(blocks: number, sizes: ChunkSizes) {
  const first = new Set<string>();
  const c = new ContentChunker(sizes);
  let chunks = 0;
  let tFirst = 0; // time in the chunker only, not in making the data
  const remember = (list: ReturnType<ContentChunker['push']>) => {
    for (const ch of list) first.add(ch.hash);
    chunks += list.length;
  };
  for (let i = 0; i < blocks; i++) {
    const data = makeBlock(i);
    const t = performance.now();
    const list = c.push(data);
    tFirst += performance.now() - t;
    remember(list);
  }
  remember(c.end());
  let edited = 0;
  let total = 0;
  let newBytes = 0;
  let newChunks = 0;
  const sent = new Set<string>();
  const count = (list: ReturnType<ContentChunker['push']>) => {
    for (const ch of list) {
      if (first.has(ch.hash) || sent.has(ch.hash)) continue;
      sent.add(ch.hash);
      newBytes += ch.length;
      newChunks++;
    }
  };
  for (let i = 0; i < blocks; i++) {
    const e = editedBlock(i);
    edited += e.edited;
    total += e.bytes.length;
    count(c.push(e.bytes));
  }
  count(c.end());
  return { chunks, edited, total, newBytes, newChunks, tFirst };
}

const where = { image: 'benchmark', offset: 0 };

function codecTable(): void {
  console.log(`\nCodec (1 MiB chunks, 32 MiB per kind; zstd = the ${zstdBuild()} build, deflate = Node zlib):`);
  console.log(
    `${'data'.padEnd(8)} ${'codec'.padEnd(12)} ${pad('ratio', 7)} ${pad('comp MB/s', 10)} ${pad('dec MB/s', 10)}`,
  );
  const kinds: Kind[] = ['text', 'binary', 'random'];
  for (const kind of kinds) {
    // the first 32 blocks of that kind
    const blocks: Buffer[] = [];
    for (let i = 0; blocks.length < 32; i++) if (kindOf(i) === kind) blocks.push(makeBlock(i));
    const total = blocks.length * BLOCK;
    const codecs: Array<[string, (b: Buffer) => Uint8Array, (z: Uint8Array, b: Buffer) => unknown]> = [
      [
        'zstd -1',
        (b) => encodeChunk({ hash: '', bytes: b }, { level: -1 }).stored,
        (z, b) => decodeChunk(z, b.length, where),
      ],
      [
        'zstd 1',
        (b) => encodeChunk({ hash: '', bytes: b }, { level: 1 }).stored,
        (z, b) => decodeChunk(z, b.length, where),
      ],
      [
        'zstd 3',
        (b) => encodeChunk({ hash: '', bytes: b }, { level: 3 }).stored,
        (z, b) => decodeChunk(z, b.length, where),
      ],
      ['deflate 1', (b) => deflateRawSync(b, { level: 1 }), (z) => inflateRawSync(z)],
    ];
    for (const [name, comp, dec] of codecs) {
      let t = performance.now();
      const zs = blocks.map(comp);
      const tc = performance.now() - t;
      t = performance.now();
      for (const [k, z] of zs.entries()) dec(z, blocks[k]!);
      const td = performance.now() - t;
      const out = zs.reduce((a, z) => a + z.length, 0);
      console.log(
        `${kind.padEnd(8)} ${name.padEnd(12)} ${pad((out / total).toFixed(3), 7)} ${pad(((total / MB / tc) * 1000).toFixed(0), 10)} ${pad(((total / MB / td) * 1000).toFixed(0), 10)}`,
      );
    }
  }
}
function main(): void {
  const sizeArg = process.argv.indexOf('--size');
  const mib = sizeArg > 0 ? Number(process.argv[sizeArg + 1]) : 1024;
  if (!(mib >= 16)) throw new Error('--size takes a number of MiB, at least 16');
  const blocks = Math.floor(mib);
  const counts = new Map<Kind, number>();
  for (let i = 0; i < blocks; i++) counts.set(kindOf(i), (counts.get(kindOf(i)) ?? 0) + 1);
  console.log(`vdbak chunking benchmark: ${blocks} MiB, node ${process.version}, single thread`);
  console.log(`data mix (MiB): ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}`);

  const d = DEFAULT_CHUNK_SIZES;
  const p = pipeline(blocks, d);
  const totalMB = (blocks * BLOCK) / MB;
  const rate = (bytes: number, ms: number) => ((bytes / MB / ms) * 1000).toFixed(0);
  console.log(`\nPipeline at the default sizes (${d.minSize >> 10}K/${d.avgSize >> 10}K/${d.maxSize >> 10}K):`);
  console.log(`  FastCDC + SHA-256 : ${rate(blocks * BLOCK, p.tChunk)} MB/s over all data`);
  console.log(
    `  zstd (new chunks) : ${rate(p.rawNew, p.tEncode)} MB/s, stored/raw ${(p.stored / p.rawNew).toFixed(3)}`,
  );
  console.log(`  packing           : ${rate(p.stored, p.tPack)} MB/s`);
  console.log(
    `  end to end        : ${rate(blocks * BLOCK, p.tChunk + p.tEncode + p.tPack)} MB/s; ${p.chunks} chunks, ${p.unique} unique, ${(p.rawNew / MB).toFixed(0)} of ${totalMB.toFixed(0)} MB unique, ${(p.stored / MB).toFixed(0)} MB stored`,
  );

  codecTable();

  const candidates: ChunkSizes[] = [
    { minSize: 64 << 10, avgSize: 256 << 10, maxSize: 2 << 20 },
    { minSize: 128 << 10, avgSize: 512 << 10, maxSize: 4 << 20 },
    // the default's average with a larger minimum: FastCDC skips more bytes, cut points move less freely
    { minSize: 256 << 10, avgSize: 512 << 10, maxSize: 4 << 20 },
    { minSize: 256 << 10, avgSize: 1 << 20, maxSize: 8 << 20 },
    { minSize: 512 << 10, avgSize: 1 << 20, maxSize: 8 << 20 },
    { minSize: 512 << 10, avgSize: 2 << 20, maxSize: 16 << 20 },
  ];
  console.log('\nDedup after a 1% edit (second backup sends the chunks the first did not have):');
  console.log(
    `${'min/avg/max'.padEnd(16)} ${pad('chunks/GiB', 10)} ${pad('mean KiB', 9)} ${pad('edited MB', 10)} ${pad('sent MB', 8)} ${pad('sent/edited', 11)} ${pad('sent %', 7)} ${pad('CDC+SHA MB/s', 13)}`,
  );
  for (const s of candidates) {
    const r = dedupAfterEdit(blocks, s);
    const label = `${s.minSize >> 10}K/${s.avgSize >> 10}K/${s.maxSize >> 20}M`;
    console.log(
      `${label.padEnd(16)} ${pad(((r.chunks * 1024) / blocks).toFixed(0), 10)} ${pad(((blocks * 1024) / r.chunks).toFixed(0), 9)} ${pad((r.edited / MB).toFixed(1), 10)} ${pad((r.newBytes / MB).toFixed(1), 8)} ${pad((r.newBytes / r.edited).toFixed(1), 11)} ${pad(((100 * r.newBytes) / r.total).toFixed(2), 7)} ${pad(rate(blocks * BLOCK, r.tFirst), 13)}`,
    );
  }
  console.log(`\npeak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

main();
