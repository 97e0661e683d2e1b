/**
 * The job runner: takes jobs from the persistent queue (catalog/jobs.ts) and
 * runs them, restores first.
 *
 * Slots and conflicts (`mayStart`):
 * - restores: up to MAX_RESTORES at once, beside anything else;
 * - the writer slot: one of backup / forget / prune at a time, each holding
 *   the repository lock for its duration (a CLI writer meanwhile gets
 *   "busy: the vdbak daemon's job N");
 * - the maintenance slot: one of check / ship. A check reads through its own
 *   connection and may run beside a backup, but not beside forget/prune
 *   (packs vanish under it); a ship copies the shared connection, so it waits
 *   for no writer to run (a backup's open batch would stall the copy).
 *   Maintenance jobs share the daemon's repository lock with a writer job
 *   (taken by whichever starts first, released by the last one).
 *
 * Restores outrank backups: every backup reads through a token bucket (the
 * datastore's ThrottleLoop bucket, or a private unlimited one when the
 * throttle gives none), and while any restore runs (a job, or a download the
 * API streams through `foreground`) every running backup's bucket is held:
 * its workers stop taking reads until the last restore ends. Holds nest.
 *
 * Cancel: each running job has an AbortController; a cancel request in the
 * catalog (JobQueue.cancel, from the API or another process) is polled every
 * POLL_MS and aborts it; the job ends 'cancelled'. stop() aborts everything
 * and puts interrupted jobs back in the queue: they run again at the next
 * start (a backup from its beginning; what it stored is adopted, not resent).
 *
 * Progress is kept in memory and written to the catalog at most every
 * PROGRESS_EVERY_MS per job, from the runner's own timer (never from inside
 * a caller's transaction).
 */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { JobStore } from '../../catalog/jobs.js';
import { isVdbakError } from '../../parsers/errors.js';
import { type BackupPool, createPool, defaultThreads } from '../backup/pool.js';
import type { DaemonConfig } from '../config/types.js';
import { lockRepo, processAlive, type Repo } from '../repo.js';
import type { VmSource } from '../source/resolve.js';
import { type BucketStats, TokenBucket } from '../throttle/bucket.js';
import type { ThrottleLoop } from '../throttle/loop.js';
import { type JobContext, JobFailedWithResult } from './executors/context.js';
import { EXECUTORS } from './executors/index.js';
import { jobLogger } from './logger.js';
import type { JobError, JobKind, JobProgress, JobRow } from './types.js';
import { isInside } from '../paths.js';

/** Restores running at once. */
export const MAX_RESTORES = 2;
/** How often cancel requests are polled, progress flushed and the queue looked at. */
export const POLL_MS = 500;
/** A job's progress reaches the catalog at most this often. */
export const PROGRESS_EVERY_MS = 1000;
/** The rate of a backup's private bucket when the throttle gives it none: never limits, but can be held. */
export const UNLIMITED_RATE = 2 ** 50;
/** stop(x) takes x as an epoch time when it is this large, else as milliseconds from now. */
const EPOCH_THRESHOLD_MS = 1e12;

/** Kinds that run in the restore slots and pause backups' reads while they run. */
const RESTORE_KINDS: readonly JobKind[] = ['restore', 'restore-vm', 'plan'];
const WRITER_KINDS: readonly JobKind[] = ['backup', 'forget', 'prune'];
const MAINT_KINDS: readonly JobKind[] = ['check', 'ship'];
/** Kinds that hold the repository lock while they run. */
const LOCKING_KINDS: ReadonlySet<JobKind> = new Set(['backup', 'forget', 'prune', 'check', 'ship']);

export interface JobEvent {
  type: 'start' | 'end';
  job: JobRow;
}

export interface RunnerOptions {
  repo: Repo;
  /** The current config (swapped on SIGHUP; each job takes the one current when it starts). */
  config: () => DaemonConfig;
  jobs: JobStore;
  log: Logger;
  /** Where the VM with this identity is now (discovery). */
  locate: (identity: string) => VmSource | undefined;
  /**
   * The throttle loop of a datastore (by name), if the daemon runs one. The
   * runner closes its bucket when the backup reading through it is aborted
   * (cancel, stop): a loop serves one backup session.
   */
  throttleFor: (datastore: string | undefined) => ThrottleLoop | undefined;
  /** Is a job's recorded process alive (default: processAlive)? */
  isAlive?: (pid: number, host: string) => boolean;
  /** Called when a job has started (its holds in place) and when it has ended (status, tests). */
  onJobEvent?: (e: JobEvent) => void;
  pollMs?: number;
  /**
   * The backup worker pool to share (tests). Default: each backup job gets its
   * own, started on its first read and closed when it ends: workers keep open
   * disks between tasks, and a disk image replaced at the same path between
   * two backups must not be read through a stale handle (nor memory kept
   * between nightly runs).
   */
  pool?: BackupPool;
}

