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
 */
import { createHash, createHmac } from 'node:crypto';
import { isVdbakError } from '../../parsers/errors.js';
import { isTargetNotFound, TARGET_NOT_FOUND, transportErrors } from '../errors.js';
import { checkListPrefix, checkObjectName, existsByStat, type ObjectInfo, type Target } from './types.js';

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
}

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

function xmlText(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

interface Request {
  method: 'GET' | 'PUT' | 'HEAD' | 'DELETE';
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

  constructor(private readonly opts: S3Options) {
    const url = new URL(opts.endpoint);
    this.host = url.host;
    this.location = `${url.origin}/${opts.bucket}`;
    this.err = transportErrors(this.location, 'target');
    if (!BUCKET.test(opts.bucket)) {
      throw this.err.unsupported('TARGET_BAD_NAME', `bucket name ${JSON.stringify(opts.bucket)}`);
    }
  }

  /** Creates the bucket; an existing bucket of ours is success. */
  async createBucket(): Promise<void> {
    const r = await this.send({ method: 'PUT', key: '' }, 'create bucket');
    if (r.ok || r.status === 409) return;
    throw await this.httpError(r, 'create bucket', '');
  }

  /** Deletes the (empty) bucket. */
  async deleteBucket(): Promise<void> {
    const r = await this.send({ method: 'DELETE', key: '' }, 'delete bucket');
    if (!r.ok && r.status !== 404) throw await this.httpError(r, 'delete bucket', '');
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    checkObjectName(name, this.location);
    const r = await this.send({ method: 'PUT', key: name, body: bytes }, 'put');
    if (!r.ok) throw await this.httpError(r, 'put', name);
    await r.arrayBuffer();
  }

  async get(name: string): Promise<Buffer> {
    checkObjectName(name, this.location);
    const r = await this.send({ method: 'GET', key: name }, 'get');
    if (!r.ok) throw await this.httpError(r, 'get', name);
    return this.body(r, 'get', name);
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
    const r = await this.send({ method: 'GET', key: name, headers: { range } }, 'getRange');
    if (r.status === 416) {
      await r.arrayBuffer();
      throw short();
    }
    if (!r.ok) throw await this.httpError(r, 'getRange', name);
    const b = await this.body(r, 'getRange', name);
    // 200 means the store ignored the range: take our slice of the whole object
    const slice = r.status === 206 ? b : b.subarray(offset, offset + length);
    if (slice.length !== length) throw short();
    return slice;
  }

  async stat(name: string): Promise<ObjectInfo> {
    checkObjectName(name, this.location);
    const r = await this.send({ method: 'HEAD', key: name }, 'stat');
    if (!r.ok) throw await this.httpError(r, 'stat', name);
    const size = Number(r.headers.get('content-length'));
    if (!Number.isSafeInteger(size) || size < 0) {
      throw this.err.io('TARGET_IO', `stat ${name}: no usable Content-Length`, { name });
    }
    return { name, size };
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
      const r = await this.send({ method: 'GET', key: '', query }, 'list');
      if (!r.ok) throw await this.httpError(r, 'list', prefix);
      const xml = (await this.body(r, 'list', prefix)).toString('utf8');
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
    const r = await this.send({ method: 'DELETE', key: name }, 'delete');
    if (!r.ok && r.status !== 404) throw await this.httpError(r, 'delete', name);
    await r.arrayBuffer();
  }

  isNotFound(err: unknown): boolean {
    return isTargetNotFound(err);
  }

  private async body(r: Response, op: string, name: string): Promise<Buffer> {
    try {
      return Buffer.from(await r.arrayBuffer());
    } catch (e) {
      throw this.err.io('TARGET_IO', `${op} ${name}: ${(e as Error).message}`, { name });
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
      throw this.err.io('TARGET_IO', `${op} ${req.key}: ${(e as Error).message} (${cause})`, {
        name: req.key,
        errno: cause,
      });
    }
  }
}
