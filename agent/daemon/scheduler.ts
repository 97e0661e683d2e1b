/**
 * The scheduler: one node-cron task per configured schedule. When a schedule
 * fires it submits jobs to the persistent queue (the runner executes them):
 * a backup schedule one backup job per VM discovery finds in its datastores
 * (or its listed VMs); ship, forget, prune and check schedules one job.
 *
 * - Outside its window a fire is skipped (and logged).
 * - A job never overlaps itself: a maintenance schedule whose previous job is
 *   still queued or running skips; a backup schedule skips the VMs whose
 *   backup is still queued or running (whoever asked for it) and submits the rest.
 * - Every fire is remembered in the catalog (schedule_runs). At start-up a run
 *   missed while the daemon was down (the schedule's latest time before now is
 *   after its last fire) runs once, if now is inside its window. A schedule that
 *   never fired has nothing to make up: it first runs at its first time.
 * - reload() swaps the schedules; jobs already queued or running are not touched.
 * - node-cron drops a slot its timer reaches too late (a blocked main thread,
 *   a suspended machine); such a slot still fires, late and once.
 */
import { createTask, type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { Catalog } from '../../catalog/catalog.js';
import type { ScheduleConfig, ScheduleKind } from '../config/types.js';
import { cronSpec, type CronSpec, insideWindow, nextRunMs, previousRunMs } from './cron.js';
import type { JobKind, JobParams, JobQueue, JobRow, ScheduleStatus } from './types.js';

/** The last fire of a schedule, as the catalog keeps it. */
export interface ScheduleRun {
  lastFireMs: number;
  lastJobId?: number;
}

export interface ScheduleRunStore {
  get(name: string): ScheduleRun | undefined;
  /** `jobId` undefined keeps the last job (a skipped fire submits none). */
  record(name: string, fireMs: number, jobId?: number): void;
}

/** A VM as discovery found it (present now). */
export interface ScheduledVm {
  identity: string;
  name: string;
  /** The datastore's name. */
  datastore: string;
}

export interface SchedulerDeps {
  jobs: Pick<JobQueue, 'submit' | 'list' | 'get'>;
  runs: ScheduleRunStore;
  /** Discovery: runs before each backup schedule's jobs are made. */
  discover(): ScheduledVm[] | Promise<ScheduledVm[]>;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Called with the jobs a fire submitted (the runner wakes up). */
  onSubmit?(jobs: JobRow[]): void;
  now?: () => number;
  /** IANA zone for cron and windows (tests: 'UTC'); default the process's local time. */
  timezone?: string;
  /** false: no node-cron timers (tests call fire() and catchUp() themselves). */
  timers?: boolean;
  /** How late node-cron's timer may be and still run a slot itself (default MISSED_TOLERANCE_MS). */
  missedToleranceMs?: number;
}

/** 'late': node-cron's timer came too late for the slot (a busy thread): it fires anyway, once. */
export type FireReason = 'cron' | 'catch-up' | 'late';

export interface FireOutcome {
  schedule: string;
  /** The scheduled time of this fire. */
  atMs: number;
  reason: FireReason;
  submitted: JobRow[];
  /** Why nothing (or not everything) was submitted. */
  skipped?: string;
}

const OPEN_STATES = ['queued', 'running'] as const;
/** How late node-cron's timer may be and still run a slot itself (beyond it, `late` fires it). */
export const MISSED_TOLERANCE_MS = 60_000;

interface Entry {
  config: ScheduleConfig;
  spec: CronSpec;
  task?: ScheduledTask;
}

const JOB_KIND: Readonly<Record<ScheduleKind, JobKind>> = {
  backup: 'backup',
  ship: 'ship',
  forget: 'forget',
  prune: 'prune',
  check: 'check',
};

export const scheduleOrigin = (name: string): string => `schedule:${name}`;

/** The params of a maintenance schedule's job. */
function maintenanceParams(s: ScheduleConfig): JobParams {
  switch (s.kind) {
    case 'check':
      return s.readData ? { readData: true } : {};
    case 'forget':
      return s.prune ? { prune: true } : {};
    default:
      return {};
  }
}

/** The VMs a backup schedule covers, among those discovery found. */
export function vmsForSchedule(s: ScheduleConfig, found: readonly ScheduledVm[]): ScheduledVm[] {
  const stores = s.datastores && s.datastores.length ? new Set(s.datastores) : undefined;
  const wanted = s.vms && s.vms.length ? new Set(s.vms) : undefined;
  return found.filter(
    (vm) => (!stores || stores.has(vm.datastore)) && (!wanted || wanted.has(vm.name) || wanted.has(vm.identity)),
  );
}

export class Scheduler {
  private entries = new Map<string, Entry>();
  /** Schedules whose fire is being worked out now (discovery is async): a second fire of one skips. */
  private readonly firing = new Set<string>();
  /** Slots node-cron dropped, by schedule, waiting for their one late fire. */
  private readonly lateSlots = new Map<string, number>();
  /** The latest slot each schedule fired for (a dropped slot older than it needs no late fire). */
  private readonly lastSlot = new Map<string, number>();
  private readonly now: () => number;
  private stopped = false;

  constructor(
    schedules: readonly ScheduleConfig[],
    private readonly deps: SchedulerDeps,
  ) {
    this.now = deps.now ?? Date.now;
    this.entries = this.build(schedules);
  }

  /** Makes up missed runs, then starts the timers. */
  async start(): Promise<FireOutcome[]> {
    const outcomes = await this.catchUp(this.now());
    if (!this.stopped) for (const e of this.entries.values()) this.arm(e);
    return outcomes;
  }

  /** Replaces the schedules (SIGHUP): new timers, nothing running is touched. */
  reload(schedules: readonly ScheduleConfig[]): void {
    const next = this.build(schedules);
    this.disarm();
    this.entries = next;
    if (!this.stopped && this.deps.timers !== false) for (const e of next.values()) this.arm(e);
    this.deps.log.info({ schedules: [...next.keys()] }, 'schedules reloaded');
  }

  stop(): void {
    this.stopped = true;
    this.disarm();
  }

  /** Missed runs, each made up once (only inside its window). */
  async catchUp(nowMs: number): Promise<FireOutcome[]> {
    const out: FireOutcome[] = [];
    for (const e of [...this.entries.values()]) {
      const last = this.deps.runs.get(e.config.name);
      if (!last) continue;
      const missed = previousRunMs(e.spec, nowMs);
      if (missed === undefined || missed <= last.lastFireMs) continue;
      if (e.config.window && !insideWindow(e.config.window, e.spec.wall(nowMs))) {
        this.deps.log.info(
          { schedule: e.config.name, missedMs: missed, window: e.config.window },
          'missed run not made up: outside its window',
        );
        continue;
      }
      this.deps.log.info({ schedule: e.config.name, missedMs: missed }, 'making up a run missed while down');
      out.push(await this.fire(e.config.name, nowMs, 'catch-up'));
    }
    return out;
  }

  /** One fire of a schedule at (scheduled) time `atMs`. */
  async fire(name: string, atMs: number, reason: FireReason = 'cron'): Promise<FireOutcome> {
    const e = this.entries.get(name);
    const outcome: FireOutcome = { schedule: name, atMs, reason, submitted: [] };
    this.lastSlot.set(name, Math.max(this.lastSlot.get(name) ?? atMs, atMs));
    if (!e || this.stopped) return { ...outcome, skipped: 'the schedule is gone' };
    const s = e.config;
    const log = { schedule: name, kind: s.kind, reason };
    if (s.window && !insideWindow(s.window, e.spec.wall(atMs))) {
      this.deps.log.info({ ...log, window: s.window }, 'schedule fired outside its window: skipped');
      this.deps.runs.record(name, atMs);
      return { ...outcome, skipped: `outside its window ${s.window.start}-${s.window.end}` };
    }
    if (this.firing.has(name)) {
      this.deps.log.warn(log, 'schedule fired while its previous fire is still being worked out: skipped');
      return { ...outcome, skipped: 'the previous fire is still being worked out' };
    }
    this.firing.add(name);
    try {
      const submitted = s.kind === 'backup' ? await this.fireBackup(s, outcome) : this.fireMaintenance(s, outcome);
      outcome.submitted = submitted;
      this.deps.runs.record(name, atMs, submitted.at(-1)?.id);
      if (submitted.length) {
        this.deps.log.info({ ...log, jobs: submitted.map((j) => j.id) }, 'schedule fired: jobs queued');
        this.deps.onSubmit?.(submitted);
      } else {
        this.deps.log.info({ ...log, why: outcome.skipped }, 'schedule fired: nothing to do');
      }
      return outcome;
    } catch (err) {
      this.deps.log.error({ ...log, err }, 'schedule fire failed');
      return { ...outcome, skipped: `failed: ${(err as Error).message}` };
    } finally {
      this.firing.delete(name);
    }
  }

  status(nowMs = this.now()): ScheduleStatus[] {
    return [...this.entries.values()].map((e) => {
      const st: ScheduleStatus = { name: e.config.name, kind: e.config.kind, cron: e.config.cron };
      const next = nextRunMs(e.spec, nowMs);
      if (next !== undefined) st.nextRunMs = next;
      const run = this.deps.runs.get(e.config.name);
      if (run) {
        st.lastFireMs = run.lastFireMs;
        const job = run.lastJobId !== undefined ? this.deps.jobs.get(run.lastJobId) : undefined;
        if (job) st.lastJob = { id: job.id, state: job.state };
      }
      return st;
    });
  }

  private fireMaintenance(s: ScheduleConfig, outcome: FireOutcome): JobRow[] {
    const kind = JOB_KIND[s.kind];
    const origin = scheduleOrigin(s.name);
    const open = this.deps.jobs.list({ state: [...OPEN_STATES], kind }).filter((j) => j.origin === origin);
    if (open.length) {
      outcome.skipped = `job ${open[0]!.id} of this schedule is still ${open[0]!.state}`;
      return [];
    }
    return [this.deps.jobs.submit(kind, maintenanceParams(s), origin)];
  }

  private async fireBackup(s: ScheduleConfig, outcome: FireOutcome): Promise<JobRow[]> {
    const vms = vmsForSchedule(s, await this.deps.discover());
    if (!vms.length) {
      outcome.skipped = 'no VM found for this schedule';
      return [];
    }
    const busy = new Set(
      this.deps.jobs
        .list({ state: [...OPEN_STATES], kind: 'backup' })
        .map((j) => (j.params as { vm?: string }).vm)
        .filter((vm): vm is string => typeof vm === 'string'),
    );
    const origin = scheduleOrigin(s.name);
    const submitted: JobRow[] = [];
    const skipped: string[] = [];
    for (const vm of vms) {
      if (busy.has(vm.identity)) skipped.push(vm.name);
      else submitted.push(this.deps.jobs.submit('backup', { vm: vm.identity }, origin));
    }
    if (skipped.length) outcome.skipped = `a backup of ${skipped.join(', ')} is still queued or running`;
    return submitted;
  }

  private build(schedules: readonly ScheduleConfig[]): Map<string, Entry> {
    const m = new Map<string, Entry>();
    for (const s of schedules) m.set(s.name, { config: s, spec: cronSpec(s.cron, this.deps.timezone) });
    return m;
  }

  private arm(e: Entry): void {
    if (this.deps.timers === false || e.task) return;
    const name = e.config.name;
    e.task = createTask(
      e.config.cron,
      (ctx) => {
        void this.fire(name, ctx.date.getTime(), 'cron');
      },
      {
        timezone: this.deps.timezone,
        name: `vdbak:${name}`,
        suppressMissedWarning: true,
        missedExecutionTolerance: this.deps.missedToleranceMs ?? MISSED_TOLERANCE_MS,
      },
    );
    // node-cron drops a slot its timer reached too late (the main thread was busy, the machine slept):
    // a nightly backup must not vanish for that, so the latest dropped slot fires late, once
    e.task.on('execution:missed', (ctx) => this.late(name, ctx.date.getTime()));
    void e.task.start();
  }

  /** Coalesces the slots node-cron dropped while the thread was blocked into one fire of the latest. */
  private late(name: string, slotMs: number): void {
    const pending = this.lateSlots.get(name);
    this.lateSlots.set(name, Math.max(pending ?? slotMs, slotMs));
    if (pending !== undefined) return;
    setImmediate(() => {
      const slot = this.lateSlots.get(name);
      this.lateSlots.delete(name);
      if (slot === undefined || this.stopped || (this.lastSlot.get(name) ?? -Infinity) >= slot) return;
      this.deps.log.warn({ schedule: name, slotMs: slot, lateMs: this.now() - slot }, 'schedule fired late');
      void this.fire(name, slot, 'late');
    });
  }

  private disarm(): void {
    for (const e of this.entries.values()) {
      if (e.task) void e.task.destroy();
      e.task = undefined;
      e.spec.dispose();
    }
  }
}

/** schedule_runs in the catalog (the daemon is its one writer). */
export function catalogScheduleRuns(cat: Catalog): ScheduleRunStore {
  const getStmt = cat.db.prepare('SELECT last_fire_ms, last_job_id FROM schedule_runs WHERE name = ?');
  const putStmt = cat.db.prepare(
    `INSERT INTO schedule_runs (name, last_fire_ms, last_job_id) VALUES (?, ?, ?)
     ON CONFLICT(name) DO UPDATE SET last_fire_ms = excluded.last_fire_ms,
       last_job_id = COALESCE(excluded.last_job_id, schedule_runs.last_job_id)`,
  );
  return {
    get(name) {
      // the catalog reads integers as BigInt
      const r = getStmt.get(name) as { last_fire_ms: bigint; last_job_id: bigint | null } | undefined;
      if (!r) return undefined;
      const run: ScheduleRun = { lastFireMs: Number(r.last_fire_ms) };
      if (r.last_job_id !== null) run.lastJobId = Number(r.last_job_id);
      return run;
    },
    record(name, fireMs, jobId) {
      // outside any batch a running backup holds open on this connection: its rollback must not take this row
      cat.writeOutsideBatch(() => putStmt.run(name, fireMs, jobId ?? null));
    },
  };
}
