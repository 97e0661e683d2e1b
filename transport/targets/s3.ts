/**
 * S3Target: the backup target as a bucket of an S3-compatible object store
 * (AWS S3, MinIO, Ceph RGW, Swift's s3api …), path-style addressing.
 *
 * Requests are signed with AWS Signature Version 4 (the AWS "Signature
 * Version 4 signing process" document): canonical request → string to sign →
 * HMAC-SHA256 key chain (date, region, "s3", "aws4_request"). Payloads are
 * signed by their SHA-256. Only node:crypto and Node's fetch are used.
 *
 * An S3 PUT is atomic (the object appears whole or not at all) and replaces
 * an object of the same name, which is the Target contract. Listing uses the
 * original ListObjects (marker) call, which every S3-compatible store knows.
 *
 * A streamed put (putStream) holds one part in memory: an object that fits in
 * one part is a plain PUT; a bigger one is a multipart upload, which S3 makes
 * visible only at CompleteMultipartUpload, and is aborted on any failure so
 * that its parts go too (should the abort fail as well, they stay invisible
 * until the store's rule for incomplete uploads removes them).
 *
 * Every request is idempotent (a put of the same bytes, a get, a delete), so
 * one that fails transiently — HTTP 500/502/503/504 (503 SlowDown is S3's
 * "back off"), a reset or timed-out connection — is sent again after a
 * bounded exponential back-off with jitter, signed afresh each time. (The
 * one request that is not quite idempotent, starting a multipart upload,
 * leaves at worst an unused, invisible upload behind when its reply was lost.)
 */
import { createHash, createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isVdbakError } from '../../parsers/errors.js';
import { isTargetNotFound, TARGET_NOT_FOUND, transportErrors } from '../errors.js';
import {
  checkListPrefix,
  checkObjectName,
  existsByStat,
  markSourceErrors,
  type ObjectInfo,
  SourceError,
  type Target,
} from './types.js';

export interface S3Options {
  /** e.g. http://127.0.0.1:9000 or https://s3.eu-west-1.amazonaws.com */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Per-request time limit (default 60 s). */
  timeoutMs?: number;
  /** Names per list request (S3 max-keys; the store's default, usually 1000, when unset). */
  listPageSize?: number;
  /** Attempts after the first for a request that failed transiently (default 5). */
  retries?: number;
  /** First back-off (default 250 ms), doubled per attempt up to MAX_BACKOFF_MS, with jitter. */
  retryBaseMs?: number;
  /** Bytes per part of a streamed upload (default 16 MiB; S3 wants at least 5 MiB but for the last). */
  partSize?: number;
}

