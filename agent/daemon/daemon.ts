/**
 * `vdbak daemon`: the agent that lives on the controller. It loads the config,
 * opens (or creates) the repository and claims it (daemon.json), then runs
 * discovery, the job runner, the scheduler, a throttle loop per datastore
 * while backups run, and the HTTP API, until SIGTERM/SIGINT.
 *
 * SIGHUP reloads the config: a bad file is logged and the old config kept;
 * a good one is swapped in (jobs starting from then on see it), schedules are
 * replaced, VMs rediscovered, and the API restarted only if its address
 * changed. Running jobs are not touched; a running backup keeps its throttle
 * limits (the next one gets the new ones); log.level needs a restart.
 *
 * SIGTERM/SIGINT: no new work (scheduler and API stop), running jobs are
 * interrupted and queued again (they resume at the next start), the catalog's
 * WAL is folded in, daemon.json removed, exit 0 within STOP_BUDGET_MS.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { JobStore } from '../../catalog/jobs.js';
import { isVdbakError } from '../../parsers/errors.js';
import { type ApiServer, createApiServer } from '../api/server.js';
import { loadConfig } from '../config/load.js';
import type { DaemonConfig } from '../config/types.js';
import { CATALOG_FILE, initRepo, openRepo, type Repo } from '../repo.js';
import { formatRate } from '../throttle/controller.js';
import { ThrottleLoop } from '../throttle/loop.js';
import { VERSION } from '../version.js';
import { discoverVms, locateVm } from './discovery.js';
import { createLogger } from './logger.js';
import { Runner } from './runner.js';
import { catalogScheduleRuns, Scheduler, type ScheduledVm } from './scheduler.js';
import { claimDaemonState, type StateHandle } from './state.js';
import type { DaemonContext, DaemonStatus, JobQueue } from './types.js';

/** SIGTERM to exit: the issue asks for 10 s; jobs get STOP_JOBS_MS of it, the rest is cleanup. */
export const STOP_BUDGET_MS = 9_500;
export const STOP_JOBS_MS = 8_000;
/** The CLI's exit code for an internal error (cli.ts uses it too). */
const INTERNAL_ERROR_EXIT = 70;
/** Open API connections (a download) get this long to finish after a stop or an address change. */
const API_CLOSE_MS = 1_000;

/** "host:port" / "[v6]:port" → listen arguments (the config loader checked the form). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(listen);
  return { host: m?.[1] ?? m?.[2] ?? '127.0.0.1', port: Number(m?.[3] ?? 0) };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((res) => {
      t = setTimeout(() => res(undefined), ms);
      t.unref();
    }),
  ]).finally(() => clearTimeout(t));
}

/**
 * The throttle loops, one per datastore, running only while backups do (the
 * runner asks for a datastore's loop when a backup starts reading; the loops
 * stop when the last backup ends). A disabled throttle gives none: the runner
 * then reads through an unlimited bucket restores can still hold.
 */
class ThrottleLoops {
  private readonly loops = new Map<string, ThrottleLoop>();

  constructor(
    private readonly config: () => DaemonConfig,
    private readonly log: Logger,
  ) {}

  for(datastore: string | undefined): ThrottleLoop | undefined {
    const cfg = this.config();
    if (!cfg.throttle.enabled || datastore === undefined) return undefined;
    const ds = cfg.datastores.find((d) => d.name === datastore);
    if (!ds) return undefined;
    let loop = this.loops.get(ds.name);
    // the runner closes a loop's bucket when the backup reading through it is aborted: a new backup gets a new loop
    if (loop?.bucket.stats().closed) {
      loop.stop();
      loop = undefined;
    }
    if (!loop) {
      const { enabled: _enabled, ...limits } = cfg.throttle;
      const log = this.log.child({ datastore: ds.name });
      loop = new ThrottleLoop({
        paths: [ds.path],
        limits,
        onChange: (s) => log.info({ throttle: { mode: s.mode, rate: s.rate } }, `throttle ${s.mode}: ${s.reason}`),
      }).start();
      const st = loop.status();
      log.info({ devices: st.devices, notes: st.notes, rate: formatRate(st.rate) }, 'throttle started');
      this.loops.set(ds.name, loop);
    }
    return loop;
  }

  status(cfg: DaemonConfig): DaemonStatus['throttle'] {
    return cfg.datastores.map((d) => {
      const loop = this.loops.get(d.name);
      return loop ? { datastore: d.name, status: loop.status() } : { datastore: d.name };
    });
  }

  /** No backup reads any more: the loops stop (a new backup starts new ones, with the current limits). */
  stopAll(): void {
    for (const [name, loop] of this.loops) {
      loop.stop();
      this.log.debug({ datastore: name }, 'throttle stopped: no backup runs');
    }
    this.loops.clear();
  }
}

