import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ChunkSizes, ContentChunker } from '../../agent/chunk/fastcdc.js';
import { isVdbakError } from '../../parsers/errors.js';
import { CODEC_RAW, CODEC_ZSTD, type EncodedChunk, encodeChunk } from '../../transport/codec.js';
import {
  type FinishedPack,
  PACK_ENTRY_SIZE,
  PACK_TRAILER_SIZE,
  PackReader,
  PackWriter,
  packObjectName,
} from '../../transport/pack.js';
import { FaultyTarget } from '../../transport/targets/faulty.js';
import { LocalTarget } from '../../transport/targets/local.js';
import { ROOT } from '../helpers/fixtures.js';
import { type FuzzTally, mutate, newTally, prng } from '../helpers/fuzz.js';
import { expectTypedError } from './target-suite.js';

const SMALL: ChunkSizes = { minSize: 1024, avgSize: 4096, maxSize: 16384 };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Mixed content: source text (compresses), random bytes (does not), zeros. */
function mixedData(size: number, seed: number): Buffer {
  const text = readFileSync(join(ROOT, 'node_modules', 'typescript', 'lib', 'typescript.js'));
  const rnd = prng(seed);
  const parts: Buffer[] = [];
  let total = 0;
  while (total < size) {
    const kind = Math.floor(rnd() * 3);
    const n = 1000 + Math.floor(rnd() * 60_000);
    let p: Buffer;
    if (kind === 0) {
      const at = Math.floor(rnd() * (text.length - n));
      p = text.subarray(at, at + n);
    } else if (kind === 1) {
      p = Buffer.alloc(n);
      for (let i = 0; i < n; i++) p[i] = Math.floor(rnd() * 256);
    } else p = Buffer.alloc(n);
    parts.push(p);
    total += n;
  }
  return Buffer.concat(parts).subarray(0, size);
}

/** Chunks + encodes data, deduplicated by hash; returns the encoded chunks and raw bytes by hash. */
function encodeAll(data: Buffer): { chunks: EncodedChunk[]; raw: Map<string, Buffer> } {
  const c = new ContentChunker(SMALL);
  const raw = new Map<string, Buffer>();
  const chunks: EncodedChunk[] = [];
  for (const ch of [...c.push(data), ...c.end()]) {
    if (raw.has(ch.hash)) continue;
    raw.set(ch.hash, ch.bytes);
    chunks.push(encodeChunk(ch));
  }
  return { chunks, raw };
}

function writePacks(chunks: EncodedChunk[], targetSize: number): FinishedPack[] {
  const w = new PackWriter({ targetSize });
  const packs: FinishedPack[] = [];
  for (const ch of chunks) if (w.add(ch)) packs.push(w.finish());
  if (w.count > 0) packs.push(w.finish());
  return packs;
}

const data = mixedData(3 << 20, 1);
const { chunks, raw } = encodeAll(data);