export const DEFAULT_RETRIES = 5;
export const MAX_RETRIES = 20;
const DEFAULT_RETRY_BASE_MS = 250;
const MAX_BACKOFF_MS = 8000;
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
export const MIN_PART_SIZE = 5 * 1024 * 1024;
/** S3's limits: parts per upload, bytes per part. */
const MAX_PARTS = 10_000;
const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
/** Statuses that say "try again": an S3 InternalError, a proxy's bad gateway, SlowDown / unavailable, a timeout. */
const RETRY_STATUS = new Set([500, 502, 503, 504]);
/** Network failures worth another attempt (a connection refused is not: the store is down, say so at once). */
const RETRY_CAUSES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'TimeoutError',
]);
/** S3 error codes a 200 reply of CompleteMultipartUpload can carry that mean "try again". */
const RETRY_S3_CODES = new Set(['InternalError', 'SlowDown', 'ServiceUnavailable']);

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** RFC 3986 percent-encoding as SigV4 wants it (unreserved characters kept; `/` kept when asked). */
function uriEncode(s: string, keepSlash: boolean): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function xmlText(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

interface Request {
  method: 'GET' | 'PUT' | 'HEAD' | 'DELETE' | 'POST';
  /** Object key, or '' for the bucket itself. */
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array;
}

export class S3Target implements Target {
  readonly location: string;
  private readonly err;
  private readonly host: string;
  private readonly retries: number;
  private readonly partSize: number;
  /** Errors of one attempt that another attempt may not meet (a reset connection, a cut body). */
  private readonly transient = new WeakSet<object>();

  constructor(private readonly opts: S3Options) {
    const url = new URL(opts.endpoint);
    this.host = url.host;
    this.location = `${url.origin}/${opts.bucket}`;
    this.err = transportErrors(this.location, 'target');
    if (!BUCKET.test(opts.bucket)) {
      throw this.err.unsupported('TARGET_BAD_NAME', `bucket name ${JSON.stringify(opts.bucket)}`);
    }
    this.retries = opts.retries ?? DEFAULT_RETRIES;
    if (!Number.isInteger(this.retries) || this.retries < 0 || this.retries > MAX_RETRIES) {
      throw new RangeError(`retries ${this.retries} is not in 0..${MAX_RETRIES}`);
    }
    this.partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_SIZE || this.partSize > MAX_PART_SIZE) {
      throw new RangeError(`part size ${this.partSize} is not in ${MIN_PART_SIZE}..${MAX_PART_SIZE}`);
    }
  }

  /** Creates the bucket; an existing bucket of ours is success. */
  async createBucket(): Promise<void> {
    await this.call({ method: 'PUT', key: '' }, 'create bucket', async (r) => {
      if (!r.ok && r.status !== 409) throw await this.httpError(r, 'create bucket', '');
      await this.drain(r);
    });
  }

  /** Deletes the (empty) bucket. */
  async deleteBucket(): Promise<void> {
    await this.call({ method: 'DELETE', key: '' }, 'delete bucket', async (r) => {
      if (!r.ok && r.status !== 404) throw await this.httpError(r, 'delete bucket', '');
      await this.drain(r);
    });
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    checkObjectName(name, this.location);
    await this.call({ method: 'PUT', key: name, body: bytes }, 'put', async (r) => {
      if (!r.ok) throw await this.httpError(r, 'put', name);
      await this.drain(r);
    });
  }

  async putStream(name: string, source: AsyncIterable<Uint8Array>): Promise<void> {
    checkObjectName(name, this.location);
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    let upload: { id: string; etags: string[] } | undefined;
    try {
      for await (const piece of markSourceErrors(source)) {
        // copied: the source may reuse its buffer once asked for the next piece
        pending.push(Buffer.from(piece));
        pendingBytes += piece.length;
        while (pendingBytes >= this.partSize) {
          const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
          upload ??= { id: await this.startUpload(name), etags: [] };
          await this.putPart(name, upload, all.subarray(0, this.partSize));
          pending.length = 0;
          pendingBytes -= this.partSize;
          if (pendingBytes > 0) pending.push(all.subarray(this.partSize));
        }
      }
      const rest = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      if (!upload) {
        await this.put(name, rest);
        return;
      }
      if (pendingBytes > 0) await this.putPart(name, upload, rest);
      await this.completeUpload(name, upload);
    } catch (e) {
      if (upload) await this.abortUpload(name, upload.id).catch(() => {});
      throw e instanceof SourceError ? e.error : e;
    }
  }

  async get(name: string): Promise<Buffer> {
    checkObjectName(name, this.location);
    return this.call({ method: 'GET', key: name }, 'get', async (r) => {
      if (!r.ok) throw await this.httpError(r, 'get', name);
      return this.body(r, 'get', name);
    });
  }

  async getRange(name: string, offset: number, length: number): Promise<Buffer> {
    checkObjectName(name, this.location);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw this.err.corrupt('TARGET_BAD_RANGE', `range [${offset}, +${length}) of ${name}`, { name, offset, length });
    }
    const short = () =>
      this.err.truncated('TARGET_SHORT_READ', `${name} ends before [${offset}, +${length})`, { name, offset, length });
    if (length === 0) {
      // no byte range can say "nothing": check that the object exists and reaches offset
      if ((await this.stat(name)).size < offset) throw short();
      return Buffer.alloc(0);
    }
    const range = `bytes=${offset}-${offset + length - 1}`;
    return this.call({ method: 'GET', key: name, headers: { range } }, 'getRange', async (r) => {
      if (r.status === 416) {
        await this.drain(r);
        throw short();
      }
      if (!r.ok) throw await this.httpError(r, 'getRange', name);
      const b = await this.body(r, 'getRange', name);
      // 200 means the store ignored the range: take our slice of the whole object
      const slice = r.status === 206 ? b : b.subarray(offset, offset + length);
      if (slice.length !== length) throw short();
      return slice;
    });
  }

  async stat(name: string): Promise<ObjectInfo> {
    checkObjectName(name, this.location);
    return this.call({ method: 'HEAD', key: name }, 'stat', async (r) => {
      if (!r.ok) throw await this.httpError(r, 'stat', name);
      const size = Number(r.headers.get('content-length'));
      if (!Number.isSafeInteger(size) || size < 0) {
        throw this.err.io('TARGET_IO', `stat ${name}: no usable Content-Length`, { name });
      }
      return { name, size };
    });
  }

  exists(name: string): Promise<boolean> {
    return existsByStat(this, name);
  }

  async *list(prefix: string): AsyncIterable<string> {
    checkListPrefix(prefix, this.location);
    let marker = '';
    for (;;) {
      const query: Record<string, string> = { prefix };
      if (marker) query.marker = marker;
      if (this.opts.listPageSize) query['max-keys'] = String(this.opts.listPageSize);
      const xml = await this.call({ method: 'GET', key: '', query }, 'list', async (r) => {
        if (!r.ok) throw await this.httpError(r, 'list', prefix);
        return (await this.body(r, 'list', prefix)).toString('utf8');
      });
      const keys = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => xmlText(m[1]!));
      yield* keys;
      const truncated = /<IsTruncated>true<\/IsTruncated>/.test(xml);
      const next = keys.at(-1);
      if (!truncated || next === undefined || next <= marker) return;
      marker = next;
    }
  }

  async delete(name: string): Promise<void> {
    checkObjectName(name, this.location);
    await this.call({ method: 'DELETE', key: name }, 'delete', async (r) => {
      if (!r.ok && r.status !== 404) throw await this.httpError(r, 'delete', name);
      await this.drain(r);
    });
  }

  isNotFound(err: unknown): boolean {
    return isTargetNotFound(err);
  }

  /** CreateMultipartUpload: the upload's id. */
  private startUpload(name: string): Promise<string> {
    return this.call({ method: 'POST', key: name, query: { uploads: '' } }, 'putStream (start upload)', async (r) => {
      if (!r.ok) throw await this.httpError(r, 'putStream (start upload)', name);
      const xml = (await this.body(r, 'putStream (start upload)', name)).toString('utf8');
      const id = /<UploadId>([^<]+)<\/UploadId>/.exec(xml)?.[1];
      if (!id) throw this.err.io('TARGET_IO', `putStream ${name}: the store named no upload id`, { name });
      return xmlText(id);
    });
  }

  /** UploadPart: the part's ETag, kept for the completion. */
  private async putPart(name: string, upload: { id: string; etags: string[] }, bytes: Uint8Array): Promise<void> {
    const partNumber = upload.etags.length + 1;
    if (partNumber > MAX_PARTS) {
      throw this.err.limit(
        'TARGET_TOO_BIG',
        `putStream ${name}: more than ${MAX_PARTS} parts of ${this.partSize} bytes`,
        {
          name,
        },
      );
    }
    const op = `putStream (part ${partNumber})`;
    const query = { partNumber: String(partNumber), uploadId: upload.id };
    const etag = await this.call({ method: 'PUT', key: name, query, body: bytes }, op, async (r) => {
      if (!r.ok) throw await this.httpError(r, op, name);
      await this.drain(r);
      const tag = r.headers.get('etag');
      if (!tag) throw this.err.io('TARGET_IO', `${op} ${name}: the store sent no ETag`, { name });
      return tag;
    });
    upload.etags.push(etag);
  }

  /** CompleteMultipartUpload: the object appears, whole. */
  private async completeUpload(name: string, upload: { id: string; etags: string[] }): Promise<void> {
    const op = 'putStream (complete)';
    const parts = upload.etags
      .map((tag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${xmlEscape(tag)}</ETag></Part>`)
      .join('');
    const body = Buffer.from(`<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>`);
    await this.call({ method: 'POST', key: name, query: { uploadId: upload.id }, body }, op, async (r, attempt) => {
      // an earlier attempt completed it, and its reply was lost: the upload is gone, the object is there
      if (r.status === 404 && attempt > 0 && (await this.exists(name))) return this.drain(r);
      if (!r.ok) throw await this.httpError(r, op, name);
      // S3 may answer 200 and report the failure in the body
      const xml = (await this.body(r, op, name)).toString('utf8');
      const code = /<Error>[\s\S]*?<Code>([^<]*)<\/Code>/.exec(xml)?.[1];
      if (code !== undefined) {
        const e = this.err.io('TARGET_IO', `${op} ${name}: ${code}`, { name, s3Code: code });
        if (RETRY_S3_CODES.has(code)) this.transient.add(e);
        throw e;
      }
    });
  }

  /** AbortMultipartUpload: frees the parts of an upload that will not complete. */
  private async abortUpload(name: string, uploadId: string): Promise<void> {
    await this.call({ method: 'DELETE', key: name, query: { uploadId } }, 'putStream (abort)', (r) => this.drain(r));
  }

  /**
   * Sends `req` and hands the reply to `handle`, again after a back-off when
   * the store answers a retry status or the attempt fails transiently; the
   * last attempt's reply or error is final.
   */
  private async call<T>(req: Request, op: string, handle: (r: Response, attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= this.retries;
      try {
        const r = await this.send(req, op);
        if (last || !RETRY_STATUS.has(r.status)) return await handle(r, attempt);
        await this.drain(r).catch(() => {});
      } catch (e) {
        if (last || typeof e !== 'object' || e === null || !this.transient.has(e)) throw e;
      }
      await sleep(this.backoffMs(attempt));
    }
  }

  /** Exponential back-off, capped, with jitter so that many clients do not retry in step. */
  private backoffMs(attempt: number): number {
    const base = this.opts.retryBaseMs ?? DEFAULT_RETRY_BASE_MS;
    const ceiling = Math.min(MAX_BACKOFF_MS, base * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** Reads and drops a reply's body, so that its connection can be reused. */
  private async drain(r: Response): Promise<void> {
    if (!r.bodyUsed) await this.body(r, 'read reply', '');
  }

  private async body(r: Response, op: string, name: string): Promise<Buffer> {
    try {
      return Buffer.from(await r.arrayBuffer());
    } catch (e) {
      const err = this.err.io('TARGET_IO', `${op} ${name}: ${(e as Error).message}`, { name });
      // the connection broke mid-body: another attempt may get it whole
      this.transient.add(err);
      throw err;
    }
  }

  private async httpError(r: Response, op: string, name: string): Promise<Error> {
    const text = r.status === 404 || r.bodyUsed ? '' : await r.text().catch(() => '');
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? '';
    const msg = `${op} ${name}: HTTP ${r.status}${code ? ` ${code}` : ''}`;
    const details = { name, status: r.status, s3Code: code };
    if (r.status === 404) return this.err.notFound(TARGET_NOT_FOUND, msg, details);
    if (r.status === 401 || r.status === 403) return this.err.io('TARGET_ACCESS', msg, details);
    return this.err.io('TARGET_IO', msg, details);
  }

  /** Signs and sends one request; network failures become TARGET_IO errors. */
  private async send(req: Request, op: string): Promise<Response> {
    const { accessKeyId, secretAccessKey, region, bucket } = this.opts;
    const now = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const date = now.slice(0, 8);
    const path = `/${uriEncode(bucket, false)}${req.key ? `/${uriEncode(req.key, true)}` : ''}`;
    const query = Object.entries(req.query ?? {})
      .map(([k, v]) => [uriEncode(k, false), uriEncode(v, false)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const payloadHash = req.body ? createHash('sha256').update(req.body).digest('hex') : EMPTY_SHA256;
    const headers: Record<string, string> = {
      ...req.headers,
      host: this.host,
      'x-amz-date': now,
      'x-amz-content-sha256': payloadHash,
    };
    const names = Object.keys(headers)
      .map((h) => h.toLowerCase())
      .sort();
    const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v.trim()]));
    const canonical = [
      req.method,
      path,
      query,
      names.map((h) => `${h}:${lower[h]}\n`).join(''),
      names.join(';'),
      payloadHash,
    ].join('\n');
    const scope = `${date}/${region}/s3/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', now, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const key = hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), 's3'), 'aws4_request');
    const signature = createHmac('sha256', key).update(toSign).digest('hex');
    const authorization = `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
    const { host: _host, ...sent } = headers;
    const url = `${new URL(this.opts.endpoint).origin}${path}${query ? `?${query}` : ''}`;
    try {
      return await fetch(url, {
        method: req.method,
        headers: { ...sent, authorization },
        body: req.body,
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 60_000),
      });
    } catch (e) {
      if (isVdbakError(e)) throw e;
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
      const err = this.err.io('TARGET_IO', `${op} ${req.key}: ${(e as Error).message} (${cause})`, {
        name: req.key,
        errno: cause,
      });
      if (RETRY_CAUSES.has(cause)) this.transient.add(err);
      throw err;
    }
  }
}