/** Runs the daemon until a stop signal; resolves with the exit code. */
export async function runDaemon(configPath: string | undefined): Promise<number> {
  let cfg: DaemonConfig;
  try {
    cfg = loadConfig(configPath);
  } catch (e) {
    process.stderr.write(`vdbak daemon: ${isVdbakError(e) ? e.message : String(e)}\n`);
    return 2;
  }
  mkdirSync(cfg.repo, { recursive: true });
  const state: StateHandle = claimDaemonState(cfg.repo, {
    startedMs: Date.now(),
    configSource: cfg.source,
    version: VERSION,
  });
  const log = createLogger({ level: cfg.log.level });
  let repo: Repo;
  try {
    if (!existsSync(join(cfg.repo, CATALOG_FILE))) {
      const s = initRepo(cfg.repo, { target: cfg.target });
      log.info({ repo: cfg.repo, target: s.targetPath }, 'repository created');
    }
    repo = openRepo(cfg.repo);
  } catch (e) {
    state.release();
    throw e;
  }
  let d: Daemon;
  try {
    d = new Daemon(configPath, cfg, repo, state, log);
  } catch (e) {
    repo.close();
    state.release();
    throw e;
  }
  return d.run();
}

class Daemon {
  private readonly jobs: JobStore;
  private readonly runner: Runner;
  private readonly scheduler: Scheduler;
  private readonly throttle: ThrottleLoops;
  private readonly ctx: DaemonContext;
  private readonly discoveryLog: Logger;
  private api: ApiServer | undefined;
  private stopping = false;
  private reloading: Promise<void> = Promise.resolve();
  private finished!: (code: number) => void;

  constructor(
    private readonly configPath: string | undefined,
    private cfg: DaemonConfig,
    private readonly repo: Repo,
    private readonly state: StateHandle,
    private readonly log: Logger,
  ) {
    this.jobs = new JobStore(repo.catalog);
    this.discoveryLog = log.child({ part: 'discovery' });
    this.throttle = new ThrottleLoops(() => this.cfg, log);
    this.runner = new Runner({
      repo,
      config: () => this.cfg,
      jobs: this.jobs,
      log,
      locate: (identity) => locateVm(repo.catalog, this.cfg.datastores, identity, this.discoveryLog),
      throttleFor: (ds) => this.throttle.for(ds),
      onJobEvent: (e) => {
        if (e.type === 'end' && e.job.kind === 'backup') this.maybeStopThrottle(e.job.id);
      },
    });
    this.scheduler = new Scheduler(cfg.schedules, {
      jobs: this.jobs,
      runs: catalogScheduleRuns(repo.catalog),
      discover: () => this.discover(),
      log: log.child({ part: 'scheduler' }),
      onSubmit: () => this.runner.wake(),
    });
    const jobs = this.jobs;
    const runner = this.runner;
    // jobs the API submits start at once rather than at the runner's next poll
    const queue: JobQueue = {
      submit: (kind, params, origin) => {
        const j = jobs.submit(kind, params, origin);
        runner.wake();
        return j;
      },
      get: (id) => jobs.get(id),
      list: (f) => jobs.list(f),
      cancel: (id) => jobs.cancel(id),
    };
    this.ctx = {
      config: () => this.cfg,
      repo,
      jobs: queue,
      status: () => this.status(),
      foreground: (fn) => runner.foreground(fn),
      log: log.child({ part: 'api' }),
    };
  }