describe('pack writer and reader', () => {
  const packs = writePacks(chunks, 512 << 10);

  it('packs every chunk once, closing packs near the target size', () => {
    expect(chunks.some((c) => c.codec === CODEC_RAW)).toBe(true);
    expect(chunks.some((c) => c.codec === CODEC_ZSTD)).toBe(true);
    expect(packs.length).toBeGreaterThan(2);
    expect(packs.flatMap((p) => p.entries.map((e) => e.hash)).sort()).toEqual([...raw.keys()].sort());
    for (const p of packs.slice(0, -1)) {
      const data = p.bytes.length - PACK_TRAILER_SIZE - p.entries.length * PACK_ENTRY_SIZE;
      expect(data).toBeGreaterThanOrEqual(512 << 10);
      expect(data).toBeLessThan((512 << 10) + 16385);
    }
  });

  it('writes the documented layout (decoded here independently)', () => {
    for (const p of packs) {
      const b = p.bytes;
      expect(p.id).toBe(sha(b.subarray(b.length - PACK_TRAILER_SIZE)));
      const t = b.subarray(b.length - PACK_TRAILER_SIZE);
      expect(t.subarray(0, 8).toString('latin1')).toBe('VDBAKPK\0');
      expect(t.readUInt32LE(8)).toBe(1);
      const n = t.readUInt32LE(12);
      const dataLength = Number(t.readBigUInt64LE(16));
      const indexLength = Number(t.readBigUInt64LE(24));
      expect(n).toBe(p.entries.length);
      expect(indexLength).toBe(n * 56);
      expect(dataLength + indexLength + 64).toBe(b.length);
      const index = b.subarray(dataLength, dataLength + indexLength);
      expect(t.subarray(32, 64).toString('hex')).toBe(sha(index));
      for (let i = 0; i < n; i++) {
        const e = index.subarray(i * 56, (i + 1) * 56);
        const off = Number(e.readBigUInt64LE(32));
        const stored = b.subarray(off, off + e.readUInt32LE(40));
        expect(stored[0]).toBe(e[48]);
        const original = raw.get(e.subarray(0, 32).toString('hex'))!;
        expect(e.readUInt32LE(44)).toBe(original.length);
      }
    }
  });

  it('reads every chunk back, verified, from memory and from a target (the catalog can be rebuilt from packs alone)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-pack-'));
    const target = new LocalTarget(dir);
    for (const p of packs) {
      const mem = await PackReader.fromBytes(p.bytes, p.id);
      expect(mem.entries).toEqual(p.entries);
      for (const e of mem.entries) expect((await mem.readChunk(e)).equals(raw.get(e.hash)!)).toBe(true);
      await target.put(packObjectName(p.id), p.bytes);
    }
    // rebuild: list the packs, read each index, find every chunk again
    const found = new Map<string, string>();
    for await (const name of target.list('packs/')) {
      const r = await PackReader.fromTarget(target, name);
      const whole = await target.get(name);
      expect(name).toBe(packObjectName(sha(whole.subarray(whole.length - PACK_TRAILER_SIZE))));
      for (const e of r.entries) {
        found.set(e.hash, name);
        expect((await r.readChunk(e)).equals(raw.get(e.hash)!)).toBe(true);
      }
    }
    expect([...found.keys()].sort()).toEqual([...raw.keys()].sort());
    rmSync(dir, { recursive: true });
  });

  it('turns short reads from a faulty target into typed errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-pack-'));
    const faulty = new FaultyTarget(new LocalTarget(dir), { seed: 5, shortRead: 1 });
    faulty.enabled = false;
    const p = packs[0]!;
    const name = packObjectName(p.id);
    await faulty.put(name, p.bytes);
    const reader = await PackReader.fromTarget(faulty, name);
    faulty.enabled = true;
    await expectTypedError(PackReader.fromTarget(faulty, name), 'PACK_SHORT_READ');
    await expectTypedError(reader.readChunk(reader.entries[0]!), 'PACK_SHORT_READ');
    await expectTypedError(reader.readChunk({ ...reader.entries[0]!, storedLength: 1 << 30 }), 'PACK_ENTRY_RANGE');
    rmSync(dir, { recursive: true });
  });

  it('refuses damaged packs with typed errors', async () => {
    const p = packs[0]!;
    const n = p.entries.length;
    const indexAt = p.bytes.length - PACK_TRAILER_SIZE - n * PACK_ENTRY_SIZE;
    const damaged = (at: number, v: number) => {
      const b = Buffer.from(p.bytes);
      b[at] = v;
      return b;
    };
    const end = p.bytes.length;
    await expectTypedError(PackReader.fromBytes(p.bytes.subarray(0, 10), 'x'), 'PACK_TOO_SHORT');
    await expectTypedError(PackReader.fromBytes(p.bytes.subarray(1), 'x'), 'PACK_SIZE_MISMATCH');
    await expectTypedError(PackReader.fromBytes(damaged(end - 64, 0x41), 'x'), 'PACK_BAD_MAGIC');
    await expectTypedError(PackReader.fromBytes(damaged(end - 56, 2), 'x'), 'PACK_VERSION');
    await expectTypedError(PackReader.fromBytes(damaged(end - 52, 0xff), 'x'), 'PACK_INDEX_LENGTH');
    await expectTypedError(
      PackReader.fromBytes(damaged(indexAt + 3, p.bytes[indexAt + 3]! ^ 1), 'x'),
      'PACK_INDEX_CHECKSUM',
    );
    // a flipped byte in a raw chunk's data: decodes, but its SHA-256 no longer matches
    const rawEntry = p.entries.find((e) => e.codec === CODEC_RAW)!;
    const r = await PackReader.fromBytes(damaged(rawEntry.offset + 10, p.bytes[rawEntry.offset + 10]! ^ 0x80), 'x');
    await expectTypedError(r.readChunk(rawEntry), 'PACK_CHUNK_HASH');
    const zEntry = p.entries.find((e) => e.codec === CODEC_ZSTD)!;
    const rz = await PackReader.fromBytes(damaged(zEntry.offset, CODEC_RAW), 'x');
    await expectTypedError(rz.readChunk(zEntry), 'PACK_CODEC_MISMATCH');
  });

  it('with reuseBuffer builds the same packs in one kept buffer (each valid until the next finish)', () => {
    const want = writePacks(chunks, 256 << 10);
    expect(want.length).toBeGreaterThan(2);
    const w = new PackWriter({ targetSize: 256 << 10, reuseBuffer: true });
    const got: { id: string; bytes: Buffer; buffer: ArrayBufferLike }[] = [];
    const keep = (p: FinishedPack) => got.push({ id: p.id, bytes: Buffer.from(p.bytes), buffer: p.bytes.buffer });
    for (const ch of chunks) if (w.add(ch)) keep(w.finish());
    if (w.count > 0) keep(w.finish());
    expect(got.map((p) => p.id)).toEqual(want.map((p) => p.id));
    got.forEach((p, i) => expect(p.bytes.equals(want[i]!.bytes)).toBe(true));
    // one buffer for all of them (the first is at least twice the target, so no pack here outgrows it)
    expect(new Set(got.map((p) => p.buffer)).size).toBe(1);
  });

  it('enforces the writer rules and finishes into plain data', () => {
    const w = new PackWriter({ targetSize: 1 << 20, maxEntries: 3 });
    expect(() => w.finish()).toThrow(RangeError);
    expect(w.add(chunks[0]!)).toBe(false);
    expect(w.has(chunks[0]!.hash)).toBe(true);
    expect(() => w.add(chunks[0]!)).toThrow(/already/);
    expect(() => w.add({ ...chunks[1]!, codec: chunks[1]!.codec === CODEC_RAW ? CODEC_ZSTD : CODEC_RAW })).toThrow(
      RangeError,
    );
    w.add(chunks[1]!);
    expect(w.add(chunks[2]!)).toBe(true); // full by entry count
    expect(() => w.add(chunks[3]!)).toThrow(/full/);
    const p = w.finish();
    expect(w.count).toBe(0);
    const clone = structuredClone(p);
    expect(clone.entries).toEqual(p.entries);
    expect(Buffer.from(clone.bytes).equals(p.bytes)).toBe(true);
    expect(() => packObjectName('../x')).toThrow(RangeError);
  });
});

