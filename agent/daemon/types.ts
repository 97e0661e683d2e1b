/**
 * The contracts between the daemon's parts: the persistent job queue (in the
 * catalog), the runner that executes jobs, the scheduler, and the HTTP API.
 */
import type { Logger } from 'pino';
import type { DaemonConfig, ScheduleKind } from '../config/types.js';
import type { Repo } from '../repo.js';
import type { ThrottleStatus } from '../throttle/loop.js';
import type { JobQueue, JobRow, JobState } from '../../catalog/job-types.js';

export * from '../../catalog/job-types.js';

export interface ScheduleStatus {
  name: string;
  kind: ScheduleKind;
  cron: string;
  nextRunMs?: number;
  lastFireMs?: number;
  lastJob?: { id: number; state: JobState };
}

export interface DaemonStatus {
  pid: number;
  version: string;
  startedMs: number;
  configSource: string;
  /** One per datastore. */
  throttle: { datastore: string; status?: ThrottleStatus }[];
  schedules: ScheduleStatus[];
  running: JobRow[];
  queued: number;
  /** The last finished job of each kind. */
  lastResults: JobRow[];
}

/** What the HTTP API is given by the daemon. */
export interface DaemonContext {
  /** The current config (swapped on SIGHUP). */
  config(): DaemonConfig;
  /** The daemon's repository: its catalog connection is shared with the API (reads only). */
  readonly repo: Repo;
  readonly jobs: JobQueue;
  status(): DaemonStatus;
  /**
   * Runs a restore the API streams itself (a download): while `fn` runs, running
   * backups' reads pause (a restore is never slowed by a backup).
   */
  foreground<T>(fn: () => Promise<T>): Promise<T>;
  readonly log: Logger;
}
