/**
 * The CLI's client of a running daemon (`vdbak status`, `jobs`, `cancel`, and
 * submits): plain fetch with the bearer token. A refused request becomes the
 * typed error its status means, with the server's code, so the CLI prints it
 * like any other vdbak error.
 */
import { errorsFor, type VdbakError } from '../../parsers/errors.js';
import type { DaemonStatus, JobFilter, JobRow, RestoreJobParams, RestoreVmJobParams } from '../daemon/types.js';
import type { ErrorBody } from './http-error.js';

/** A daemon on loopback answers in milliseconds; a hung one must not hang the CLI. */
export const CLIENT_TIMEOUT_MS = 15_000;

export interface JobList {
  items: JobRow[];
  limit: number;
}

function isErrorBody(v: unknown): v is ErrorBody {
  const e = (v as ErrorBody | null)?.error;
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.message === 'string';
}

export class ApiClient {
  private readonly base: URL;

  constructor(
    baseUrl: string,
    private readonly token: string,
    private readonly timeoutMs = CLIENT_TIMEOUT_MS,
  ) {
    this.base = new URL(baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`);
  }

  health(): Promise<{ ok: boolean; version: string }> {
    return this.call('GET', 'health');
  }

  status(): Promise<DaemonStatus> {
    return this.call('GET', 'status');
  }

  jobs(filter: JobFilter = {}): Promise<JobList> {
    const q = new URLSearchParams();
    if (filter.state !== undefined) q.set('state', Array.isArray(filter.state) ? filter.state.join(',') : filter.state);
    if (filter.kind !== undefined) q.set('kind', filter.kind);
    if (filter.limit !== undefined) q.set('limit', String(filter.limit));
    return this.call('GET', `jobs${q.size ? `?${q}` : ''}`);
  }

  job(id: number): Promise<JobRow> {
    return this.call('GET', `jobs/${encodeURIComponent(String(id))}`);
  }

  cancel(id: number): Promise<JobRow> {
    return this.call('POST', `jobs/${encodeURIComponent(String(id))}/cancel`, {});
  }

  submitBackup(vm: string): Promise<JobRow> {
    return this.call('POST', 'backups', { vm });
  }

  submitRestore(params: RestoreJobParams): Promise<JobRow> {
    return this.call('POST', 'restores', { ...params });
  }

  submitVmRestore(params: RestoreVmJobParams): Promise<JobRow> {
    return this.call('POST', 'restores/vm', { ...params });
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.base);
    const err = errorsFor({ image: `${method} ${url.pathname}`, layer: 'api' });
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          Authorization: `Bearer ${this.token}`,
          Accept: 'application/json',
          ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
      throw err.io('API_UNREACHABLE', `the daemon at ${this.base.origin} does not answer (${cause})`);
    }
    const text = await res.text();
    let value: unknown;
    try {
      value = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw err.corrupt('API_BAD_REPLY', `the daemon answered ${res.status} with something that is not JSON`);
    }
    if (res.ok) return value as T;
    throw this.failure(err, res.status, value);
  }

  private failure(err: ReturnType<typeof errorsFor>, status: number, value: unknown): VdbakError {
    const code = isErrorBody(value) ? value.error.code : `HTTP_${status}`;
    const message = isErrorBody(value) ? value.error.message : `the daemon answered ${status}`;
    const details = { status };
    if (status === 404) return err.notFound(code, message, details);
    if (status === 401 || status === 403) return err.io(code, message, details);
    if (status === 409) return err.io(code, message, details);
    if (status >= 400 && status < 500) return err.unsupported(code, message, details);
    return err.io(code, message, details);
  }
}
