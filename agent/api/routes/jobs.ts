/** The job queue: list, one job, cancel. */
import { JOB_PRIORITY, type JobKind, type JobState } from '../../daemon/types.js';
import { MAX_PAGE_LIMIT, DEFAULT_PAGE_LIMIT } from '../../browse/page.js';
import { badRequest, HttpError } from '../http-error.js';
import type { Route } from '../router.js';
import { ok, str } from './common.js';

export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];
export const JOB_KINDS: readonly JobKind[] = Object.keys(JOB_PRIORITY) as JobKind[];
const FINISHED: ReadonlySet<JobState> = new Set(['done', 'failed', 'cancelled']);
const MAX_JOB_ID = Number.MAX_SAFE_INTEGER;

function jobId(raw: string): number {
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_JOB_ID) {
    throw badRequest('BAD_JOB_ID', `a job id is a positive integer, not '${raw}'`);
  }
  return Number(raw);
}

const noJob = (id: number) => new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);

export const jobRoutes: Route[] = [
  {
    method: 'GET',
    path: '/jobs',
    auth: true,
    query: {
      state: { type: 'string', description: `One state or several, comma-separated (${JOB_STATES.join(', ')}).` },
      kind: { type: 'string', enum: JOB_KINDS, description: 'Only jobs of this kind.' },
      limit: {
        type: 'integer',
        min: 1,
        max: MAX_PAGE_LIMIT,
        description: `The newest N jobs (default ${DEFAULT_PAGE_LIMIT}).`,
      },
    },
    handle: ({ ctx, query }) => {
      const raw = str(query, 'state');
      const states = raw?.split(',').map((s) => s.trim());
      for (const s of states ?? []) {
        if (!JOB_STATES.includes(s as JobState)) {
          throw badRequest('BAD_PARAM', `'state' takes ${JOB_STATES.join(', ')} (comma-separated), not '${s}'`);
        }
      }
      const limit = (query.limit as number | undefined) ?? DEFAULT_PAGE_LIMIT;
      const items = ctx.jobs.list({
        ...(states ? { state: states as JobState[] } : {}),
        ...(query.kind ? { kind: query.kind as JobKind } : {}),
        limit,
      });
      return ok({ items: items.slice(0, limit), limit });
    },
  },
  {
    method: 'GET',
    path: '/jobs/{id}',
    auth: true,
    handle: ({ ctx, params }) => {
      const id = jobId(params.id!);
      const job = ctx.jobs.get(id);
      if (!job) throw noJob(id);
      return ok(job);
    },
  },
  {
    method: 'POST',
    path: '/jobs/{id}/cancel',
    auth: true,
    body: {},
    handle: ({ ctx, params }) => {
      const id = jobId(params.id!);
      const before = ctx.jobs.get(id);
      if (!before) throw noJob(id);
      if (FINISHED.has(before.state)) {
        throw new HttpError(409, 'JOB_FINISHED', `job ${id} is already ${before.state}`);
      }
      const job = ctx.jobs.cancel(id);
      if (!job) throw noJob(id);
      // a queued job is cancelled at once; a running one stops at its next check
      return { status: job.state === 'cancelled' ? 200 : 202, body: job };
    },
  },
];
