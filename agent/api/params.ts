/**
 * Query parameters, declared per route: each route names the parameters it
 * takes and their types; an unknown or repeated parameter is a 400 (a typo
 * must not silently widen a query).
 */
import { badRequest } from './http-error.js';

export type ParamType = 'string' | 'integer' | 'boolean';
export interface ParamSpec {
  type: ParamType;
  required?: boolean;
  /** Allowed values (strings). */
  enum?: readonly string[];
  /** Inclusive bounds (integers). */
  min?: number;
  max?: number;
  description: string;
}
export type QuerySpec = Readonly<Record<string, ParamSpec>>;
export type QueryValues = Record<string, string | number | boolean | undefined>;

/** The longest query value taken (a path or a pattern). */
export const MAX_PARAM_CHARS = 4096;

export function parseQuery(params: URLSearchParams, spec: QuerySpec): QueryValues {
  const out: QueryValues = {};
  for (const key of new Set(params.keys())) {
    const p = spec[key];
    if (!p || !Object.hasOwn(spec, key)) {
      const known = Object.keys(spec);
      throw badRequest(
        'BAD_PARAM',
        `unknown query parameter '${key}'${known.length ? ` (known: ${known.join(', ')})` : ''}`,
      );
    }
    const all = params.getAll(key);
    if (all.length > 1) throw badRequest('BAD_PARAM', `query parameter '${key}' is given ${all.length} times`);
    const raw = all[0]!;
    if (raw.length > MAX_PARAM_CHARS) throw badRequest('BAD_PARAM', `query parameter '${key}' is too long`);
    if (raw.includes('\0')) throw badRequest('BAD_PARAM', `query parameter '${key}' holds a NUL character`);
    out[key] = convert(key, raw, p);
  }
  for (const [key, p] of Object.entries(spec)) {
    if (p.required && out[key] === undefined) throw badRequest('BAD_PARAM', `query parameter '${key}' is required`);
  }
  return out;
}

function convert(key: string, raw: string, p: ParamSpec): string | number | boolean {
  switch (p.type) {
    case 'integer': {
      if (!/^-?\d{1,15}$/.test(raw)) throw badRequest('BAD_PARAM', `'${key}' takes an integer, not '${raw}'`);
      const n = Number(raw);
      if ((p.min !== undefined && n < p.min) || (p.max !== undefined && n > p.max)) {
        throw badRequest('BAD_PARAM', `'${key}' must be in ${p.min ?? '-∞'}..${p.max ?? '∞'}, not ${n}`);
      }
      return n;
    }
    case 'boolean':
      if (raw === 'true' || raw === '1' || raw === '') return true;
      if (raw === 'false' || raw === '0') return false;
      throw badRequest('BAD_PARAM', `'${key}' takes true or false, not '${raw}'`);
    default:
      if (p.enum && !p.enum.includes(raw)) {
        throw badRequest('BAD_PARAM', `'${key}' takes one of ${p.enum.join(', ')}, not '${raw}'`);
      }
      if (p.required && raw === '') throw badRequest('BAD_PARAM', `'${key}' is empty`);
      return raw;
  }
}
