/**
 * A small in-memory S3 server on loopback, for what a real store cannot be
 * made to do on demand: answer 503 SlowDown (or 500, 502, 504) or reset the
 * connection for the next matching requests, show every request it got, and
 * show the multipart uploads still open. It speaks the subset S3Target uses
 * (path-style objects, ranged GET, HEAD, ListObjects with marker, multipart
 * upload) and does not check signatures (the Swift store's tests do).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Target, type S3Options } from '../../transport/targets/s3.js';

/**
 * An HTTP status to answer with (an S3 error body), or a connection cut before
 * the request is done, during the reply's body, or after the request was done
 * (the reply lost).
 */
export type FaultReply = number | 'reset' | 'reset-mid-body' | 'reset-after';

export interface Fault {
  /** Which request it strikes, e.g. `PUT`, `GET ?uploads`; any when unset. */
  match?: (method: string, key: string, query: URLSearchParams) => boolean;
  reply: FaultReply;
  /** How many matching requests it strikes (default 1). */
  times?: number;
}

interface Upload {
  key: string;
  parts: Map<number, Buffer>;
}

const xml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export class FakeS3 {
  readonly objects = new Map<string, Buffer>();
  readonly uploads = new Map<string, Upload>();
  /** Every request, as `METHOD key?query`, in arrival order. */
  readonly requests: string[] = [];
  readonly faults: Fault[] = [];
  private server: Server | undefined;
  endpoint = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, res, Buffer.concat(chunks)));
    });
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((ok) => this.server?.close(() => ok()) ?? ok());
  }

  /** A target on this server (fast retries unless told otherwise). */
  target(opts: Partial<S3Options> = {}): S3Target {
    return new S3Target({
      endpoint: this.endpoint,
      bucket: 'fake-bucket',
      accessKeyId: 'a',
      secretAccessKey: 'b',
      region: 'us-east-1',
      retryBaseMs: 1,
      ...opts,
    });
  }

  /** Requests whose `METHOD key?query` line matches `re`. */
  count(re: RegExp): number {
    return this.requests.filter((r) => re.test(r)).length;
  }

  private strike(method: string, key: string, query: URLSearchParams): FaultReply | undefined {
    const i = this.faults.findIndex((f) => (f.times ?? 1) > 0 && (f.match?.(method, key, query) ?? true));
    if (i < 0) return undefined;
    const f = this.faults[i]!;
    f.times = (f.times ?? 1) - 1;
    if (f.times === 0) this.faults.splice(i, 1);
    return f.reply;
  }

  private handle(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const [, , ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    const q = url.searchParams;
    const method = req.method ?? 'GET';
    this.requests.push(`${method} ${key}${url.search}`);
    const reply = (status: number, text = '', headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-length': String(Buffer.byteLength(text)), ...headers });
      res.end(method === 'HEAD' ? undefined : text);
    };
    const error = (status: number, code: string): void =>
      reply(status, `<?xml version="1.0"?><Error><Code>${code}</Code></Error>`);

    const fault = this.strike(method, key, q);
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault === 'reset-after') {
      // done as asked, and the reply lost on the way
      res.writeHead = () => res;
      res.write = () => true;
      res.end = () => {
        req.socket.destroy();
        return res;
      };
    }
    if (typeof fault === 'number') {
      error(fault, fault === 503 ? 'SlowDown' : fault === 403 ? 'AccessDenied' : 'InternalError');
      return;
    }

    if (key === '') {
      if (method === 'PUT' || method === 'DELETE') return reply(200);
      const prefix = q.get('prefix') ?? '';
      const marker = q.get('marker') ?? '';
      const max = Number(q.get('max-keys') ?? 1000);
      const names = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && k > marker).sort();
      const page = names.slice(0, max);
      const keys = page.map((k) => `<Contents><Key>${xml(k)}</Key></Contents>`).join('');
      return reply(
        200,
        `<?xml version="1.0"?><ListBucketResult><IsTruncated>${names.length > max}</IsTruncated>${keys}</ListBucketResult>`,
      );
    }
    if (method === 'POST' && q.has('uploads')) {
      const id = randomBytes(8).toString('hex');
      this.uploads.set(id, { key, parts: new Map() });
      return reply(200, `<InitiateMultipartUploadResult><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`);
    }
    const uploadId = q.get('uploadId');
    if (uploadId !== null) {
      const up = this.uploads.get(uploadId);
      if (method === 'DELETE') {
        this.uploads.delete(uploadId);
        return reply(204);
      }
      if (!up || up.key !== key) return error(404, 'NoSuchUpload');
      if (method === 'PUT') {
        up.parts.set(Number(q.get('partNumber')), body);
        return reply(200, '', { etag: `"${createHash('md5').update(body).digest('hex')}"` });
      }
      if (method === 'POST') {
        const numbers = [...body.toString().matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => Number(m[1]));
        if (numbers.some((n) => !up.parts.has(n))) return error(400, 'InvalidPart');
        this.objects.set(key, Buffer.concat(numbers.map((n) => up.parts.get(n)!)));
        this.uploads.delete(uploadId);
        return reply(200, '<CompleteMultipartUploadResult></CompleteMultipartUploadResult>');
      }
    }
    const obj = this.objects.get(key);
    if (method === 'PUT') {
      this.objects.set(key, body);
      return reply(200);
    }
    if (method === 'DELETE') {
      this.objects.delete(key);
      return reply(204);
    }
    if (!obj) return error(404, 'NoSuchKey');
    if (method === 'HEAD') {
      res.writeHead(200, { 'content-length': String(obj.length) });
      res.end();
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    let status = 200;
    let out = obj;
    if (range) {
      const from = Number(range[1]);
      if (from >= obj.length) return error(416, 'InvalidRange');
      out = obj.subarray(from, Math.min(obj.length, Number(range[2]) + 1));
      status = 206;
    }
    if (fault === 'reset-mid-body') {
      res.writeHead(status, { 'content-length': String(out.length) });
      res.write(out.subarray(0, out.length >>> 1), () => req.socket.destroy());
      return;
    }
    res.writeHead(status, { 'content-length': String(out.length) });
    res.end(out);
  }
}
