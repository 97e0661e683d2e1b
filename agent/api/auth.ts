/**
 * Bearer-token check. Both sides are hashed first so the comparison takes the
 * same time whatever the lengths, and timingSafeEqual compares the digests.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { HttpError } from './http-error.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function unauthorized(message: string, error?: string): HttpError {
  return new HttpError(401, 'UNAUTHORIZED', message, {
    'WWW-Authenticate': `Bearer realm="vdbak"${error ? `, error="${error}"` : ''}`,
  });
}

/** Throws a 401 unless the request carries `Authorization: Bearer <token>`; an empty configured token admits no one. */
export function checkBearer(req: IncomingMessage, token: string): void {
  const header = req.headers.authorization;
  if (!header) throw unauthorized('this route needs Authorization: Bearer <token>');
  const m = /^Bearer +(\S+) *$/i.exec(header);
  if (!m) throw unauthorized('the Authorization header is not "Bearer <token>"', 'invalid_request');
  const ok = timingSafeEqual(digest(m[1]!), digest(token));
  if (!ok || token === '') throw unauthorized('the token is not valid', 'invalid_token');
}
