/**
 * The daemon's persistent job queue: table `jobs` of the catalog, so queued
 * and interrupted work survives a restart and is shipped with the catalog.
 *
 * The queue's types are in ./job-types.ts (the daemon re-exports them); its
 * typed errors come from parsers/errors.ts, so the API can map a bad submit to
 * a 4xx by code.
 *
 * Durability: the daemon shares one catalog connection, and a running backup
 * keeps a write transaction open across awaits (agent/backup/job.ts batches
 * its rows). A job change made inside that transaction would vanish if the
 * backup then rolled back. So every write here first commits whatever batch
 * is open (a backup's batches are committed at arbitrary points anyway and
 * stay invisible until its final commit), runs in its own transaction, and
 * reopens the batch.
 */
import { hostname } from 'node:os';
import type { JobError, JobFilter, JobKind, JobParams, JobProgress, JobQueue, JobRow, JobState } from './job-types.js';
import { JOB_PRIORITY } from './job-types.js';
import { errorsFor } from '../parsers/errors.js';
import type { Catalog } from './catalog.js';

/** Finished jobs kept (newest); older ones are trimmed as new ones finish. */
export const KEEP_FINISHED_JOBS = 10_000;
/** A job found interrupted after this many starts is failed instead of started again (it may be what kills the daemon). */
export const MAX_START_ATTEMPTS = 3;
/** Longest list() answer. */
export const MAX_LIST = 1000;
export const DEFAULT_LIST = 100;
/** Caps on what a submit may carry (params come from the API). */
export const MAX_PARAMS_CHARS = 16 * 1024;
export const MAX_ORIGIN_CHARS = 200;
export const MAX_REF_CHARS = 4096;
/** Stored JSON of progress/result is cut to this (a result with a huge warning list stays bounded). */
export const MAX_STORED_JSON_CHARS = 1024 * 1024;

export const JOB_KINDS: readonly JobKind[] = Object.freeze(Object.keys(JOB_PRIORITY) as JobKind[]);
const FINISHED: readonly JobState[] = ['done', 'failed', 'cancelled'];

type Row = Record<string, unknown>;

const err = (what: string) => errorsFor({ image: what, layer: 'job' });

