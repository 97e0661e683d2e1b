/**
 * Browsing and restoring from the repository: ls, cat, find, versions, restore.
 * They only read the catalog (and, for content, the target): no lock, no VM,
 * no disk image needed.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Catalog } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { errorsFor } from '../../parsers/errors.js';
import { resolveBackup, resolvePath, splitUserPath, volumeTitle } from '../browse/refs.js';
import { humanBytes, isoNs, modeString } from '../format.js';
import { openRepo, repoPath, type Repo } from '../repo.js';
import { ChunkStore, versionContent } from '../restore/chunks.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

function versionJson(v: VersionRow, path: string): Record<string, unknown> {
  return {
    path,
    type: v.type,
    size: v.size,
    mode: v.mode,
    uid: v.uid,
    gid: v.gid,
    mtime: isoNs(v.mtimeNs),
    ...(v.linkTarget !== undefined ? { linkTarget: v.linkTarget } : {}),
    ...(v.streams?.length ? { streams: v.streams.map((s) => ({ name: s.name, size: s.size })) } : {}),
    ...(v.meta && Object.keys(v.meta).length ? { meta: v.meta } : {}),
    firstBackup: v.firstBackup,
  };
}

function withRepo<T>(flag: string | undefined, fn: (r: Repo) => Promise<T>): Promise<T> {
  const repo = openRepo(repoPath(flag), { readonly: true });
  return fn(repo).finally(() => repo.close());
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
  return withRepo(values.repo, async (repo) => {
    const cat = repo.catalog;
    const b = resolveBackup(cat, ref);
    const where = resolvePath(cat, b, path);
    const out: string[] = [];
    const json: Record<string, unknown>[] = [];
    if (!where.volume) {
      for (const v of cat.backupVolumes(b.id)) {
        if (values.json) json.push({ path: `/${v.name}`, type: 'volume', ...v });
        else
          out.push(
            `${volumeTitle(v).padEnd(24)} ${v.mode === 'files' ? (v.fsType ?? '') : 'raw'}  ${humanBytes(v.length)}${v.problems.length ? `  ${v.problems.length} problem(s)` : ''}`,
          );
      }
    } else {
      const vol = where.volume;
      const base = `/${vol.name}`;
      const entry = where.inner === '/' ? undefined : cat.lookup(b.id, vol.volumeId, where.inner);
      if (where.inner !== '/' && !entry) {
        throw errorsFor({ image: path, layer: 'catalog' }).notFound(
          'PATH_NOT_FOUND',
          `${path} is not in backup ${b.id}`,
        );
      }
      const rows: VersionRow[] =
        entry && entry.type !== 'dir'
          ? [entry]
          : values.recursive
            ? [...cat.walk(b.id, vol.volumeId, where.inner)].filter((v) => v.path !== '/')
            : cat.list(b.id, vol.volumeId, where.inner);
      for (const v of rows) {
        const shown = values.recursive || (entry && entry.type !== 'dir') ? `${base}${v.path}` : v.name;
        if (values.json) json.push(versionJson(v, `${base}${v.path}`));
        else if (values.long) out.push(longLine(v, shown));
        else out.push(v.type === 'dir' ? `${shown}/` : shown);
      }
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
    // `path:stream`: the whole text is tried as a path first (Linux names may hold ':'), then
    // each ':' of the last component from the left as the start of a stream name
    const slash = spec.lastIndexOf('/');
    const candidates: { path: string; stream?: string }[] = [{ path: spec }];
    for (let i = spec.indexOf(':', slash + 1); i > slash + 1; i = spec.indexOf(':', i + 1)) {
      candidates.push({ path: spec.slice(0, i), stream: spec.slice(i + 1) });
    }
    // a stream name may hold '/' too (NTFS): a ':' before the last '/' can start one
    for (let i = spec.indexOf(':'); i >= 0 && i < slash; i = spec.indexOf(':', i + 1)) {
      candidates.push({ path: spec.slice(0, i), stream: spec.slice(i + 1) });
    }
    let v: VersionRow | undefined;
    let stream: string | undefined;
    for (const c of candidates) {
      const where = resolvePath(cat, b, c.path);
      const hit = where.volume ? cat.lookup(b.id, where.volume.volumeId, where.inner) : undefined;
      if (hit && (c.stream === undefined || hit.streams?.some((s) => s.name === c.stream))) {
        v = hit;
        stream = c.stream;
        break;
      }
    }
    const path = spec;
    if (!v)
      throw errorsFor({ image: spec, layer: 'catalog' }).notFound('PATH_NOT_FOUND', `${path} is not in backup ${b.id}`);
    if (v.type !== 'file' && stream === undefined) {
      throw errorsFor({ image: spec, layer: 'catalog' }).unsupported('NOT_A_FILE', `${path} is a ${v.type}`);
    }
    const store = new ChunkStore(cat, repo.target);
    for await (const chunk of versionContent(store, v, stream)) if (!(await writeOut(chunk))) break;
    return 0;
  });
}

/** A glob (`*`, `?`, `[…]`, `**`) or a /regex/ as a matcher of full paths and of base names. */
export function matcher(pattern: string): (path: string, name: string) => boolean {
  if (pattern.length > 2 && pattern.startsWith('/') && pattern.endsWith('/')) {
    let re: RegExp;
    try {
      re = new RegExp(pattern.slice(1, -1), 'i');
    } catch (e) {
      throw new UsageError(`bad regular expression ${pattern}: ${(e as Error).message}`);
    }
    return (path) => re.test(path);
  }
  let src = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        src += '.*';
        i++;
      } else src += '[^/]*';
    } else if (c === '?') src += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) src += '\\[';
      else {
        src += `[${pattern
          .slice(i + 1, end)
          .replace(/\\/g, '\\\\')
          .replace(/^!/, '^')}]`;
        i = end;
      }
    } else src += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  const re = new RegExp(`^${src}$`, 'i');
  const onName = !pattern.includes('/');
  return (path, name) => (onName ? re.test(name) : re.test(path));
}