  async run(): Promise<number> {
    const done = new Promise<number>((res) => {
      this.finished = res;
    });
    const onStop = (sig: NodeJS.Signals) => void this.stop(sig);
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', () => {
      this.reloading = this.reloading.then(() => this.reload());
    });
    // a bug must leave a line in the log, not only a stack on a console nobody reads; the jobs it ran resume at the next start
    const crash = (e: unknown) => {
      this.log.fatal({ err: e }, 'internal error: the daemon ends');
      this.state.release();
      this.log.flush(() => process.exit(INTERNAL_ERROR_EXIT));
    };
    process.on('uncaughtException', crash);
    process.on('unhandledRejection', crash);
    try {
      this.log.info(
        { version: VERSION, repo: this.cfg.repo, config: this.cfg.source, datastores: this.cfg.datastores.length },
        'daemon starting',
      );
      this.discoverLogged();
      this.runner.start();
      await this.startApi();
      const caught = await this.scheduler.start();
      for (const o of caught) this.log.info({ schedule: o.schedule, jobs: o.submitted.map((j) => j.id) }, 'caught up');
      this.log.info({ pid: process.pid, api: this.state.state.api }, 'daemon running');
    } catch (e) {
      this.log.fatal({ err: e }, 'daemon could not start');
      await this.stop('start failure', 1);
    }
    return done;
  }

  private status(): DaemonStatus {
    const cfg = this.cfg;
    return {
      pid: process.pid,
      version: VERSION,
      startedMs: this.state.state.startedMs,
      configSource: cfg.source,
      throttle: this.throttle.status(cfg),
      schedules: this.scheduler.status(),
      running: this.runner.running(),
      queued: this.jobs.queuedCount(),
      lastResults: this.jobs.lastResults(),
    };
  }

  /** Discovery over the configured datastores (the catalog tracks VMs by identity). */
  private discover(): ScheduledVm[] {
    const vms = discoverVms(this.repo.catalog, this.cfg.datastores, Date.now(), this.discoveryLog);
    this.log.debug({ vms: vms.length }, 'discovery done');
    return vms;
  }

  /** Discovery outside a schedule (start, reload): a failure is logged, the daemon goes on. */
  private discoverLogged(): void {
    try {
      this.discover();
    } catch (e) {
      this.log.error({ err: e }, 'discovery failed');
    }
  }

  private async startApi(): Promise<void> {
    const { host, port } = parseListen(this.cfg.api.listen);
    const api = createApiServer(this.ctx);
    const addr = await api.listen(host, port);
    this.api = api;
    this.state.update({ api: { host: addr.address, port: addr.port } });
    this.log.info({ api: `${addr.address}:${addr.port}` }, 'API listening');
  }

  private async reload(): Promise<void> {
    if (this.stopping) return;
    let next: DaemonConfig;
    try {
      next = loadConfig(this.configPath);
    } catch (e) {
      this.log.error(
        { err: isVdbakError(e) ? { code: e.code, message: e.message } : String(e) },
        'config reload refused: the old config stays in force',
      );
      return;
    }
    if (next.repo !== this.cfg.repo) {
      this.log.error(
        { repo: this.cfg.repo, asked: next.repo },
        'config reload refused: the repository cannot change while the daemon runs (restart it)',
      );
      return;
    }
    const old = this.cfg;
    this.cfg = next;
    this.state.update({ configSource: next.source });
    try {
      this.scheduler.reload(next.schedules);
      this.discoverLogged();
      if (next.api.listen !== old.api.listen) {
        const api = this.api;
        this.api = undefined;
        if (api) await withTimeout(api.close(), API_CLOSE_MS);
        await this.startApi();
      }
      if (next.log.level !== old.log.level) {
        // the parts hold child loggers made at start; a level half applied would mislead
        this.log.warn({ level: next.log.level }, 'log.level changes take effect at the next start');
      }
      this.log.info({ config: next.source, schedules: next.schedules.map((s) => s.name) }, 'config reloaded');
    } catch (e) {
      this.log.error({ err: e }, 'config reload incomplete');
    }
  }

  private maybeStopThrottle(endedJob: number): void {
    const stillReading = this.runner.running().some((j) => j.kind === 'backup' && j.id !== endedJob);
    if (!stillReading) this.throttle.stopAll();
  }

  private async stop(why: string, code = 0): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const deadline = Date.now() + STOP_BUDGET_MS;
    // whatever hangs, the process ends inside the budget: the jobs are back in the queue by then
    const hard = setTimeout(() => this.exit(code, 'stop budget spent: exiting anyway'), STOP_BUDGET_MS);
    hard.unref();
    this.log.info({ signal: why }, 'daemon stopping');
    try {
      this.scheduler.stop();
      const api = this.api;
      this.api = undefined;
      const jobs = this.runner.stop(Math.min(Date.now() + STOP_JOBS_MS, deadline - API_CLOSE_MS));
      // the jobs are aborted now; closing the buckets wakes workers asleep on a slow rate, so they see it at once
      this.throttle.stopAll();
      await Promise.all([api ? withTimeout(api.close(), API_CLOSE_MS) : undefined, jobs]);
      try {
        this.repo.catalog.checkpoint();
      } catch (e) {
        this.log.warn({ err: e }, 'catalog checkpoint failed (the WAL is folded in at the next start)');
      }
    } catch (e) {
      this.log.error({ err: e }, 'error while stopping');
    }
    this.exit(code, 'daemon stopped');
  }

  private exitedAlready = false;

  private exit(code: number, msg: string): void {
    if (this.exitedAlready) return;
    this.exitedAlready = true;
    this.log.info({ code }, msg);
    try {
      this.repo.close();
    } catch {
      // a statement still running in a job that missed the deadline: the process ends anyway
    }
    this.state.release();
    this.log.flush(() => this.finished(code));
  }
}
