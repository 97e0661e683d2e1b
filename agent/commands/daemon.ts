/**
 * The daemon and the commands that talk to it: daemon, status, jobs, job,
 * cancel. When a daemon runs on the repository (daemon.json names a live
 * process) they go through its API with the bearer token; when none does,
 * status and jobs read the catalog and cancel changes it directly.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { JobStore } from '../../catalog/jobs.js';
import { ApiClient } from '../api/client.js';
import { loadConfig } from '../config/load.js';
import { TOKEN_FILE_NAME } from '../config/defaults.js';
import { tokenFromFile } from '../config/token.js';
import { Problems } from '../config/check.js';
import { type DaemonState, readDaemonState, runningDaemon } from '../daemon/state.js';
import type { DaemonStatus, JobFilter, JobKind, JobRow, JobState } from '../daemon/types.js';
import { JOB_PRIORITY } from '../daemon/types.js';
import { humanBytes } from '../format.js';
import { openRepo, repoPath } from '../repo.js';
import { formatRate } from '../throttle/controller.js';
import { writeOut } from '../stdout.js';
import { UsageError } from './usage.js';
import { errorsFor, isVdbakError } from '../../parsers/errors.js';

const JOB_STATES: readonly JobState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];
const FINISHED: readonly JobState[] = ['done', 'failed', 'cancelled'];
const JOB_KINDS = Object.keys(JOB_PRIORITY) as JobKind[];
/** Jobs shown by `status` when no daemon runs, and by `jobs` by default. */
const STATUS_JOBS = 10;
const DEFAULT_JOBS = 20;
const MAX_JOBS = 1000;
/** Config names and paths are cut to this in tables. */
const COL = 18;

export async function cmdDaemon(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const { runDaemon } = await import('../daemon/daemon.js');
  const code = await runDaemon(values.config);
  // the worker pool, timers and sockets would keep the process up: the daemon is done
  process.exit(code);
}

// ---- finding the daemon -----------------------------------------------------------------------

