/**
 * The backup's CPU work, run on piscina worker threads (DESIGN.md): read a
 * file's bytes through image → volume → filesystem (grain inflation happens
 * here), cut them into content-defined chunks, hash them, and compress the
 * chunks the repository does not hold yet.
 *
 * A worker keeps the disks it opened (a few at most) and a read-only
 * connection to the catalog, which it asks whether a chunk is already stored;
 * the main thread, the only catalog writer, decides for good.
 */
import Database from 'better-sqlite3';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { type ChunkSizes, ContentChunker } from '../chunk/fastcdc.js';
import { encodeChunk, type EncodedChunk } from '../../transport/codec.js';
import { errorsFor, isVdbakError, type SerializedError } from '../../parsers/errors.js';
import type { BlockDevice } from '../../parsers/blockdevice.js';
import type { OpenOptions } from '../../parsers/disk/types.js';
import type { FsEntry } from '../../parsers/fs/types.js';
import { type DiskStack, openStack } from '../stack.js';
import { BucketSlot, throttleDisk } from '../throttle/device.js';

/** Bytes read from a file per call: large enough for sequential reads, small enough for memory. */
const READ_BLOCK = 4 * 1024 * 1024;
/** Disks a worker keeps open between tasks. */
const MAX_OPEN_DISKS = 4;
/**
 * `ReadTask.volumeIndex` for ranges in disk coordinates: the regions no file
 * covers (partition tables, boot code, filesystem metadata) are read from the
 * whole disk image, not from inside a volume.
 */
export const WHOLE_DISK = -1;

export type TaskItem =
  | {
      kind: 'file';
      /** The caller's handle for this piece. */
      key: number;
      entry: FsEntry;
      stream?: string;
      /** Byte range of the stream this item covers (a large file is cut into segments). */
      start: number;
      end: number;
    }
  | {
      kind: 'raw';
      key: number;
      /** Volume (or, for WHOLE_DISK, disk) byte ranges, read one after the other as one stream. */
      ranges: { offset: number; length: number }[];
    };

export interface ReadTask {
  /** The throttle's shared token bucket (agent/throttle); absent: reads are not limited. */
  throttle?: SharedArrayBuffer;
  image: string;
  openOptions: OpenOptions;
  /** The volume the items read from, or WHOLE_DISK: 'raw' ranges are then disk offsets. */
  volumeIndex: number;
  catalogPath: string;
  chunkSizes: ChunkSizes;
  zstdLevel: number;
  items: TaskItem[];
}

export interface ItemResult {
  key: number;
  /** Every chunk of the item in order. */
  chunks: { hash: string; length: number }[];
  /** Chunks the catalog did not know when the worker looked: compressed, ready to pack. */
  encoded: EncodedChunk[];
  bytesRead: number;
  error?: SerializedError;
}

export interface TaskResult {
  items: ItemResult[];
}

const disks = new Map<string, DiskStack>();
/** Disks stay open across tasks: they read through whichever bucket the current task brought. */
const throttle = new BucketSlot();
let catalog: { path: string; db: Database.Database; has: Database.Statement } | undefined;

function stackFor(task: ReadTask): DiskStack {
  let s = disks.get(task.image);
  if (s) {
    disks.delete(task.image);
    disks.set(task.image, s); // most recently used last
    return s;
  }
  s = openStack(task.image, task.openOptions, (d) => throttleDisk(d, throttle));
  disks.set(task.image, s);
  while (disks.size > MAX_OPEN_DISKS) {
    const [oldest, st] = disks.entries().next().value as [string, DiskStack];
    disks.delete(oldest);
    st.close();
  }
  return s;
}

let chunker: ContentChunker | undefined;
/**
 * The thread's chunker, kept across items and tasks so its carry areas are
 * allocated once. Every chunk is hashed and encoded (copied) before the next
 * read, so views are safe.
 */
function chunkerFor(sizes: ChunkSizes): ContentChunker {
  const s = chunker?.sizes;
  if (!chunker || s?.minSize !== sizes.minSize || s.avgSize !== sizes.avgSize || s.maxSize !== sizes.maxSize) {
    chunker = new ContentChunker(sizes, { views: true });
  }
  return chunker;
}