function num(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

function optNum(v: unknown): number | undefined {
  return v === null || v === undefined ? undefined : num(v);
}

function parseJson<T>(v: unknown): T | undefined {
  if (v === null || v === undefined) return undefined;
  try {
    return JSON.parse(v as string) as T;
  } catch {
    return undefined;
  }
}

function toRow(r: Row): JobRow {
  const row: JobRow = {
    id: num(r.id),
    kind: r.kind as JobKind,
    priority: num(r.priority),
    state: r.state as JobState,
    params: parseJson<JobParams>(r.params) ?? {},
    origin: r.origin as string,
    createdMs: num(r.created_ms),
    attempts: num(r.attempts),
    cancelRequested: num(r.cancel_requested) !== 0,
  };
  const started = optNum(r.started_ms);
  if (started !== undefined) row.startedMs = started;
  const finished = optNum(r.finished_ms);
  if (finished !== undefined) row.finishedMs = finished;
  const progress = parseJson<JobProgress>(r.progress);
  if (progress) row.progress = progress;
  const result = parseJson<unknown>(r.result);
  if (result !== undefined) row.result = result;
  const error = parseJson<JobError>(r.error);
  if (error) row.error = error;
  return row;
}

/** JSON of a value, or a marker when it is too large to keep. */
function boundedJson(v: unknown): string {
  const s = JSON.stringify(v ?? null);
  return s.length <= MAX_STORED_JSON_CHARS ? s : JSON.stringify({ truncated: true, chars: s.length });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkString(kind: string, params: Record<string, unknown>, key: string, required: boolean): void {
  const v = params[key];
  if (v === undefined && !required) return;
  if (typeof v !== 'string' || v.length === 0) {
    throw err(`${kind} job`).unsupported('JOB_BAD_PARAMS', `${kind}: '${key}' must be a non-empty string`, { key });
  }
  if (v.length > MAX_REF_CHARS || v.includes('\0')) {
    throw err(`${kind} job`).limit('JOB_BAD_PARAMS', `${kind}: '${key}' is too long or holds NUL`, { key });
  }
}

function checkBool(kind: string, params: Record<string, unknown>, key: string): void {
  const v = params[key];
  if (v !== undefined && typeof v !== 'boolean') {
    throw err(`${kind} job`).unsupported('JOB_BAD_PARAMS', `${kind}: '${key}' must be true or false`, { key });
  }
}

/** Disk formats a whole-VM restore writes. */
export const RESTORE_VM_FORMATS: readonly string[] = ['vmdk-sparse', 'vmdk-flat', 'qcow2', 'raw'];
/** Datastore mappings one whole-VM restore or plan may carry. */
export const MAX_DATASTORE_MAP = 256;

function checkFormat(kind: string, params: Record<string, unknown>): void {
  const v = params.format;
  if (v !== undefined && (typeof v !== 'string' || !RESTORE_VM_FORMATS.includes(v))) {
    throw err(`${kind} job`).unsupported(
      'JOB_BAD_PARAMS',
      `${kind}: 'format' must be one of ${RESTORE_VM_FORMATS.join(', ')}`,
      { key: 'format' },
    );
  }
}

function checkDatastoreMap(kind: string, params: Record<string, unknown>): void {
  const v = params.datastoreMap;
  if (v === undefined) return;
  const bad = (why: string): never => {
    throw err(`${kind} job`).unsupported('JOB_BAD_PARAMS', `${kind}: 'datastoreMap' ${why}`, { key: 'datastoreMap' });
  };
  if (!Array.isArray(v)) bad('must be a list of {from, to}');
  const list = v as unknown[];
  if (list.length > MAX_DATASTORE_MAP) bad(`holds more than ${MAX_DATASTORE_MAP} entries`);
  for (const m of list) {
    if (!isPlainObject(m) || Object.keys(m).some((k) => k !== 'from' && k !== 'to')) bad('entries must be {from, to}');
    const e = m as Record<string, unknown>;
    for (const k of ['from', 'to']) {
      const s = e[k];
      if (typeof s !== 'string' || s.length === 0 || s.length > MAX_REF_CHARS || s.includes('\0')) {
        bad(`entries need non-empty '${k}' paths`);
      }
    }
  }
}

const ALLOWED_KEYS: Readonly<Record<JobKind, readonly string[]>> = {
  restore: ['backup', 'path', 'to', 'overwrite'],
  'restore-vm': ['backup', 'to', 'name', 'format', 'datastoreMap', 'keepIdentity'],
  plan: ['plan', 'to', 'format', 'datastoreMap'],
  backup: ['vm'],
  check: ['readData'],
  forget: ['vm', 'prune'],
  prune: [],
  ship: [],
};

/** Checks a submit's kind and params; returns the params as stored. Typed errors name the bad key. */
export function validateJobParams(kind: unknown, params: unknown): { kind: JobKind; params: JobParams } {
  if (typeof kind !== 'string' || !Object.hasOwn(JOB_PRIORITY, kind)) {
    throw err('job').unsupported(
      'JOB_UNKNOWN_KIND',
      `unknown job kind '${String(kind)}' (one of ${JOB_KINDS.join(', ')})`,
    );
  }
  const k = kind as JobKind;
  const p = params ?? {};
  if (!isPlainObject(p)) throw err(`${k} job`).unsupported('JOB_BAD_PARAMS', `${k}: params must be an object`);
  if (JSON.stringify(p).length > MAX_PARAMS_CHARS) {
    throw err(`${k} job`).limit('JOB_BAD_PARAMS', `${k}: params exceed ${MAX_PARAMS_CHARS} characters`);
  }
  for (const key of Object.keys(p)) {
    if (!ALLOWED_KEYS[k].includes(key)) {
      throw err(`${k} job`).unsupported('JOB_BAD_PARAMS', `${k}: unknown parameter '${key}'`, { key });
    }
  }
  switch (k) {
    case 'restore':
      checkString(k, p, 'backup', true);
      checkString(k, p, 'path', true);
      checkString(k, p, 'to', true);
      checkBool(k, p, 'overwrite');
      break;
    case 'restore-vm':
      checkString(k, p, 'backup', true);
      checkString(k, p, 'to', true);
      checkString(k, p, 'name', false);
      checkFormat(k, p);
      checkDatastoreMap(k, p);
      checkBool(k, p, 'keepIdentity');
      break;
    case 'plan':
      checkString(k, p, 'plan', true);
      checkString(k, p, 'to', true);
      checkFormat(k, p);
      checkDatastoreMap(k, p);
      break;
    case 'backup':
      checkString(k, p, 'vm', true);
      break;
    case 'check':
      checkBool(k, p, 'readData');
      break;
    case 'forget':
      checkString(k, p, 'vm', false);
      checkBool(k, p, 'prune');
      break;
    default:
      break;
  }
  return { kind: k, params: p as JobParams };
}

/** What a JobStore tells its listeners (the runner: start a submitted job now, abort a cancelled one now). */
export type JobStoreEvent = { type: 'submit' | 'cancel'; job: JobRow };

export class JobStore implements JobQueue {
  private readonly host = hostname();
  private readonly keepFinished: number;
  private readonly listeners = new Set<(e: JobStoreEvent) => void>();

  constructor(
    private readonly cat: Catalog,
    opts: { keepFinished?: number } = {},
  ) {
    this.keepFinished = Math.max(1, Math.floor(opts.keepFinished ?? KEEP_FINISHED_JOBS));
  }

  private write<T>(fn: () => T): T {
    return this.cat.writeOutsideBatch(fn);
  }

  /** Calls `fn` after each submit and cancel made through this store; returns the unsubscribe. */
  subscribe(fn: (e: JobStoreEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: JobStoreEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {
        // a listener's failure is its own; the job is stored either way
      }
    }
  }

  private one(id: number): JobRow | undefined {
    const r = this.cat.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return r ? toRow(r) : undefined;
  }

  submit(kind: JobKind, params: JobParams, origin: string, nowMs = Date.now()): JobRow {
    const v = validateJobParams(kind, params);
    if (typeof origin !== 'string' || origin.length === 0 || origin.length > MAX_ORIGIN_CHARS) {
      throw err('job').unsupported('JOB_BAD_ORIGIN', `a job's origin must be 1..${MAX_ORIGIN_CHARS} characters`);
    }
    const row = this.write(() => {
      const r = this.cat.db
        .prepare(
          `INSERT INTO jobs (kind, priority, state, params, origin, created_ms) VALUES (?, ?, 'queued', ?, ?, ?) RETURNING *`,
        )
        .get(v.kind, JOB_PRIORITY[v.kind], JSON.stringify(v.params), origin, nowMs) as Row;
      return toRow(r);
    });
    this.emit({ type: 'submit', job: row });
    return row;
  }

  get(id: number): JobRow | undefined {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    return this.one(id);
  }

  list(filter: JobFilter = {}): JobRow[] {
    const states = filter.state === undefined ? [] : Array.isArray(filter.state) ? filter.state : [filter.state];
    const limit = Math.max(1, Math.min(MAX_LIST, Math.floor(filter.limit ?? DEFAULT_LIST)));
    const rows = this.cat.db
      .prepare(
        `SELECT * FROM jobs
          WHERE (? IS NULL OR state IN (SELECT value FROM json_each(?)))
            AND (? IS NULL OR kind = ?)
          ORDER BY id DESC LIMIT ?`,
      )
      .all(states.length ? 1 : null, JSON.stringify(states), filter.kind ?? null, filter.kind ?? null, limit) as Row[];
    return rows.map(toRow);
  }

  /** Jobs waiting to run. */
  queuedCount(): number {
    return num((this.cat.db.prepare(`SELECT count(*) AS n FROM jobs WHERE state = 'queued'`).get() as Row).n);
  }

  cancel(id: number, nowMs = Date.now()): JobRow | undefined {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    const out = this.write(() => {
      const row = this.one(id);
      if (!row) return undefined;
      if (row.state === 'queued') {
        this.cat.db
          .prepare(
            `UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_ms = ?, error = ? WHERE id = ? AND state = 'queued'`,
          )
          .run(nowMs, JSON.stringify({ code: 'JOB_CANCELLED', message: 'cancelled before it started' }), id);
      } else if (row.state === 'running') {
        this.cat.db.prepare('UPDATE jobs SET cancel_requested = 1 WHERE id = ?').run(id);
      }
      return this.one(id);
    });
    if (out) this.emit({ type: 'cancel', job: out });
    return out;
  }

  /**
   * Takes the next queued job of one of `kinds`, lowest (priority, id) first:
   * queued → running in one statement, so two claimers never get the same job.
   */
  claim(kinds: readonly JobKind[], nowMs = Date.now()): JobRow | undefined {
    if (kinds.length === 0) return undefined;
    // the runner asks on every poll: a read first, so an empty queue costs no write (and no commit of a backup's batch)
    const any = this.cat.db
      .prepare(`SELECT 1 FROM jobs WHERE state = 'queued' AND kind IN (SELECT value FROM json_each(?)) LIMIT 1`)
      .get(JSON.stringify(kinds));
    if (any === undefined) return undefined;
    return this.write(() => {
      const r = this.cat.db
        .prepare(
          `UPDATE jobs SET state = 'running', attempts = attempts + 1, pid = ?, host = ?, started_ms = ?,
                  progress = NULL, error = NULL
            WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND kind IN (SELECT value FROM json_each(?))
                        ORDER BY priority, id LIMIT 1)
            RETURNING *`,
        )
        .get(process.pid, this.host, nowMs, JSON.stringify(kinds)) as Row | undefined;
      return r ? toRow(r) : undefined;
    });
  }

  setProgress(id: number, progress: JobProgress): void {
    this.write(() => {
      this.cat.db
        .prepare(`UPDATE jobs SET progress = ? WHERE id = ? AND state = 'running'`)
        .run(boundedJson(progress), id);
    });
  }

  cancelRequested(id: number): boolean {
    const r = this.cat.db.prepare('SELECT cancel_requested FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return r !== undefined && num(r.cancel_requested) !== 0;
  }

  /** running → a final state; false when the job is no longer running (e.g. requeued by a stop that gave up waiting). */
  private end(id: number, state: JobState, fields: { result?: unknown; error?: JobError }, nowMs: number): boolean {
    return this.write(() => {
      const changed = this.cat.db
        .prepare(
          `UPDATE jobs SET state = ?, finished_ms = ?, result = ?, error = ?, pid = NULL WHERE id = ? AND state = 'running'`,
        )
        .run(
          state,
          nowMs,
          fields.result === undefined ? null : boundedJson(fields.result),
          fields.error ? JSON.stringify(fields.error) : null,
          id,
        ).changes;
      if (changed) this.trim();
      return changed > 0;
    });
  }

  finish(id: number, result: unknown, nowMs = Date.now()): boolean {
    return this.end(id, 'done', { result }, nowMs);
  }

  /** The job failed; `result` keeps what it found anyway (a check's report). */
  fail(id: number, error: JobError, result?: unknown, nowMs = Date.now()): boolean {
    return this.end(id, 'failed', { error, result }, nowMs);
  }

  markCancelled(id: number, message = 'cancelled', nowMs = Date.now()): boolean {
    return this.end(id, 'cancelled', { error: { code: 'JOB_CANCELLED', message } }, nowMs);
  }

  /** A running job goes back to the queue (the daemon stops): it runs again at the next start, origin kept. */
  requeue(id: number): boolean {
    return this.write(
      () =>
        this.cat.db
          .prepare(`UPDATE jobs SET state = 'queued', pid = NULL, host = NULL WHERE id = ? AND state = 'running'`)
          .run(id).changes > 0,
    );
  }

  /**
   * At start-up: jobs left 'running' by a process that is gone go back to the
   * queue (attempts already counts their starts); one that has been started
   * MAX_START_ATTEMPTS times is failed with a clear error instead of looping.
   * Returns what it did.
   */
  requeueInterrupted(
    isAlive: (pid: number, host: string) => boolean,
    nowMs = Date.now(),
  ): { requeued: number[]; failed: number[] } {
    return this.write(() => {
      const out = { requeued: [] as number[], failed: [] as number[] };
      const rows = this.cat.db
        .prepare(`SELECT id, pid, host, attempts FROM jobs WHERE state = 'running'`)
        .all() as Row[];
      for (const r of rows) {
        const id = num(r.id);
        const pid = optNum(r.pid);
        if (pid !== undefined && isAlive(pid, (r.host as string | null) ?? '')) continue;
        if (num(r.attempts) >= MAX_START_ATTEMPTS) {
          this.cat.db
            .prepare(`UPDATE jobs SET state = 'failed', finished_ms = ?, error = ?, pid = NULL WHERE id = ?`)
            .run(
              nowMs,
              JSON.stringify({
                code: 'JOB_INTERRUPTED',
                message: `interrupted ${num(r.attempts)} times (the daemon stopped or died while it ran); not started again`,
              }),
              id,
            );
          out.failed.push(id);
        } else {
          this.cat.db.prepare(`UPDATE jobs SET state = 'queued', pid = NULL, host = NULL WHERE id = ?`).run(id);
          out.requeued.push(id);
        }
      }
      return out;
    });
  }

  /** Keeps the newest `keepFinished` finished jobs. */
  private trim(): void {
    this.cat.db
      .prepare(
        `DELETE FROM jobs WHERE state IN (SELECT value FROM json_each(?)) AND id < (
           SELECT id FROM jobs WHERE state IN (SELECT value FROM json_each(?)) ORDER BY id DESC LIMIT 1 OFFSET ?)`,
      )
      .run(JSON.stringify(FINISHED), JSON.stringify(FINISHED), this.keepFinished - 1);
  }

  /** The last finished job of each kind (status). */
  lastResults(): JobRow[] {
    const rows = this.cat.db
      .prepare(
        `SELECT * FROM jobs WHERE id IN (
           SELECT max(id) FROM jobs WHERE state IN ('done', 'failed', 'cancelled') GROUP BY kind)
         ORDER BY id DESC`,
      )
      .all() as Row[];
    return rows.map(toRow);
  }
}
