/**
 * Request bodies: JSON objects of known fields only, at most MAX_BODY_BYTES.
 * An unknown field is refused, so a typo ("overwirte") never passes silently.
 */
import type { IncomingMessage } from 'node:http';
import { badRequest, HttpError } from './http-error.js';

/** Every body this API takes is a few short strings. */
export const MAX_BODY_BYTES = 64 * 1024;
/** The longest string a body field may hold (a path in a backup, a folder). */
export const MAX_FIELD_CHARS = 4096;

/** Lists in a body are short (a datastore map); their entries are checked by the job queue. */
export const MAX_ARRAY_ITEMS = 256;

export type FieldType = 'string' | 'boolean' | 'array';
export interface FieldSpec {
  type: FieldType;
  required?: boolean;
}
export type BodySpec = Readonly<Record<string, FieldSpec>>;

function tooLarge(): HttpError {
  return new HttpError(413, 'BODY_TOO_LARGE', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
}

export async function readBody(req: IncomingMessage, max = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) throw tooLarge();
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) throw tooLarge();
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** Parses and checks a JSON body against `spec`. */
export type FieldValue = string | boolean | unknown[];

export async function readJson(req: IncomingMessage, spec: BodySpec): Promise<Record<string, FieldValue>> {
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `the body must be application/json, not ${type}`);
  }
  const raw = await readBody(req);
  // a POST that needs nothing (cancel) may come without a body
  if (raw.length === 0 && !Object.values(spec).some((f) => f.required)) return {};
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw badRequest('BAD_JSON', `the body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest('BAD_BODY', 'the body must be a JSON object');
  }
  const obj = value as Record<string, unknown>;
  const out: Record<string, FieldValue> = {};
  for (const key of Object.keys(obj)) {
    if (!Object.hasOwn(spec, key)) {
      throw badRequest('BAD_BODY', `unknown field '${key}' (known: ${Object.keys(spec).join(', ')})`);
    }
  }
  for (const [key, f] of Object.entries(spec)) {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (f.required) throw badRequest('BAD_BODY', `field '${key}' is required`);
      continue;
    }
    if (f.type === 'array' ? !Array.isArray(v) : typeof v !== f.type) {
      throw badRequest('BAD_BODY', `field '${key}' must be a${f.type === 'array' ? 'n' : ''} ${f.type}`);
    }
    if (Array.isArray(v) && v.length > MAX_ARRAY_ITEMS) {
      throw badRequest('BAD_BODY', `field '${key}' holds more than ${MAX_ARRAY_ITEMS} items`);
    }
    if (typeof v === 'string') {
      if (v.length > MAX_FIELD_CHARS) throw badRequest('BAD_BODY', `field '${key}' is longer than ${MAX_FIELD_CHARS}`);
      if (v.includes('\0')) throw badRequest('BAD_BODY', `field '${key}' holds a NUL character`);
      if (f.required && v === '') throw badRequest('BAD_BODY', `field '${key}' is empty`);
    }
    out[key] = v as FieldValue;
  }
  return out;
}
