/**
 * Shipping after a backup: the backup command calls this once its backups
 * are done (it still holds the repository lock). The backup has already
 * committed, so a failed ship does not fail it: the failure is a warning on
 * stderr and the next ship (after the next backup, or `vdbak ship-catalog`)
 * tries again.
 *
 * VDBAK_SHIP_KEEP sets how many copies are kept (default 7);
 * VDBAK_SHIP_AFTER_BACKUP=0 turns shipping after backups off (the daemon's
 * config will own both once it exists).
 */
import { isVdbakError } from '../../parsers/errors.js';
import type { Repo } from '../repo.js';
import { DEFAULT_KEEP, shipCatalog, type ShipResult } from './ship.js';

export async function shipAfterBackup(
  repo: Repo,
  warn: (line: string) => void = (l) => process.stderr.write(l),
): Promise<ShipResult | undefined> {
  if (process.env.VDBAK_SHIP_AFTER_BACKUP === '0') return undefined;
  const keepEnv = process.env.VDBAK_SHIP_KEEP;
  const keep = keepEnv === undefined ? DEFAULT_KEEP : Number(keepEnv);
  try {
    return await shipCatalog(repo, { keep });
  } catch (e) {
    const msg = isVdbakError(e) || e instanceof RangeError ? e.message : String(e);
    warn(`vdbak: warning: the backup is complete, but shipping the catalog to the target failed: ${msg}\n`);
    return undefined;
  }
}
