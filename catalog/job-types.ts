/**
 * The job queue's types: what a job is (kind, params, state, progress) and the
 * queue's interface. They live with the queue (catalog/jobs.ts), below the
 * daemon that runs the jobs; agent/daemon/types.ts re-exports them for the
 * daemon's parts and the API.
 */
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
