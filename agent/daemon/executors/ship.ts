/**
 * `ship` jobs, and the ship after a backup: a consistent copy of the catalog
 * to the target, keeping the config's last N copies (agent/ship/ship.ts).
 */
import { isVdbakError } from '../../../parsers/errors.js';
import { shipCatalog, type ShipResult } from '../../ship/ship.js';
import { type Executor, type JobContext, throwIfCancelled } from './context.js';

export const runShip: Executor = async (ctx) => {
  throwIfCancelled(ctx);
  ctx.progress({ phase: 'shipping the catalog', bytesDone: 0 });
  const r = await ctx.shipLock(() => shipCatalog(ctx.repo, { keep: ctx.config.ship.keep }));
  ctx.log.info({ object: r.dataObject, kept: r.kept, deleted: r.deleted.length }, 'catalog shipped');
  return r;
};

/**
 * After a backup: the backup is committed already, so a failed ship is a
 * warning in the log, not a failed job; the next ship tries again.
 */
export async function shipAfterBackupJob(ctx: JobContext): Promise<ShipResult | undefined> {
  if (!ctx.config.ship.afterBackup) return undefined;
  try {
    ctx.progress({ phase: 'shipping the catalog', bytesDone: 0 });
    const r = await ctx.shipLock(() => shipCatalog(ctx.repo, { keep: ctx.config.ship.keep }));
    ctx.log.info({ object: r.dataObject, kept: r.kept }, 'catalog shipped after the backup');
    return r;
  } catch (e) {
    const msg = isVdbakError(e) || e instanceof Error ? e.message : String(e);
    ctx.log.warn({ err: msg }, 'the backup is complete, but shipping the catalog failed; the next ship tries again');
    return undefined;
  }
}
