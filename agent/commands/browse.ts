/**
 * Browsing and restoring from the repository: ls, cat, find, versions, restore.
 * They only read the catalog (and, for content, the target): no lock, no VM,
 * no disk image needed. The queries live in agent/browse/, shared with the
 * HTTP API; this file parses arguments and prints.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import { resolveContent } from '../browse/content.js';
import { BadQueryError } from '../browse/errors.js';
import { resolveBackup, volumeTitle } from '../browse/refs.js';
import { humanBytes, isoNs, modeString } from '../format.js';
import { type Repo, withRepo as withRepoAt } from '../repo.js';
import { ChunkStore, versionContent } from '../restore/chunks.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

/** Browsing only reads. */
function withRepo<T>(flag: string | undefined, fn: (r: Repo) => Promise<T>): Promise<T> {
  return withRepoAt(flag, fn, { readonly: true });
}

function longLine(v: VersionRow, shown: string): string {
  const link = v.linkTarget !== undefined ? ` -> ${v.linkTarget}` : '';
  const streams = v.streams?.length ? `  [+${v.streams.map((s) => s.name).join(', ')}]` : '';
  return `${modeString(v)} ${String(v.uid).padStart(5)} ${String(v.gid).padStart(5)} ${String(v.size).padStart(12)} ${isoNs(v.mtimeNs).slice(0, 19)} ${shown}${link}${streams}`;
}

export async function cmdBackupLs(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      long: { type: 'boolean', short: 'l', default: false },
      recursive: { type: 'boolean', short: 'R', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const [ref, path = '/'] = positionals;
  if (!ref) throw new UsageError('ls needs a backup (id, VM name or VM~N)');
  // each command loads only its own queries: a restore or cat starts sooner without the others
  const { treeRowJson, treeRows } = await import('../browse/tree.js');
  return withRepo(values.repo, async (repo) => {
    const cat = repo.catalog;
    const b = resolveBackup(cat, ref);
    const out: string[] = [];
    const json: Record<string, unknown>[] = [];
    for (const r of treeRows(cat, b, path, values.recursive ?? false)) {
      if (values.json) json.push(treeRowJson(r));
      else if (r.kind === 'volume') {
        const v = r.volume;
        out.push(
          `${volumeTitle(v).padEnd(24)} ${v.mode === 'files' ? (v.fsType ?? '') : 'raw'}  ${humanBytes(v.length)}${v.problems.length ? `  ${v.problems.length} problem(s)` : ''}`,
        );
      } else if (values.long) out.push(longLine(r.version, r.shown));
      else out.push(r.version.type === 'dir' ? `${r.shown}/` : r.shown);
    }
    await writeOut(values.json ? `${JSON.stringify(json)}\n` : out.length ? `${out.join('\n')}\n` : '');
    return 0;
  });
}

export async function cmdBackupCat(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { repo: { type: 'string' } } });
  const [ref, spec] = positionals;
  if (!ref || !spec) throw new UsageError('cat needs a backup and a path');
  return withRepo(values.repo, async (repo) => {
    const cat = repo.catalog;
    const b = resolveBackup(cat, ref);
    const { version, stream } = resolveContent(cat, b, spec);
    const store = new ChunkStore(cat, repo.target);
    for await (const chunk of versionContent(store, version, stream)) if (!(await writeOut(chunk))) break;
    return 0;
  });
}

export async function cmdFind(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      vm: { type: 'string' },
      since: { type: 'string' },
      json: { type: 'boolean', default: false },
      limit: { type: 'string' },
    },
  });
  const [pattern] = positionals;
  if (!pattern) throw new UsageError('find needs a glob or a /regex/');
  const limit = values.limit === undefined ? 1000 : Number(values.limit);
  if (!Number.isSafeInteger(limit) || limit < 0)
    throw new BadQueryError('BAD_LIMIT', `--limit takes a count, not '${values.limit}'`);
  const { searchHitJson, searchVersions } = await import('../browse/search.js');
  return withRepo(values.repo, async (repo) => {
    const hits: unknown[] = [];
    const out: string[] = [];
    let more = 0;
    for (const h of searchVersions(repo.catalog, { pattern, vm: values.vm, since: values.since })) {
      if (hits.length + out.length >= limit) {
        more++;
        continue;
      }
      const v = h.version;
      const range =
        h.backups.length === 1
          ? `${h.backups[0]}`
          : `${h.backups[0]}..${h.backups[h.backups.length - 1]} (${h.backups.length})`;
      if (values.json) hits.push(searchHitJson(h));
      else
        out.push(
          `${(h.vmName ?? '?').padEnd(12)} ${h.full}  ${v.type === 'dir' ? 'dir' : humanBytes(v.size)}  ${isoNs(v.mtimeNs).slice(0, 19)}  backups ${range}`,
        );
    }
    if (values.json) await writeOut(`${JSON.stringify(hits)}\n`);
    else {
      if (more) out.push(`… ${more} more (raise --limit)`);
      await writeOut(out.length ? `${out.join('\n')}\n` : '');
    }
    return 0;
  });
}

