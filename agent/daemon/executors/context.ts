/**
 * What the runner hands each job's executor, and the typed errors they share.
 * One file per kind beside this one; `index.ts` maps a kind to its executor.
 */
import type { Logger } from 'pino';
import { errorsFor } from '../../../parsers/errors.js';
import type { BackupPool } from '../../backup/pool.js';
import type { DaemonConfig } from '../../config/types.js';
import type { Repo } from '../../repo.js';
import type { VmSource } from '../../source/resolve.js';
import type { TokenBucket } from '../../throttle/bucket.js';
import type { JobProgress, JobRow } from '../types.js';

export interface JobContext {
  readonly job: JobRow;
  /** The daemon's repository (its shared catalog connection: the one writer). */
  readonly repo: Repo;
  /** The config as it was when the job started (a SIGHUP swap does not change a running job). */
  readonly config: DaemonConfig;
  readonly signal: AbortSignal;
  /** The job's child logger (every line carries its id). */
  readonly log: Logger;
  /** Records progress; the runner writes it to the catalog at most about once a second. */
  progress(p: Omit<JobProgress, 'updatedMs'>): void;
  /** Backups: the shared worker pool. */
  readonly pool: () => BackupPool;
  /** Backups: where the VM with this identity is now (discovery). */
  readonly locate: (identity: string) => VmSource | undefined;
  /** Backups: the bucket the backup's reads take tokens from (the runner holds it while a restore runs). */
  readonly bucketFor: (source: VmSource) => TokenBucket;
  /** Shipping the catalog is serialized (keep-N deletes must not race another ship). */
  readonly shipLock: <T>(fn: () => Promise<T>) => Promise<T>;
}

export type Executor = (ctx: JobContext) => Promise<unknown>;

/**
 * The job ran to its end but did not achieve what it was for (a check that
 * found errors, a restore with failed files): the job is 'failed' with this
 * code, and `result` (the report) is kept with it.
 */
export class JobFailedWithResult extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly result: unknown,
  ) {
    super(message);
  }
}

export const jobErrors = (job: JobRow) => errorsFor({ image: `job ${job.id} (${job.kind})`, layer: 'job' });

/** Throws the job's CancelledError when its signal fired (loops call it between files, packs, VMs). */
export function throwIfCancelled(ctx: Pick<JobContext, 'job' | 'signal'>): void {
  if (!ctx.signal.aborted) return;
  const why = ctx.signal.reason instanceof Error ? ctx.signal.reason.message : 'cancelled';
  throw jobErrors(ctx.job).cancelled('JOB_CANCELLED', why);
}
