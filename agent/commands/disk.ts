/**
 * Commands that work on a disk image directly, no backup needed:
 * inspect, dump, ls, cat.
 */
import type { BlockDevice } from '../../parsers/blockdevice.js';
import { errorsFor } from '../../parsers/errors.js';
import type { FileSystem, FsEntry } from '../../parsers/fs/types.js';
import { entryJson, humanBytes, isoNs, modeString } from '../format.js';
import { allocatedBytes, type DiskStack, openStack, pickVolume, volumeInfo } from '../stack.js';
import { writeOut } from '../stdout.js';

/** Bytes per read when streaming (dump, cat). */
const STREAM_CHUNK = 4 * 1024 * 1024;

function withStack<T>(path: string, fn: (s: DiskStack) => Promise<T>): Promise<T> {
  const stack = openStack(path);
  return fn(stack).finally(() => stack.close());
}

export function describeStack(s: DiskStack) {
  return {
    path: s.disk.name,
    format: s.disk.format,
    subformat: s.disk.subformat ?? null,
    virtualSize: s.disk.size,
    allocatedBytes: allocatedBytes(s.disk),
    chain: s.disk.chain,
    partitionScheme: s.map.scheme,
    sectorSize: s.map.sectorSize,
    diskId: s.map.diskId ?? null,
    warnings: s.map.warnings,
    volumes: s.volumes.map((v) => {
      const { info, error } = volumeInfo(v);
      return { ...v.volume, filesystem: v.fsType ?? null, fsInfo: info ?? null, fsError: error ?? null };
    }),
  };
}