export async function cmdVersions(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { repo: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  const [vmName, path] = positionals;
  if (!vmName || !path) throw new UsageError('versions needs a VM and a path (/<volume>/<path>)');
  const { pathVersionJson, pathVersions } = await import('../browse/versions.js');
  return withRepo(values.repo, async (repo) => {
    const found = pathVersions(repo.catalog, vmName, path);
    if (values.json) await writeOut(`${JSON.stringify(found.map(pathVersionJson))}\n`);
    else {
      const out = found.map((h) => {
        const v = h.version;
        return `backups ${String(h.backups[0]).padStart(4)}..${String(h.backups.at(-1)).padEnd(5)} ${v.type === 'file' ? humanBytes(v.size).padStart(10) : v.type.padStart(10)}  mtime ${isoNs(v.mtimeNs).slice(0, 19)}  (${h.backups.length} backup(s): ${h.backups.join(', ')})`;
      });
      await writeOut(out.length ? `${out.join('\n')}\n` : `no versions of ${path} in ${vmName}'s backups\n`);
    }
    return found.length ? 0 : 1;
  });
}

export async function cmdRestore(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      to: { type: 'string' },
      tar: { type: 'string' },
      overwrite: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const [ref, path] = positionals;
  if (!ref || !path) throw new UsageError('restore needs a backup and a path');
  if (!values.to === !values.tar) throw new UsageError('restore needs exactly one of --to DIR or --tar FILE|-');
  // the engine and the sink's module load together: one round of module reads, not two
  const [{ restorePath }, dirSink, tarSink] = await Promise.all([
    import('../restore/engine.js'),
    values.to ? import('../restore/dir-sink.js') : undefined,
    values.to ? undefined : import('../restore/tar-sink.js'),
  ]);
  return withRepo(values.repo, async (repo) => {
    const cat = repo.catalog;
    const b = resolveBackup(cat, ref);
    let sink;
    let closeOut: (() => Promise<void>) | undefined;
    if (values.to) {
      const { DirSink } = dirSink!;
      sink = new DirSink(values.to, { overwrite: values.overwrite ?? false });
    } else {
      const { TarSink } = tarSink!;
      if (values.tar === '-') sink = new TarSink(process.stdout, { end: false });
      else {
        if (existsSync(values.tar!) && !values.overwrite) {
          throw errorsFor({ image: values.tar!, layer: 'restore' }).unsupported(
            'RESTORE_EXISTS',
            `${values.tar} exists (use --overwrite)`,
          );
        }
        const ws = createWriteStream(values.tar!);
        sink = new TarSink(ws, { end: false });
        closeOut = () => new Promise<void>((res, rej) => ws.end((e?: Error | null) => (e ? rej(e) : res())));
      }
    }
    const report = await restorePath(cat, repo.target, b, path, sink);
    await closeOut?.();
    const toStderr = values.tar === '-';
    const msg = values.json
      ? `${JSON.stringify({ backup: b.id, path, ...report })}\n`
      : `restored ${path} from backup ${b.id} (${b.vmName}): ${report.files} file(s), ${report.dirs} folder(s), ${report.links} link(s), ${humanBytes(report.bytes)}${report.notes.length ? `\n${report.notes.map((n) => `  ${n.kind}: ${n.path}${n.restoredAs ? ` -> ${n.restoredAs}` : ''}: ${n.detail}`).join('\n')}` : ''}\n`;
    if (toStderr) process.stderr.write(msg);
    else await writeOut(msg);
    return report.notes.some((n) => n.kind === 'failed') ? 1 : 0;
  });
}
