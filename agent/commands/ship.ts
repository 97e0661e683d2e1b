/**
 * Catalog shipping and recovery commands: ship-catalog, recover.
 */
import { parseArgs } from 'node:util';
import { humanBytes } from '../format.js';
import { lockRepo, openRepo, repoPath } from '../repo.js';
import { recoverFromTarget, type RecoverResult } from '../ship/recover.js';
import { checkKeep, DEFAULT_KEEP, shipCatalog, type ShipResult } from '../ship/ship.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';

function shipText(r: ShipResult, location: string): string {
  const m = r.manifest;
  const lines = [
    `catalog shipped to ${location}/${r.dataObject}`,
    `  size      ${humanBytes(m.rawSize)} → ${humanBytes(m.compressedSize)} compressed (${m.frames.length} zstd frame(s))`,
    `  backups   ${m.backups.length} complete${m.newestBackupId !== null ? `, newest ${m.newestBackupId}` : ''} of ${m.vms.length} VM(s)`,
    `  copies    ${r.kept} kept${r.deleted.length ? `, ${r.deleted.length} old object(s) deleted` : ''}`,
  ];
  if (r.configWritten) lines.push(`  config    ${location}/config.json written`);
  return `${lines.join('\n')}\n`;
}

export async function cmdShipCatalog(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      repo: { type: 'string' },
      keep: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const keep = values.keep === undefined ? DEFAULT_KEEP : Number(values.keep);
  try {
    checkKeep(keep);
  } catch (e) {
    throw new UsageError(`--keep: ${(e as Error).message}`);
  }
  const root = repoPath(values.repo);
  const repo = openRepo(root);
  // the lock keeps a prune of old copies from racing another ship
  const release = lockRepo(root, 'ship-catalog');
  try {
    const r = await shipCatalog(repo, { keep });
    await writeOut(values.json ? `${JSON.stringify(r)}\n` : shipText(r, repo.target.location));
    return 0;
  } finally {
    release();
    repo.close();
  }
}

function recoverText(r: RecoverResult): string {
  const lines = [
    `recovered repository ${r.repo} from ${r.target}`,
    `  catalog copy   ${r.copy.name} (shipped ${r.copy.time} from ${r.copy.host})`,
  ];
  for (const s of r.skipped) lines.push(`  skipped copy   ${s.copy}: ${s.reason}`);
  const byVm = new Map<string, number[]>();
  for (const b of r.backups) byVm.set(b.vm, [...(byVm.get(b.vm) ?? []), b.id]);
  lines.push(`  backups        ${r.backups.length} recovered${r.backups.length ? ':' : ''}`);
  for (const [vm, ids] of byVm) lines.push(`    ${vm}: ${ids.join(', ')}`);
  if (r.reaped.length)
    lines.push(`  interrupted    backup(s) ${r.reaped.join(', ')} were running in the copy: marked failed`);
  lines.push(
    `  packs          ${r.adopted.packs} pack(s) newer than the copy recorded from their indexes (${r.adopted.chunks} chunks)`,
  );
  if (r.adopted.packs > 0 || r.lostBackups.length > 0) {
    lines.push(
      '  note           backups made after this copy are not recoverable: their file lists were only in the lost',
      '                 catalog. Their data is known again, so the next backups do not send it twice.',
    );
  }
  if (r.lostBackups.length) {
    lines.push(`  lost backups   ${r.lostBackups.map((b) => `${b.id} (${b.vm})`).join(', ')}`);
  }
  for (const w of r.warnings) lines.push(`  warning        ${w}`);
  lines.push(`next: vdbak backups --repo ${r.repo}; vdbak check --read-data --repo ${r.repo}`);
  return `${lines.join('\n')}\n`;
}

export async function cmdRecover(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'from-target': { type: 'string' },
      repo: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values['from-target']) throw new UsageError('recover needs --from-target PATH (the backup target folder)');
  const r = await recoverFromTarget(values['from-target'], repoPath(values.repo));
  await writeOut(values.json ? `${JSON.stringify(r)}\n` : recoverText(r));
  return 0;
}
