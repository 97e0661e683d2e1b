/**
 * Every failure the API answers with: an HTTP status and the body
 * `{ "error": { "code", "message" } }`. Typed errors keep their stable code;
 * anything untyped becomes a 500 with no detail (never a stack trace).
 */
import { isVdbakError, type VdbakError } from '../../parsers/errors.js';
import { BadQueryError } from '../browse/errors.js';
import { UsageError } from '../commands/usage.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Extra response headers (WWW-Authenticate, Allow). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export const badRequest = (code: string, message: string) => new HttpError(400, code, message);

export interface ErrorBody {
  error: { code: string; message: string };
}

/** Codes whose kind alone would give the wrong status. */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  REPO_LOCKED: 409,
  VM_VANISHED: 409,
  VM_AMBIGUOUS: 409,
  VOLUME_AMBIGUOUS: 409,
  PATH_DOTDOT: 400,
  // a restore folder outside every restore root, or one that cannot be resolved (a dangling symlink)
  RESTORE_TO_OUTSIDE_ROOTS: 403,
  RESTORE_TO_UNRESOLVABLE: 400,
};

const STATUS_BY_KIND: Readonly<Record<VdbakError['kind'], number>> = {
  NotFoundError: 404,
  UnsupportedError: 400,
  LimitError: 400,
  CancelledError: 409,
  // the repository's own data is damaged or unreadable: the server's problem, not the request's
  CorruptError: 500,
  TruncatedError: 500,
  ChainError: 500,
  IoError: 500,
};

/** The message of a typed error without the layer prefix and the image suffix (they name host paths). */
function plainMessage(e: VdbakError): string {
  const m = /^[a-z0-9]+: (.*?)(?: at offset \d+)?(?: \(inode\/record \d+\))? \[[A-Z0-9_]+\] in .*$/s.exec(e.message);
  return m?.[1] ?? e.message;
}

export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof BadQueryError) return new HttpError(400, e.code, e.message);
  if (e instanceof UsageError) return new HttpError(400, 'BAD_REQUEST', e.message);
  if (isVdbakError(e)) {
    const status = STATUS_BY_CODE[e.code] ?? STATUS_BY_KIND[e.kind];
    return new HttpError(status, e.code, status >= 500 ? `${e.kind}: ${plainMessage(e)}` : plainMessage(e));
  }
  return new HttpError(500, 'INTERNAL', 'internal error (see the daemon log)');
}

export function errorBody(e: HttpError): ErrorBody {
  return { error: { code: e.code, message: e.message } };
}
