/**
 * Reads chunks back from the target: catalog → pack and offset → ranged read
 * → decode → SHA-256 check. Nothing unverified leaves this module.
 */
import { createHash } from 'node:crypto';
import type { Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import { decodeChunk } from '../../transport/chunk-format.js';
import type { Target } from '../../transport/targets/types.js';

/** Chunks fetched ahead of the one being written. */
const READ_AHEAD = 4;
const ZERO_BLOCK = 1024 * 1024;

export class ChunkStore {
  constructor(
    private readonly cat: Catalog,
    private readonly target: Target,
  ) {}

  /** The raw bytes of one chunk, verified against its hash. */
  async read(hash: string): Promise<Buffer> {
    const loc = this.cat.chunkLocation(hash);
    if (!loc) {
      throw errorsFor({ image: this.cat.path, layer: 'catalog' }).notFound(
        'CHUNK_UNKNOWN',
        `chunk ${hash} is referenced but not in the catalog`,
      );
    }
    const stored = await this.target.getRange(loc.packName, loc.offset, loc.storedLength);
    const raw = decodeChunk(stored, loc.rawLength, { image: loc.packName, offset: loc.offset });
    const got = createHash('sha256').update(raw).digest('hex');
    if (got !== hash) {
      throw errorsFor({ image: loc.packName, layer: 'pack' }).corrupt(
        'CHUNK_HASH_MISMATCH',
        `chunk at offset ${loc.offset} should hash to ${hash} but hashes to ${got}`,
        { offset: loc.offset },
      );
    }
    return raw;
  }

  /** The chunks of a list, in order, with a few fetched ahead. */
  async *stream(hashes: readonly string[]): AsyncGenerator<Buffer> {
    const ahead: Promise<Buffer>[] = [];
    let next = 0;
    const fill = () => {
      while (ahead.length < READ_AHEAD && next < hashes.length) {
        const p = this.read(hashes[next++]!);
        p.catch(() => undefined); // surfaced when awaited below
        ahead.push(p);
      }
    };
    fill();
    while (ahead.length > 0) {
      const b = await ahead.shift()!;
      fill();
      yield b;
    }
  }
}

function lengthError(v: VersionRow, stream: string | undefined, got: number, want: number): Error {
  return errorsFor({ image: v.path, layer: 'catalog' }).corrupt(
    'CONTENT_LENGTH',
    `${stream ? `stream ${stream}` : 'content'} holds ${got} bytes, the catalog says ${want}`,
  );
}

async function* zeros(n: number): AsyncGenerator<Uint8Array> {
  while (n > 0) {
    const k = Math.min(n, ZERO_BLOCK);
    yield new Uint8Array(k);
    n -= k;
  }
}

/**
 * The content of a version's main stream or of one named stream. A raw
 * volume's (or a disk's regions') chunks hold only their allocated runs: the gaps come back as zeros.
 */
export async function* versionContent(store: ChunkStore, v: VersionRow, stream?: string): AsyncGenerator<Uint8Array> {
  if (v.meta?.readError) {
    const e = v.meta.readError as { code?: string; message?: string };
    throw errorsFor({ image: v.path, layer: 'catalog' }).notFound(
      'CONTENT_NOT_BACKED_UP',
      `this version's content could not be read at backup time (${e.code}: ${e.message})`,
    );
  }
  let hashes: string[];
  let size: number;
  if (stream !== undefined) {
    const s = v.streams?.find((x) => x.name === stream);
    if (!s) throw errorsFor({ image: v.path, layer: 'catalog' }).notFound('STREAM_NOT_FOUND', `no stream '${stream}'`);
    hashes = s.chunks;
    size = s.size;
  } else {
    hashes = v.chunks ?? [];
    size = v.type === 'file' ? v.size : 0;
  }
  if ((v.meta?.rawVolume || v.meta?.diskRegions) && stream === undefined) {
    const it = store.stream(hashes)[Symbol.asyncIterator]();
    let buf: Buffer = Buffer.alloc(0);
    let pos = 0;
    for (const run of v.runs ?? []) {
      if (run.fileOffset > pos) yield* zeros(run.fileOffset - pos);
      let left = run.length;
      while (left > 0) {
        if (buf.length === 0) {
          const r = await it.next();
          if (r.done) throw lengthError(v, stream, pos, size);
          buf = r.value;
        }
        const k = Math.min(left, buf.length);
        yield buf.subarray(0, k);
        buf = buf.subarray(k);
        left -= k;
      }
      pos = run.fileOffset + run.length;
    }
    if (pos < size) yield* zeros(size - pos);
    return;
  }
  let total = 0;
  for await (const b of store.stream(hashes)) {
    total += b.length;
    if (total > size) throw lengthError(v, stream, total, size);
    yield b;
  }
  if (total !== size) throw lengthError(v, stream, total, size);
}