interface Running {
  job: JobRow;
  ac: AbortController;
  log: Logger;
  done?: Promise<void>;
  progress?: JobProgress;
  progressDirty: boolean;
  progressFlushedMs: number;
  cancelled: boolean;
  /** The bucket a backup reads through, and the runner's hold on it while restores run. */
  bucket?: { bucket: TokenBucket; own: boolean; hold?: () => void };
  releaseLock?: () => void;
  releaseRestoreHold?: () => void;
  /** A backup's worker pool (unless one is shared). */
  pool?: BackupPool;
}

function describe(e: unknown): JobError {
  if (isVdbakError(e)) return { code: e.code, message: e.message };
  const code = (e as { code?: unknown } | undefined)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return { code: typeof code === 'string' && code ? code : 'JOB_FAILED', message };
}

function isCancel(e: unknown): boolean {
  return isVdbakError(e) && e.kind === 'CancelledError';
}

export class Runner {
  private readonly runningJobs = new Map<number, Running>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private started = false;
  private stopping = false;
  private restoreHolds = 0;
  private lockHolders = 0;
  private releaseRepoLock: (() => void) | undefined;
  private shipChain: Promise<unknown> = Promise.resolve();
  private readonly isAlive: (pid: number, host: string) => boolean;
  private readonly pollMs: number;

  constructor(private readonly opts: RunnerOptions) {
    this.isAlive = opts.isAlive ?? processAlive;
    this.pollMs = opts.pollMs ?? POLL_MS;
  }

  /** Puts jobs a dead daemon left running back in the queue and starts taking jobs. */
  start(): this {
    if (this.started) return this;
    this.started = true;
    const r = this.opts.jobs.requeueInterrupted(this.isAlive);
    if (r.requeued.length) this.opts.log.info({ jobs: r.requeued }, 'interrupted jobs queued again');
    if (r.failed.length) this.opts.log.warn({ jobs: r.failed }, 'jobs interrupted too often were failed');
    this.timer = setInterval(() => this.tick(), this.pollMs);
    this.timer.unref();
    // jobs submitted or cancelled through this process's store act at once; others at the next poll
    this.unsubscribe = this.opts.jobs.subscribe((e) => {
      if (e.type === 'submit') this.wake();
      else queueMicrotask(() => this.checkCancels());
    });
    this.pump();
    return this;
  }

  /** A job was submitted: look at the queue now rather than at the next poll. */
  wake(): void {
    if (this.started && !this.stopping) queueMicrotask(() => this.pump());
  }

  /** The running jobs, with their latest progress. */
  running(): JobRow[] {
    return [...this.runningJobs.values()].map((r) => ({
      ...r.job,
      progress: r.progress ?? r.job.progress,
      cancelRequested: r.cancelled || r.job.cancelRequested,
    }));
  }

  /** The state of a running backup's read bucket (rate, holds, readers waiting), for status. */
  bucketOf(jobId: number): BucketStats | undefined {
    return this.runningJobs.get(jobId)?.bucket?.bucket.stats();
  }

  /**
   * Runs a restore that is not a job (the API streams a download): running
   * backups' reads are held until it ends.
   */
  async foreground<T>(fn: () => Promise<T>): Promise<T> {
    this.beginRestoreHold();
    try {
      return await fn();
    } finally {
      this.endRestoreHold();
    }
  }