function known(catalogPath: string, hash: string): boolean {
  if (!catalog || catalog.path !== catalogPath) {
    catalog?.db.close();
    const db = new Database(catalogPath, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    catalog = { path: catalogPath, db, has: db.prepare('SELECT 1 FROM chunks WHERE hash = ?') };
  }
  return catalog.has.get(Buffer.from(hash, 'hex')) !== undefined;
}

function serialize(e: unknown, image: string): SerializedError {
  if (isVdbakError(e)) return e.toJSON();
  return errorsFor({ image, layer: 'fs' })
    .corrupt('READ_INTERNAL', String(e instanceof Error ? e.stack : e))
    .toJSON();
}

function volumeGone(task: ReadTask): Error {
  return errorsFor({ image: task.image, layer: 'volume' }).notFound(
    'VOLUME_GONE',
    `volume ${task.volumeIndex} is no longer in the disk`,
  );
}

/** A range past the device's end is the caller's bug or a disk that shrank: an error, not a short read. */
function checkRange(task: ReadTask, device: BlockDevice, r: { offset: number; length: number }): void {
  const ok =
    Number.isSafeInteger(r.offset) &&
    Number.isSafeInteger(r.length) &&
    r.offset >= 0 &&
    r.length >= 0 &&
    r.offset + r.length <= device.size;
  if (!ok) {
    throw errorsFor({ image: device.name, layer: task.volumeIndex === WHOLE_DISK ? 'disk' : 'volume' }).corrupt(
      'RANGE_OUTSIDE',
      `range ${r.offset}+${r.length} lies outside the ${device.size}-byte device`,
      { offset: r.offset },
    );
  }
}

function processItem(task: ReadTask, stack: DiskStack, item: TaskItem, seen: Set<string>): ItemResult {
  const result: ItemResult = { key: item.key, chunks: [], encoded: [], bytesRead: 0 };
  const chunker = chunkerFor(task.chunkSizes);
  const take = (list: ReturnType<ContentChunker['push']>): void => {
    for (const c of list) {
      result.chunks.push({ hash: c.hash, length: c.length });
      if (seen.has(c.hash) || known(task.catalogPath, c.hash)) continue;
      seen.add(c.hash);
      result.encoded.push(encodeChunk(c, { level: task.zstdLevel }));
    }
  };
  const whole = task.volumeIndex === WHOLE_DISK;
  const vol = whole ? undefined : stack.volumes.find((v) => v.volume.index === task.volumeIndex);
  try {
    if (item.kind === 'file') {
      if (!vol) throw volumeGone(task);
      if (!vol.fs)
        throw errorsFor({ image: vol.device.name, layer: 'fs' }).notFound('FS_GONE', 'filesystem did not open');
      for (let off = item.start; off < item.end; off += READ_BLOCK) {
        const len = Math.min(READ_BLOCK, item.end - off);
        const buf = vol.fs.read(item.entry, off, len, item.stream);
        result.bytesRead += buf.length;
        take(chunker.push(buf));
      }
    } else {
      const device = whole ? stack.disk : vol?.device;
      if (!device) throw volumeGone(task);
      for (const r of item.ranges) {
        checkRange(task, device, r);
        for (let off = r.offset; off < r.offset + r.length; off += READ_BLOCK) {
          const len = Math.min(READ_BLOCK, r.offset + r.length - off);
          const buf = device.read(off, len);
          result.bytesRead += buf.length;
          take(chunker.push(buf));
        }
      }
    }
    take(chunker.end());
  } catch (e) {
    chunker.reset();
    result.error = serialize(e, vol?.device.name ?? task.image);
    result.chunks = [];
    result.encoded = [];
  }
  return result;
}

/**
 * piscina's entry point: one batch of items of one volume. The compressed
 * chunks are moved to the main thread, not copied: each gets an ArrayBuffer
 * of its own (a small Buffer may sit in Node's shared pool, which must never
 * be detached), and the whole list is transferred.
 */
export default function run(task: ReadTask): TaskResult {
  throttle.use(task.throttle);
  const stack = stackFor(task);
  const seen = new Set<string>();
  const result: TaskResult = { items: task.items.map((item) => processItem(task, stack, item, seen)) };
  const transfer: ArrayBuffer[] = [];
  for (const item of result.items) {
    for (const enc of item.encoded) {
      const s = enc.stored;
      const own =
        s.byteOffset === 0 && s.byteLength === s.buffer.byteLength && s.buffer instanceof ArrayBuffer
          ? s
          : Buffer.from(new Uint8Array(s).buffer); // a view on a fresh copy, never the pool
      enc.stored = own;
      transfer.push(own.buffer as ArrayBuffer);
    }
  }
  return move({ [transferableSymbol]: transfer, [valueSymbol]: result }) as unknown as TaskResult;
}