/** Async twin of expectTypedOrOk: only success or one of our typed errors is acceptable. */
async function typedOrOk(tally: FuzzTally, index: number, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
    tally.ok++;
  } catch (e) {
    if (!isVdbakError(e)) {
      const err = e instanceof Error ? e : new Error(String(e));
      err.message = `fuzz case ${index}: untyped ${err.name}: ${err.message}`;
      throw err;
    }
    tally.typed++;
    tally.codes.set(e.code, (tally.codes.get(e.code) ?? 0) + 1);
  }
}

describe('pack reader fuzz', () => {
  it('on mutated real packs yields only typed errors or the right chunks', async () => {
    const small = encodeAll(mixedData(200_000, 9));
    const [pack] = writePacks(small.chunks, 1 << 20);
    const base = pack!.bytes;
    const tail = base.length - PACK_TRAILER_SIZE - pack!.entries.length * PACK_ENTRY_SIZE;
    const tally = newTally();
    let chunksOk = 0;
    // half the cases aim at the index and trailer, half anywhere (chunk data included); generated lazily
    const batches = [mutate(base, 1500, 21, [{ start: tail, end: base.length }]), mutate(base, 1500, 22)];
    for (const [b, cases] of batches.entries()) {
      for (const { index, bytes } of cases) {
        await typedOrOk(tally, b * 1500 + index, async () => {
          const r = await PackReader.fromBytes(bytes, `fuzz-${b}-${index}`);
          for (const e of r.entries) {
            const got = await r.readChunk(e);
            expect(got.equals(small.raw.get(e.hash)!)).toBe(true);
            chunksOk++;
          }
        });
      }
    }
    expect(tally.typed).toBeGreaterThan(1500);
    expect(chunksOk).toBeGreaterThan(0);
    expect(tally.codes.has('PACK_INDEX_CHECKSUM')).toBe(true);
    expect(tally.codes.has('PACK_CHUNK_HASH') || tally.codes.has('CODEC_ZSTD_DATA')).toBe(true);
  });
});