  /**
   * Aborts every running job and waits for them until `deadline` (milliseconds
   * from now, or an epoch time); interrupted jobs go back to the queue. Jobs
   * still running at the deadline are queued again too (their late outcome is
   * ignored: the catalog says 'queued').
   */
  async stop(deadline: number): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    const until = deadline > EPOCH_THRESHOLD_MS ? deadline : Date.now() + Math.max(0, deadline);
    for (const r of this.runningJobs.values()) this.abort(r, 'the daemon is stopping');
    const all = Promise.allSettled([...this.runningJobs.values()].map((r) => r.done));
    let timeout: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((res) => {
        timeout = setTimeout(() => res(true), Math.max(0, until - Date.now()));
      }),
    ]);
    clearTimeout(timeout);
    if (late) {
      for (const r of this.runningJobs.values()) {
        this.opts.jobs.requeue(r.job.id);
        r.log.warn('still running at the stop deadline: queued again');
        r.bucket?.bucket.close();
        // its reads in flight end now (the workers are terminated); the catalog explains whatever they left
        if (r.pool && r.pool !== this.opts.pool) void r.pool.close().catch(() => undefined);
      }
      // the process is about to end: nothing may keep the repository locked
      this.releaseRepoLock?.();
      this.releaseRepoLock = undefined;
    }
  }

  // ---- the loop -------------------------------------------------------------------------------

  private tick(): void {
    for (const r of this.runningJobs.values()) this.flushProgress(r, false);
    this.checkCancels();
    this.pump();
  }

  private checkCancels(): void {
    for (const r of this.runningJobs.values()) {
      if (r.cancelled) continue;
      let requested = false;
      try {
        requested = this.opts.jobs.cancelRequested(r.job.id);
      } catch (e) {
        r.log.warn({ err: describe(e) }, 'could not read the cancel flag');
      }
      if (!requested) continue;
      r.cancelled = true;
      r.log.info('cancel requested');
      this.abort(r, `job ${r.job.id} was cancelled`);
    }
  }

  /**
   * Aborts a job. A backup notices at its next entry or finished read task,
   * so its bucket is opened for good: reads held for a restore or throttled
   * in flight end at once instead of at the held or throttled rate. A
   * datastore loop's bucket is closed too: one backup reads through it at a
   * time (one writer), and the daemon makes a new loop for the next backup
   * (bucketFor refuses a closed one).
   */
  private abort(r: Running, why: string): void {
    r.ac.abort(new Error(why));
    r.bucket?.bucket.close();
  }

  private kindsRunning(): Set<JobKind> {
    return new Set([...this.runningJobs.values()].map((r) => r.job.kind));
  }

  private count(kinds: readonly JobKind[]): number {
    let n = 0;
    for (const r of this.runningJobs.values()) if (kinds.includes(r.job.kind)) n++;
    return n;
  }

  /** May a job of `kind` start beside what runs now? */
  private mayStart(kind: JobKind): boolean {
    const running = this.kindsRunning();
    const any = (ks: readonly JobKind[]) => ks.some((k) => running.has(k));
    switch (kind) {
      case 'restore':
      case 'restore-vm':
      case 'plan':
        return this.count(RESTORE_KINDS) < MAX_RESTORES;
      case 'backup':
        return !any(WRITER_KINDS) && !running.has('ship');
      case 'forget':
      case 'prune':
        return !any(WRITER_KINDS) && !any(MAINT_KINDS);
      case 'check':
        return !any(MAINT_KINDS) && !running.has('forget') && !running.has('prune');
      case 'ship':
        return !any(MAINT_KINDS) && !any(WRITER_KINDS);
    }
  }

  /** Starts every queued job that may start now, restores first, then by (priority, id). */
  private pump(): void {
    if (!this.started || this.stopping) return;
    for (;;) {
      const allowed = (Object.keys(EXECUTORS) as JobKind[]).filter((k) => this.mayStart(k));
      const restores = allowed.filter((k) => RESTORE_KINDS.includes(k));
      let job: JobRow | undefined;
      try {
        // restores first whatever their id; then the rest by (priority, id)
        job = this.opts.jobs.claim(restores);
        job ??= this.opts.jobs.claim(allowed.filter((k) => !RESTORE_KINDS.includes(k)));
      } catch (e) {
        this.opts.log.error({ err: describe(e) }, 'could not take a job from the queue');
        return;
      }
      if (!job) return;
      this.launch(job);
    }
  }

  private launch(job: JobRow): void {
    const r: Running = {
      job,
      ac: new AbortController(),
      log: jobLogger(this.opts.log, job),
      progressDirty: false,
      progressFlushedMs: 0,
      cancelled: false,
    };
    this.runningJobs.set(job.id, r);
    r.log.info({ params: job.params, origin: job.origin, attempt: job.attempts }, 'job started');
    r.done = this.execute(r).finally(() => {
      this.runningJobs.delete(job.id);
      this.pump();
    });
  }

  private async execute(r: Running): Promise<void> {
    const { job } = r;
    const config = this.opts.config();
    let outcome: 'done' | 'failed' | 'cancelled' | 'requeued' = 'failed';
    try {
      if (RESTORE_KINDS.includes(job.kind)) {
        this.beginRestoreHold();
        r.releaseRestoreHold = () => this.endRestoreHold();
      }
      if (LOCKING_KINDS.has(job.kind)) r.releaseLock = this.takeRepoLock(job);
      this.opts.onJobEvent?.({ type: 'start', job });
      const result = await EXECUTORS[job.kind](this.contextFor(r, config));
      this.flushProgress(r, true);
      outcome = this.opts.jobs.finish(job.id, result) ? 'done' : 'requeued';
      r.log.info(outcome === 'done' ? 'job done' : 'job done after it was given up; its outcome is dropped');
    } catch (e) {
      this.flushProgress(r, true);
      // whatever it threw, a job aborted by the stop (not cancelled by someone) runs again at the next start
      if (r.ac.signal.aborted && this.stopping && !r.cancelled) {
        this.opts.jobs.requeue(job.id);
        outcome = 'requeued';
        r.log.info({ err: describe(e) }, 'interrupted by the stop: queued again');
      } else if (r.cancelled || isCancel(e)) {
        this.opts.jobs.markCancelled(job.id, describe(e).message);
        outcome = 'cancelled';
        r.log.info('job cancelled');
      } else {
        const error = describe(e);
        this.opts.jobs.fail(job.id, error, e instanceof JobFailedWithResult ? e.result : undefined);
        outcome = 'failed';
        r.log.error({ err: error }, 'job failed');
      }
    } finally {
      r.releaseRestoreHold?.();
      r.releaseLock?.();
      if (r.bucket) {
        r.bucket.hold?.();
        if (r.bucket.own) r.bucket.bucket.close();
      }
      if (r.pool && r.pool !== this.opts.pool) {
        await r.pool.close().catch((e: unknown) => r.log.warn({ err: describe(e) }, 'closing the worker pool failed'));
      }
      this.opts.onJobEvent?.({ type: 'end', job: this.opts.jobs.get(job.id) ?? { ...job } });
      r.log.debug({ outcome }, 'job ended');
    }
  }

  private contextFor(r: Running, config: DaemonConfig): JobContext {
    return {
      job: r.job,
      repo: this.opts.repo,
      config,
      signal: r.ac.signal,
      log: r.log,
      progress: (p) => {
        r.progress = { ...p, updatedMs: Date.now() };
        r.progressDirty = true;
      },
      pool: () => (r.pool ??= this.opts.pool ?? createPool(config.threads ?? defaultThreads())),
      locate: (identity) => this.opts.locate(identity),
      bucketFor: (source) => this.bucketFor(r, source, config),
      shipLock: (fn) => {
        const next = this.shipChain.then(fn, fn);
        this.shipChain = next.catch(() => undefined);
        return next;
      },
    };
  }

  private flushProgress(r: Running, force: boolean): void {
    if (!r.progressDirty || !r.progress) return;
    const now = Date.now();
    if (!force && now - r.progressFlushedMs < PROGRESS_EVERY_MS) return;
    try {
      this.opts.jobs.setProgress(r.job.id, r.progress);
      r.progressDirty = false;
      r.progressFlushedMs = now;
    } catch (e) {
      r.log.warn({ err: describe(e) }, 'could not record progress');
    }
  }

  // ---- restores outrank backups ----------------------------------------------------------------

  private bucketFor(r: Running, source: VmSource, config: DaemonConfig): TokenBucket {
    if (r.bucket) return r.bucket.bucket;
    const ds = config.datastores.find((d) => isInside(resolve(source.folder), resolve(d.path)));
    let loop = this.opts.throttleFor(ds?.name);
    if (loop?.bucket.stats().closed) {
      r.log.warn({ datastore: ds?.name }, 'the datastore throttle loop is stopped: this backup reads unthrottled');
      loop = undefined;
    }
    const bucket = loop?.bucket ?? TokenBucket.create(UNLIMITED_RATE);
    r.bucket = { bucket, own: !loop };
    if (this.restoreHolds > 0) r.bucket.hold = bucket.hold();
    r.log.debug({ datastore: ds?.name, throttled: !!loop }, 'backup reads through its bucket');
    return bucket;
  }

  private beginRestoreHold(): void {
    if (this.restoreHolds++ > 0) return;
    for (const r of this.runningJobs.values()) {
      if (r.bucket && !r.bucket.hold) {
        r.bucket.hold = r.bucket.bucket.hold();
        r.log.info('reads paused: a restore runs');
      }
    }
  }

  private endRestoreHold(): void {
    if (--this.restoreHolds > 0) return;
    for (const r of this.runningJobs.values()) {
      if (r.bucket?.hold) {
        r.bucket.hold();
        r.bucket.hold = undefined;
        r.log.info('reads resumed: no restore runs');
      }
    }
  }

  // ---- the repository lock --------------------------------------------------------------------

  /** The daemon holds the repository lock while any of its locking jobs runs; it names the first. */
  private takeRepoLock(job: JobRow): () => void {
    if (this.lockHolders === 0) {
      this.releaseRepoLock = lockRepo(this.opts.repo.root, `the vdbak daemon's job ${job.id} (${job.kind})`);
    }
    this.lockHolders++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.lockHolders === 0) {
        this.releaseRepoLock?.();
        this.releaseRepoLock = undefined;
      }
    };
  }
}