export async function cmdInspect(path: string, o: { json: boolean }): Promise<number> {
  return withStack(path, async (s) => {
    const d = describeStack(s);
    if (o.json) {
      await writeOut(`${JSON.stringify(d, null, 2)}\n`);
      return 0;
    }
    const lines: string[] = [];
    lines.push(d.path);
    lines.push(`  format       ${d.format}${d.subformat ? ` (${d.subformat})` : ''}`);
    lines.push(`  virtual size ${humanBytes(d.virtualSize)} (${d.virtualSize} bytes)`);
    lines.push(`  allocated    ${humanBytes(d.allocatedBytes)} (${d.allocatedBytes} bytes)`);
    lines.push(`  chain        ${d.chain.length === 1 ? 'a single image' : `${d.chain.length} images, child first`}`);
    d.chain.forEach((c, i) => {
      const facts = Object.entries(c.facts ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      lines.push(
        `    ${i + 1}. ${c.path}  [${c.format}${c.subformat ? ` ${c.subformat}` : ''}]${facts ? `  ${facts}` : ''}`,
      );
      for (const f of c.files.filter((f) => f !== c.path)) lines.push(`       extent ${f}`);
    });
    lines.push(
      `  partitions   ${d.partitionScheme === 'none' ? 'none (one whole-disk volume)' : d.partitionScheme}, ${d.sectorSize}-byte sectors`,
    );
    for (const w of d.warnings) lines.push(`  warning      ${w}`);
    for (const v of d.volumes) {
      lines.push(
        `  volume ${v.index}  offset ${v.offset}  length ${humanBytes(v.length)}  type ${v.typeName || v.type}${v.name ? `  name "${v.name}"` : ''}`,
      );
      if (v.fsInfo) {
        const i = v.fsInfo;
        lines.push(
          `      ${i.type}  label "${i.label}"  uuid ${i.uuid}  block ${i.blockSize}  used ${humanBytes(i.usedBytes)} of ${humanBytes(i.totalBytes)}  ${i.clean ? 'clean' : 'NOT CLEAN (needs recovery)'}`,
        );
        if (i.features.length) lines.push(`      features ${i.features.join(' ')}`);
      } else if (v.fsError) {
        lines.push(`      ${v.filesystem ?? 'filesystem'}: cannot open: ${v.fsError.message}`);
      } else {
        lines.push('      no filesystem vdbak reads (would be backed up as raw allocated regions)');
      }
    }
    await writeOut(`${lines.join('\n')}\n`);
    return 0;
  });
}

export async function cmdDump(path: string, o: { volume: number | undefined }): Promise<number> {
  return withStack(path, async (s) => {
    let dev: BlockDevice = s.disk;
    if (o.volume !== undefined) {
      const v = s.volumes.find((x) => x.volume.index === o.volume);
      if (!v) throw errorsFor({ image: path, layer: 'volume' }).notFound('VOLUME_NOT_FOUND', `no volume ${o.volume}`);
      dev = v.device;
    }
    const zeros = Buffer.alloc(STREAM_CHUNK);
    for (let off = 0; off < dev.size; off += STREAM_CHUNK) {
      const len = Math.min(STREAM_CHUNK, dev.size - off);
      // unallocated regions read as zeros: do not ask the image for them
      const alloc = dev.allocated(off, len);
      if (alloc.length === 0) {
        if (!(await writeOut(zeros.subarray(0, len)))) return 0;
      } else if (!(await writeOut(dev.read(off, len)))) return 0;
    }
    return 0;
  });
}

function resolveEntry(fs: FileSystem, path: string, image: string): FsEntry {
  const e = fs.lookup(path);
  if (!e) throw errorsFor({ image, layer: 'fs' }).notFound('PATH_NOT_FOUND', `no such path: ${path}`);
  return e;
}

export async function cmdLs(
  path: string,
  dir: string,
  o: { volume: number | undefined; long: boolean; recursive: boolean; json: boolean },
): Promise<number> {
  return withStack(path, async (s) => {
    const v = pickVolume(s, o.volume);
    const fs = v.fs!;
    const start = resolveEntry(fs, dir, v.device.name);
    const print = async (e: FsEntry) => {
      if (o.json) return writeOut(`${JSON.stringify(entryJson(e))}\n`);
      if (!o.long) return writeOut(`${e.path}${e.type === 'dir' ? '/' : ''}\n`);
      const link = e.linkTarget !== undefined ? ` -> ${e.linkTarget}` : '';
      const streams = e.streams?.length ? `  [streams: ${e.streams.map((x) => `${x.name} ${x.size}`).join(', ')}]` : '';
      return writeOut(
        `${modeString(e)} ${String(e.nlink).padStart(3)} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${String(e.size).padStart(12)} ${isoNs(e.mtimeNs).slice(0, 19)} ${e.path}${link}${streams}\n`,
      );
    };
    if (start.type !== 'dir') {
      await print(start);
      return 0;
    }
    // breadth-first with a visited set: a hostile directory tree cannot loop us
    const seen = new Set<string>([start.id]);
    const queue: string[] = [start.path];
    while (queue.length > 0) {
      const d = queue.shift()!;
      for (const e of fs.list(d)) {
        if (!(await print(e))) return 0;
        if (o.recursive && e.type === 'dir' && !seen.has(e.id)) {
          seen.add(e.id);
          queue.push(e.path);
        }
      }
    }
    return 0;
  });
}

export async function cmdCat(path: string, filePath: string, o: { volume: number | undefined }): Promise<number> {
  return withStack(path, async (s) => {
    const v = pickVolume(s, o.volume);
    const fs = v.fs!;
    let entry = fs.lookup(filePath);
    let stream: string | undefined;
    const colon = filePath.lastIndexOf(':');
    if (!entry && colon > 0) {
      // FILE:STREAM names an NTFS alternate data stream
      entry = fs.lookup(filePath.slice(0, colon));
      stream = filePath.slice(colon + 1);
      if (entry && !entry.streams?.some((x) => x.name === stream)) {
        throw errorsFor({ image: v.device.name, layer: 'fs' }).notFound(
          'STREAM_NOT_FOUND',
          `${entry.path} has no stream '${stream}'`,
        );
      }
    }
    if (!entry)
      throw errorsFor({ image: v.device.name, layer: 'fs' }).notFound('PATH_NOT_FOUND', `no such path: ${filePath}`);
    if (entry.type === 'dir')
      throw errorsFor({ image: v.device.name, layer: 'fs' }).notFound('IS_A_DIRECTORY', `${entry.path} is a directory`);
    const size = stream !== undefined ? (entry.streams?.find((x) => x.name === stream)?.size ?? 0) : entry.size;
    for (let off = 0; off < size; off += STREAM_CHUNK) {
      if (!(await writeOut(fs.read(entry, off, Math.min(STREAM_CHUNK, size - off), stream)))) return 0;
    }
    return 0;
  });
}
