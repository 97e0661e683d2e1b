/**
 * The contracts between the daemon's parts: the persistent job queue (in the
 * catalog), the runner that executes jobs, the scheduler, and the HTTP API.
 */
import type { Logger } from 'pino';
import type { DaemonConfig, ScheduleKind } from '../config/types.js';
import type { Repo } from '../repo.js';
import type { ThrottleStatus } from '../throttle/loop.js';

export type JobKind = 'restore' | 'restore-vm' | 'plan' | 'backup' | 'ship' | 'forget' | 'prune' | 'check';
export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

/** Lower runs first: restores, then backups, then maintenance. */
export const JOB_PRIORITY: Readonly<Record<JobKind, number>> = {
  restore: 0,
  'restore-vm': 0,
  plan: 0,
  backup: 1,
  ship: 2,
  forget: 2,
  prune: 2,
  check: 2,
};

export interface BackupJobParams {
  /** The VM's identity (catalog vms.identity), never its path: discovery finds where it is now. */
  vm: string;
}
export interface RestoreJobParams {
  /** A backup ref: an id, a VM name, VM~N. */
  backup: string;
  /** A path inside the backup (/dXpY/... or label-first). */
  path: string;
  /** A folder inside one of the configured restore roots. */
  to: string;
  overwrite?: boolean;
}
/** Whole-VM restore (issue 7): rebuilt disks + patched config files into `to` (inside a restore root). */
export interface RestoreVmJobParams {
  backup: string;
  to: string;
  name?: string;
  format?: 'vmdk-sparse' | 'vmdk-flat' | 'qcow2' | 'raw';
  datastoreMap?: { from: string; to: string }[];
  keepIdentity?: boolean;
}
/** Runs a recovery plan (issue 7 §4) into `to` (inside a restore root). */
export interface PlanJobParams {
  plan: string;
  to: string;
  format?: 'vmdk-sparse' | 'vmdk-flat' | 'qcow2' | 'raw';
  datastoreMap?: { from: string; to: string }[];
}
export interface CheckJobParams {
  readData?: boolean;
}
export interface ForgetJobParams {
  /** Only this VM (name or identity); default all. */
  vm?: string;
  prune?: boolean;
}
export type JobParams =
  | BackupJobParams
  | RestoreJobParams
  | RestoreVmJobParams
  | PlanJobParams
  | CheckJobParams
  | ForgetJobParams
  | Record<string, never>;

export interface JobProgress {
  /** What the job is doing now, in words. */
  phase: string;
  bytesDone: number;
  bytesTotal?: number;
  files?: number;
  /** The file or object being worked on. */
  current?: string;
  updatedMs: number;
}

export interface JobError {
  code: string;
  message: string;
}

export interface JobRow {
  id: number;
  kind: JobKind;
  priority: number;
  state: JobState;
  params: JobParams;
  /** 'api', 'cli', 'schedule:<name>', 'resume'. */
  origin: string;
  createdMs: number;
  startedMs?: number;
  finishedMs?: number;
  /** Times it was started (a job interrupted by a restart runs again). */
  attempts: number;
  cancelRequested: boolean;
  progress?: JobProgress;
  /** The job's outcome (BackupResult, RestoreReport, CheckReport, ...), JSON. */
  result?: unknown;
  error?: JobError;
}

export interface JobFilter {
  state?: JobState | JobState[];
  kind?: JobKind;
  limit?: number;
}

/** The persistent queue (catalog table `jobs`). */
export interface JobQueue {
  submit(kind: JobKind, params: JobParams, origin: string): JobRow;
  get(id: number): JobRow | undefined;
  /** Newest first. */
  list(filter?: JobFilter): JobRow[];
  /** A queued job is cancelled at once; a running one gets cancelRequested and stops at its next check. Undefined when no such job. */
  cancel(id: number): JobRow | undefined;
}

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
