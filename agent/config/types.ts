/**
 * The daemon's configuration, as the rest of the agent sees it: validated and
 * frozen once at start (agent/config/load.ts), then passed in. Nothing reads
 * the file or the environment after that, except a SIGHUP reload, which builds
 * a new frozen object and swaps it in between jobs.
 */
import type { ThrottleLimits } from '../throttle/controller.js';
import type { RetentionPolicy } from '../retention.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface DatastoreConfig {
  /** A short name (logs, API, schedules refer to it). */
  readonly name: string;
  /** An absolute folder; VMs are discovered below it and snapshot parents must lie in a datastore. */
  readonly path: string;
}

/** A time-of-day window, local time "HH:MM"; it wraps past midnight when end ≤ start. */
export interface TimeWindow {
  readonly start: string;
  readonly end: string;
}

export type ScheduleKind = 'backup' | 'ship' | 'forget' | 'prune' | 'check';

export interface ScheduleConfig {
  /** Unique; the catalog remembers when each schedule last fired (schedule_runs). */
  readonly name: string;
  readonly kind: ScheduleKind;
  /** A node-cron expression (5 or 6 fields), local time. */
  readonly cron: string;
  /** When set, a run only starts inside it, and a run missed while the daemon was down is made up at start-up only inside it. */
  readonly window?: TimeWindow;
  /** backup: datastore names to back up (default: all). */
  readonly datastores?: readonly string[];
  /** backup: VM names or identities (default: every VM discovered in those datastores). */
  readonly vms?: readonly string[];
  /** check: also read and verify every chunk. */
  readonly readData?: boolean;
  /** forget: prune right after. */
  readonly prune?: boolean;
}

export interface ApiConfig {
  /** host:port; loopback by default. */
  readonly listen: string;
  /** The bearer token every request must carry (from `token` or read from `tokenFile`). */
  readonly token: string;
}

export interface DaemonConfig {
  /** Where the config came from (the file path, or "embedded defaults"). */
  readonly source: string;
  /** The repository folder (catalog.db, lock, daemon state). */
  readonly repo: string;
  /** The backup target folder, used when the repository is created (init). */
  readonly target?: string;
  readonly datastores: readonly DatastoreConfig[];
  readonly schedules: readonly ScheduleConfig[];
  readonly retention: Readonly<RetentionPolicy>;
  /** enabled=false still installs the bucket (restores can pause backups) but never limits the rate. */
  readonly throttle: Readonly<Partial<ThrottleLimits>> & { readonly enabled: boolean };
  readonly api: ApiConfig;
  /** Folders a restore may write into (API and jobs); nothing is written elsewhere. */
  readonly restoreRoots: readonly string[];
  readonly log: { readonly level: LogLevel };
  /** Catalog copies kept on the target, and whether one is shipped after each backup. */
  readonly ship: { readonly keep: number; readonly afterBackup: boolean };
  /** Worker threads for backups (default: CPUs). */
  readonly threads?: number;
}
