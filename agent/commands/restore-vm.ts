/**
 * `vdbak restore-vm <backup> --to FOLDER [--name NEW] [--datastore-map OLD=NEW ...]
 *   [--format vmdk-sparse|vmdk-flat|qcow2|raw] [--keep-identity] [--dry-run] [--overwrite] [--json]`
 *
 * Ends with a job-like status: success, incomplete (a disk lacks bytes the
 * backup never stored; each disk says why), or failed with the error's code,
 * file and field. Exit 0 only for success (and for a dry run).
 */
import { parseArgs } from 'node:util';
import { isVdbakError } from '../../parsers/errors.js';
import { resolveBackup } from '../browse/refs.js';
import { humanBytes } from '../format.js';
import { sanitizeForTerminal } from '../progress.js';
import { openRepo, repoPath } from '../repo.js';
import type { DatastoreMapping } from '../restore-vm/patch/index.js';
import type { JobProgress } from '../daemon/types.js';
import type { DryRunResult, PlannedDisk, RestoreVmResult } from '../restore-vm/restore-vm.js';
import { DISK_FORMATS, isDiskFormat } from '../restore-vm/writers/types.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

export function parseMap(specs: string[]): DatastoreMapping[] {
  return specs.map((s) => {
    const eq = s.indexOf('=');
    if (eq <= 0 || eq === s.length - 1) throw new UsageError(`--datastore-map takes OLD=NEW, not '${s}'`);
    return { from: s.slice(0, eq), to: s.slice(eq + 1) };
  });
}

function diskLines(disks: (PlannedDisk & { written?: number })[]): string[] {
  const lines: string[] = [];
  for (const d of disks) {
    lines.push(
      `  disk ${d.diskIndex} (${d.slot}) ${d.imagePath} → ${d.name}  ${humanBytes(d.size)} virtual, ${humanBytes(d.bytes)} stored` +
        `${d.written !== undefined ? `, ${humanBytes(d.written)} written` : ''}  ${d.complete ? 'complete' : 'INCOMPLETE'}`,
    );
    lines.push(
      `      regions ${humanBytes(d.regionBytes)}, ${d.files} file(s) ${humanBytes(d.fileBytes)}, ${d.rawVolumes} raw volume(s) ${humanBytes(d.rawBytes)}` +
        `${d.sharedBytes > 0 ? `; ${humanBytes(d.sharedBytes)} stored twice (checked equal)` : ''}`,
    );
    for (const why of d.incomplete) lines.push(`      incomplete: ${why}`);
  }
  return lines;
}

function summary(r: RestoreVmResult | DryRunResult): string {
  const lines = [
    `${r.status === 'dry-run' ? 'would restore' : 'restored'} backup ${r.backupId} (${r.vm}) into ${r.folder} as ${r.format}: ${r.status}`,
    ...diskLines(r.disks),
  ];
  for (const c of r.config) lines.push(`  config ${c.name} (${humanBytes(c.size)})`);
  if (r.status === 'dry-run') {
    if (r.patch) lines.push(...r.patch.text.trimEnd().split('\n'));
    else lines.push('  no configuration files in the backup: nothing to patch');
  } else if (r.patch) {
    lines.push(`  patched: ${r.patch.changes} change(s) in ${r.patch.written.length} file(s)`);
    for (const x of r.patch.renamed) lines.push(`    renamed ${x.from} → ${x.to}`);
    for (const w of r.patch.warnings) lines.push(`    warning: ${w}`);
  } else {
    lines.push('  no configuration files in the backup: nothing patched');
  }
  // guest paths (unread files, overlaps) and configuration values reach the terminal: no control characters
  return `${lines.map(sanitizeForTerminal).join('\n')}\n`;
}

/** A one-line live status on a terminal (stderr), nothing otherwise. */
function liveLine(enabled: boolean): { update: (p: JobProgress) => void; clear: () => void } {
  if (!enabled) return { update: () => undefined, clear: () => undefined };
  let shown = false;
  return {
    update: (p) => {
      const pct = p.bytesTotal ? ` ${Math.floor((100 * p.bytesDone) / p.bytesTotal)}%` : '';
      const text = sanitizeForTerminal(
        `restore-vm: ${p.phase}${pct} ${humanBytes(p.bytesDone)}${p.current ? ` ${p.current}` : ''}`,
      );
      const cols = process.stderr.columns || 80;
      process.stderr.write(`\r\x1b[K${text.slice(0, cols - 1)}`);
      shown = true;
    },
    clear: () => {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

export async function cmdRestoreVm(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      to: { type: 'string' },
      name: { type: 'string' },
      'datastore-map': { type: 'string', multiple: true, default: [] },
      format: { type: 'string' },
      'keep-identity': { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      overwrite: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const [ref] = positionals;
  if (!ref) throw new UsageError('restore-vm needs a backup (id, VM name or VM~N)');
  if (!values.to) throw new UsageError('restore-vm needs --to FOLDER');
  const format = values.format ?? 'vmdk-sparse';
  if (!isDiskFormat(format)) throw new UsageError(`--format is one of ${DISK_FORMATS.join(', ')}, not '${format}'`);
  const datastoreMap = parseMap(values['datastore-map'] ?? []);
  const { dryRunRestoreVm, restoreVm } = await import('../restore-vm/restore-vm.js');
  const repo = openRepo(repoPath(values.repo), { readonly: true });
  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const live = liveLine(!values.json && process.stderr.isTTY === true);
  try {
    const backup = resolveBackup(repo.catalog, ref);
    const opts = {
      to: values.to,
      name: values.name,
      datastoreMap,
      format,
      keepIdentity: values['keep-identity'] ?? false,
      overwrite: values.overwrite ?? false,
      signal: ac.signal,
      onProgress: live.update,
    };
    const r = values['dry-run']
      ? await dryRunRestoreVm(repo.catalog, repo.target, backup, opts)
      : await restoreVm(repo.catalog, repo.target, backup, opts);
    live.clear();
    await writeOut(values.json ? `${JSON.stringify(r)}\n` : summary(r));
    return r.status === 'incomplete' ? 1 : 0;
  } catch (e) {
    live.clear();
    if (!isVdbakError(e)) throw e;
    const field = typeof e.details.field === 'string' ? e.details.field : undefined;
    const failed = { status: 'failed', error: { code: e.code, message: e.message, file: e.image, field } };
    if (values.json) await writeOut(`${JSON.stringify(failed)}\n`);
    else {
      process.stderr.write(
        `vdbak: restore-vm failed: ${sanitizeForTerminal(e.message)}${field ? ` (field ${sanitizeForTerminal(field)})` : ''}\n`,
      );
    }
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    repo.close();
  }
}