function parseSince(s: string | undefined): bigint | undefined {
  if (s === undefined) return undefined;
  const rel = /^(\d+)([hdw])$/.exec(s);
  let ms: number;
  if (rel) ms = Date.now() - Number(rel[1]) * { h: 3600e3, d: 86400e3, w: 604800e3 }[rel[2] as 'h' | 'd' | 'w'];
  else {
    ms = Date.parse(s);
    if (Number.isNaN(ms))
      throw new UsageError(`--since takes a date (2026-11-20, 2026-11-20T10:00Z) or an age (12h, 3d, 2w), not '${s}'`);
  }
  return BigInt(ms) * 1_000_000n;
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
  const match = matcher(pattern);
  const since = parseSince(values.since);
  const limit = values.limit === undefined ? 1000 : Number(values.limit);
  return withRepo(values.repo, async (repo) => {
    const cat = repo.catalog;
    const names = cat.volumeNames();
    let volumeIds: number[] | undefined;
    if (values.vm) {
      const vms = cat.findVms(values.vm);
      if (vms.length === 0) throw new UsageError(`no VM named '${values.vm}'`);
      volumeIds = vms.flatMap((vm) => cat.vmVolumes(vm.id).map((v) => v.id));
    }
    const hits: Record<string, unknown>[] = [];
    const out: string[] = [];
    let more = 0;
    for (const v of cat.allVersions(volumeIds)) {
      if (v.path === '/') continue;
      if (since !== undefined && v.mtimeNs < since) continue;
      if (!match(v.path, v.name)) continue;
      const backups = cat.backupsHolding(v);
      if (backups.length === 0) continue;
      if (hits.length + out.length >= limit) {
        more++;
        continue;
      }
      const vol = names.get(v.volumeId);
      const full = `/${vol?.name ?? '?'}${v.path}`;
      const range =
        backups.length === 1 ? `${backups[0]}` : `${backups[0]}..${backups[backups.length - 1]} (${backups.length})`;
      if (values.json) hits.push({ vm: vol?.vmName, ...versionJson(v, full), backups });
      else
        out.push(
          `${(vol?.vmName ?? '?').padEnd(12)} ${full}  ${v.type === 'dir' ? 'dir' : humanBytes(v.size)}  ${isoNs(v.mtimeNs).slice(0, 19)}  backups ${range}`,
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
  return withRepo(values.repo, async (repo) => {
    const cat: Catalog = repo.catalog;
    const vms = cat.findVms(vmName);
    if (vms.length === 0) throw new UsageError(`no VM named '${vmName}'`);
    const parts = splitUserPath(path);
    const volName = parts[0];
    const inner = `/${parts.slice(1).join('/')}`;
    const rows: Record<string, unknown>[] = [];
    const out: string[] = [];
    for (const vm of vms) {
      const latest = cat.backups({ vmId: vm.id }).at(-1);
      for (const vol of cat.vmVolumes(vm.id)) {
        let label: string | null = null;
        if (latest) label = cat.backupVolumes(latest.id).find((x) => x.volumeId === vol.id)?.label ?? null;
        if (vol.name !== volName && (label ?? '').toLowerCase() !== (volName ?? '').toLowerCase()) continue;
        for (const h of cat.history(vol.id, inner)) {
          const v = h.version;
          if (values.json) rows.push({ ...versionJson(v, `/${vol.name}${inner}`), backups: h.backups });
          else
            out.push(
              `backups ${String(h.backups[0]).padStart(4)}..${String(h.backups.at(-1)).padEnd(5)} ${v.type === 'file' ? humanBytes(v.size).padStart(10) : v.type.padStart(10)}  mtime ${isoNs(v.mtimeNs).slice(0, 19)}  (${h.backups.length} backup(s): ${h.backups.join(', ')})`,
            );
        }
      }
    }
    if (values.json) await writeOut(`${JSON.stringify(rows)}\n`);
    else await writeOut(out.length ? `${out.join('\n')}\n` : `no versions of ${path} in ${vmName}'s backups\n`);
    return out.length || rows.length ? 0 : 1;
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
  const { restorePath } = await import('../restore/engine.js');
  return withRepo(values.repo, async (repo) => {
    const cat = repo.catalog;
    const b = resolveBackup(cat, ref);
    let sink;
    let closeOut: (() => Promise<void>) | undefined;
    if (values.to) {
      const { DirSink } = await import('../restore/dir-sink.js');
      sink = new DirSink(values.to, { overwrite: values.overwrite ?? false });
    } else {
      const { TarSink } = await import('../restore/tar-sink.js');
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