const COMMON = {
  repo: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

interface Where {
  root: string;
  /** The token from --config, if given. */
  token?: string;
}

function where(values: { repo?: string; config?: string }): Where {
  if (values.config !== undefined) {
    if (values.repo !== undefined) throw new UsageError('give --repo or --config, not both');
    const cfg = loadConfig(values.config);
    return { root: cfg.repo, token: cfg.api.token };
  }
  return { root: repoPath(values.repo) };
}

/** The API token: --config's, else the running daemon's config file's, else <repo>/api-token. */
function tokenFor(w: Where, st: DaemonState): string {
  if (w.token) return w.token;
  if (st.configSource.startsWith('/')) {
    try {
      return loadConfig(st.configSource).api.token;
    } catch {
      // unreadable for this user, or changed since: the token file may still serve
    }
  }
  const p = new Problems();
  const file = join(w.root, TOKEN_FILE_NAME);
  const token = tokenFromFile(p, ['api', 'token'], file);
  if (token === undefined) {
    throw errorsFor({ image: file, layer: 'config' }).io(
      'API_TOKEN_UNKNOWN',
      `the daemon (pid ${st.pid}) runs, but its API token cannot be read (${p.lines().join('; ')}); pass --config with the daemon's config, or run as its user`,
    );
  }
  return token;
}

function clientFor(w: Where, st: DaemonState): ApiClient | undefined {
  if (!st.api) return undefined;
  let host = st.api.host;
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${st.api.port}/`;
  return new ApiClient(url, tokenFor(w, st));
}

interface Found {
  w: Where;
  state?: DaemonState;
  client?: ApiClient;
}

function find(values: { repo?: string; config?: string }): Found {
  const w = where(values);
  const state = runningDaemon(w.root);
  if (!state) return { w };
  return { w, state, client: clientFor(w, state) };
}

// ---- formatting -------------------------------------------------------------------------------

const when = (ms: number | undefined): string =>
  ms === undefined ? '-' : new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d${String(h).padStart(2, '0')}h`;
  if (h) return `${h}h${String(m).padStart(2, '0')}m`;
  return `${m}m${String(s % 60).padStart(2, '0')}s`;
}

/** VM names by identity, for job lines: a backup job names its VM by identity (one CLI command per process). */
let vmNames = new Map<string, string>();

/** Reads the names from the catalog (read-only; WAL lets it run beside the daemon). Best effort: ids stay otherwise. */
function learnVmNames(root: string): void {
  try {
    const repo = openRepo(root, { readonly: true });
    try {
      vmNames = new Map(repo.catalog.vms().map((v) => [v.identity, v.name]));
    } finally {
      repo.close();
    }
  } catch {
    // no catalog yet, or unreadable: the identities are shown
  }
}

/** What a job is about, in a few words. */
function subject(j: JobRow): string {
  const p = j.params as Record<string, unknown>;
  if (j.kind === 'backup') {
    const id = String(p.vm ?? '');
    return vmNames.get(id) ?? id;
  }
  if (j.kind === 'restore') return `${String(p.backup)}:${String(p.path)} → ${String(p.to)}`;
  if (j.kind === 'check') return p.readData ? '--read-data' : '';
  if (j.kind === 'forget') return [p.vm, p.prune ? '--prune' : ''].filter(Boolean).join(' ');
  return '';
}

function progressText(j: JobRow): string {
  const p = j.progress;
  if (!p) return '';
  const pct = p.bytesTotal ? ` ${Math.min(100, Math.floor((100 * p.bytesDone) / p.bytesTotal))}%` : '';
  const bytes = p.bytesTotal
    ? ` ${humanBytes(p.bytesDone)}/${humanBytes(p.bytesTotal)}`
    : p.bytesDone
      ? ` ${humanBytes(p.bytesDone)}`
      : '';
  const files = p.files !== undefined ? ` ${p.files} files` : '';
  return `${p.phase}${pct}${bytes}${files}${p.current ? `  ${p.current}` : ''}`;
}

function jobLine(j: JobRow): string {
  const tail = j.state === 'running' ? progressText(j) : j.error ? `${j.error.code}: ${j.error.message}` : '';
  return `${String(j.id).padStart(5)}  ${j.kind.padEnd(8)} ${j.state.padEnd(9)} ${when(j.createdMs)}  ${j.origin.padEnd(COL).slice(0, COL)} ${subject(j)}${tail ? `  ${tail}` : ''}`;
}

const JOBS_HEADER = '   ID  KIND     STATE     CREATED (UTC)        ORIGIN             WHAT';

function jobsTable(list: JobRow[]): string {
  const lines = [JOBS_HEADER, ...list.map(jobLine)];
  if (!list.length) lines.push('  (no jobs)');
  return `${lines.join('\n')}\n`;
}

function throttleText(t: DaemonStatus['throttle'][number]): string {
  if (!t.status) return 'not measuring (no backup is reading, or throttle.enabled is false)';
  return `${t.status.mode} at ${formatRate(t.status.rate)}: ${t.status.reason}`;
}

function statusText(st: DaemonState, s: DaemonStatus, nowMs: number): string {
  const lines = [
    `daemon    running: pid ${s.pid} on ${st.host}, up ${duration(nowMs - s.startedMs)} (since ${when(s.startedMs)} UTC), vdbak ${s.version}`,
    `config    ${s.configSource}`,
    `API       ${st.api ? `${st.api.host}:${st.api.port}` : '-'}`,
  ];
  if (!s.throttle.length) lines.push('throttle  (no datastores configured)');
  for (const t of s.throttle) lines.push(`throttle  ${t.datastore}: ${throttleText(t)}`);
  lines.push('schedules (times UTC)');
  if (!s.schedules.length) lines.push('  (none)');
  for (const sc of s.schedules) {
    const last =
      sc.lastFireMs !== undefined
        ? `last ${when(sc.lastFireMs)}${sc.lastJob ? ` (job ${sc.lastJob.id} ${sc.lastJob.state})` : ''}`
        : 'never fired';
    lines.push(
      `  ${sc.name.padEnd(COL).slice(0, COL)} ${sc.kind.padEnd(7)} ${sc.cron.padEnd(16)} next ${when(sc.nextRunMs)}  ${last}`,
    );
  }
  lines.push(`running   ${s.running.length ? `${s.running.length} job(s)` : 'nothing'}`);
  for (const j of s.running) lines.push(`  job ${j.id} ${j.kind} ${subject(j)}  ${progressText(j) || 'starting'}`);
  lines.push(`queued    ${s.queued} job(s)`);
  lines.push('last results');
  if (!s.lastResults.length) lines.push('  (none yet)');
  for (const j of s.lastResults) {
    lines.push(
      `  ${j.kind.padEnd(8)} job ${j.id} ${j.state} ${when(j.finishedMs)}${j.error ? `  ${j.error.code}: ${j.error.message}` : ''}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Jobs straight from the catalog (no daemon): read-only. */
function catalogJobs(root: string, filter: JobFilter): JobRow[] {
  const repo = openRepo(root, { readonly: true });
  try {
    return new JobStore(repo.catalog).list(filter);
  } catch (e) {
    // a catalog from before schema 2 has no jobs table: no job ever ran
    if (/no such table/.test((e as Error).message)) return [];
    throw e;
  } finally {
    repo.close();
  }
}

// ---- commands ---------------------------------------------------------------------------------

export async function cmdStatus(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: COMMON });
  const f = find(values);
  learnVmNames(f.w.root);
  let silent: string | undefined;
  if (f.state && f.client) {
    try {
      const s = await f.client.status();
      await writeOut(
        values.json
          ? `${JSON.stringify({ running: true, daemon: f.state, status: s })}\n`
          : statusText(f.state, s, Date.now()),
      );
      return 0;
    } catch (e) {
      // a hung daemon (or a reused pid): say so, and show what the catalog knows
      if (!isVdbakError(e) || e.code !== 'API_UNREACHABLE') throw e;
      silent = e.message;
    }
  }
  const last = readDaemonState(f.w.root);
  const why = silent
    ? `not answering: ${silent}`
    : f.state
      ? `starting (pid ${f.state.pid}; its API is not up yet)`
      : last
        ? `not running (pid ${last.pid} on ${last.host} is gone)`
        : 'not running';
  const jobs = catalogJobs(f.w.root, { limit: STATUS_JOBS });
  if (values.json) {
    const out = { running: false, starting: !!f.state && !silent, notAnswering: silent, repo: f.w.root, jobs };
    await writeOut(`${JSON.stringify(out)}\n`);
  } else {
    await writeOut(`daemon    ${why} (repository ${f.w.root})\nlast jobs, from the catalog:\n${jobsTable(jobs)}`);
  }
  return silent ? 1 : 0;
}

function jobFilter(values: { state?: string; kind?: string; limit?: string }): JobFilter {
  const f: JobFilter = {};
  if (values.state !== undefined) {
    const states = values.state.split(',').map((s) => s.trim());
    for (const s of states) {
      if (!JOB_STATES.includes(s as JobState)) {
        throw new UsageError(`--state takes ${JOB_STATES.join(', ')} (comma-separated), not '${s}'`);
      }
    }
    f.state = states as JobState[];
  }
  if (values.kind !== undefined) {
    if (!JOB_KINDS.includes(values.kind as JobKind)) {
      throw new UsageError(`--kind takes ${JOB_KINDS.join(', ')}, not '${values.kind}'`);
    }
    f.kind = values.kind as JobKind;
  }
  const limit = values.limit === undefined ? DEFAULT_JOBS : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_JOBS) throw new UsageError(`--limit takes 1..${MAX_JOBS}`);
  f.limit = limit;
  return f;
}

export async function cmdJobs(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...COMMON, state: { type: 'string' }, kind: { type: 'string' }, limit: { type: 'string' } },
  });
  const filter = jobFilter(values);
  const f = find(values);
  learnVmNames(f.w.root);
  const list = f.client ? (await f.client.jobs(filter)).items : catalogJobs(f.w.root, filter);
  await writeOut(values.json ? `${JSON.stringify(list)}\n` : jobsTable(list));
  return 0;
}

function jobIdArg(positionals: string[]): number {
  const raw = positionals[0];
  if (raw === undefined) throw new UsageError('missing the job id');
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1) throw new UsageError(`a job id is a positive integer, not '${raw}'`);
  return Number(raw);
}

const noJob = (root: string, id: number) =>
  errorsFor({ image: root, layer: 'job' }).notFound('JOB_NOT_FOUND', `no job ${id}`);

function jobText(j: JobRow): string {
  const lines = [
    `job       ${j.id} (${j.kind}), ${j.state}${j.cancelRequested && j.state === 'running' ? ', cancel requested' : ''}`,
    `origin    ${j.origin}`,
    `params    ${JSON.stringify(j.params)}`,
    `created   ${when(j.createdMs)} UTC`,
    `started   ${when(j.startedMs)}${j.attempts > 1 ? ` (attempt ${j.attempts})` : ''}`,
    `finished  ${when(j.finishedMs)}`,
  ];
  if (j.progress) lines.push(`progress  ${progressText(j)} (at ${when(j.progress.updatedMs)})`);
  if (j.error) lines.push(`error     ${j.error.code}: ${j.error.message}`);
  if (j.result !== undefined) lines.push(`result    ${JSON.stringify(j.result).slice(0, 2000)}`);
  return `${lines.join('\n')}\n`;
}

export async function cmdJob(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: COMMON });
  const id = jobIdArg(positionals);
  const f = find(values);
  let j: JobRow | undefined;
  if (f.client) j = await f.client.job(id);
  else {
    const repo = openRepo(f.w.root, { readonly: true });
    try {
      j = new JobStore(repo.catalog).get(id);
    } finally {
      repo.close();
    }
  }
  if (!j) throw noJob(f.w.root, id);
  await writeOut(values.json ? `${JSON.stringify(j)}\n` : jobText(j));
  return 0;
}

export async function cmdCancel(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: COMMON });
  const id = jobIdArg(positionals);
  const f = find(values);
  let j: JobRow | undefined;
  if (f.client) j = await f.client.cancel(id);
  else {
    const repo = openRepo(f.w.root);
    try {
      const jobs = new JobStore(repo.catalog);
      const before = jobs.get(id);
      // as the API answers (409): cancelling a job that has ended is a mistake worth saying
      if (before && FINISHED.includes(before.state)) {
        throw errorsFor({ image: f.w.root, layer: 'job' }).io('JOB_FINISHED', `job ${id} is already ${before.state}`);
      }
      j = jobs.cancel(id);
      // no daemon runs it: a job left 'running' by a dead daemon ends here instead of resuming at the next start
      if (j?.state === 'running' && !runningDaemon(f.w.root)) {
        jobs.markCancelled(id, 'cancelled while no daemon ran');
        j = jobs.get(id);
      }
    } finally {
      repo.close();
    }
  }
  if (!j) throw noJob(f.w.root, id);
  const said =
    j.state === 'cancelled'
      ? `job ${j.id} cancelled`
      : j.state === 'running'
        ? `job ${j.id} is running: it stops at its next check`
        : `job ${j.id} has ended (${j.state})`;
  await writeOut(values.json ? `${JSON.stringify(j)}\n` : `${said}\n`);
  return 0;
}
