/**
 * Typed, serializable errors for everything that reads untrusted bytes.
 *
 * Every error names the image (file path or device description), the layer that
 * found the problem, a stable machine-readable code and, where it applies, the
 * byte offset it concerns. Errors cross worker threads as plain JSON
 * (`toJSON` / `errorFromJSON`), so they carry no references to live objects.
 *
 * One class per *kind* of failure; the `code` says exactly which check failed.
 * Codes are stable strings in SCREAMING_SNAKE_CASE, prefixed by the format
 * (`VMDK_BAD_MAGIC`, `GPT_HEADER_CRC`, `EXT_EXTENT_DEPTH` …). Parsers never
 * throw bare `Error` for bad input.
 */

/** Which layer of the stack raised the error (DESIGN.md: image → volume → filesystem …). */
export type Layer =
  | 'file'
  | 'raw'
  | 'vmdk'
  | 'qcow2'
  | 'disk'
  | 'volume'
  | 'mbr'
  | 'gpt'
  | 'fs'
  | 'ext'
  | 'ntfs'
  | 'codec'
  | 'repo'
  | 'catalog'
  | 'restore'
  | 'pack'
  | 'target'
  | 'job'
  | 'config'
  | 'api';

/** Where an error happened: enough to find the bytes again. */
export interface ErrorContext {
  /** Path of the image file (or a description of the device) being parsed. */
  image: string;
  layer: Layer;
}

export interface ErrorDetails {
  /** Byte offset the problem concerns, in the coordinates of `image` for this layer. */
  offset?: number | undefined;
  /** Inode number (ext) or MFT record number (NTFS) the problem concerns. */
  inode?: number | undefined;
  /** Any further small, JSON-safe facts (expected/actual values, limits). */
  [key: string]: unknown;
}

export type ErrorKind =
  | 'CorruptError'
  | 'TruncatedError'
  | 'UnsupportedError'
  | 'LimitError'
  | 'ChainError'
  | 'NotFoundError'
  | 'IoError'
  | 'CancelledError';

export interface SerializedError {
  kind: ErrorKind;
  code: string;
  message: string;
  image: string;
  layer: Layer;
  details: ErrorDetails;
}

export abstract class VdbakError extends Error {
  abstract readonly kind: ErrorKind;
  readonly code: string;
  readonly image: string;
  readonly layer: Layer;
  readonly details: ErrorDetails;

  constructor(ctx: ErrorContext, code: string, message: string, details: ErrorDetails = {}) {
    const where = details.offset !== undefined ? ` at offset ${details.offset}` : '';
    const ino = details.inode !== undefined ? ` (inode/record ${details.inode})` : '';
    super(`${ctx.layer}: ${message}${where}${ino} [${code}] in ${ctx.image}`);
    this.code = code;
    this.image = ctx.image;
    this.layer = ctx.layer;
    this.details = details;
  }

  get offset(): number | undefined {
    return this.details.offset;
  }

  toJSON(): SerializedError {
    return {
      kind: this.kind,
      code: this.code,
      message: this.message,
      image: this.image,
      layer: this.layer,
      details: this.details,
    };
  }
}

/** A structure is present but its contents are invalid (bad magic, checksum, impossible value). */
export class CorruptError extends VdbakError {
  readonly kind = 'CorruptError' as const;
  override name = 'CorruptError';
}
/** The input ends before a structure it declares. */
export class TruncatedError extends VdbakError {
  readonly kind = 'TruncatedError' as const;
  override name = 'TruncatedError';
}
/** A valid feature or format we do not (yet) read. */
export class UnsupportedError extends VdbakError {
  readonly kind = 'UnsupportedError' as const;
  override name = 'UnsupportedError';
}
/** A declared size, count or depth exceeds what we accept or what the input can justify. */
export class LimitError extends VdbakError {
  readonly kind = 'LimitError' as const;
  override name = 'LimitError';
}
/** A snapshot/backing chain is broken: missing parent, CID mismatch, loop. */
export class ChainError extends VdbakError {
  readonly kind = 'ChainError' as const;
  override name = 'ChainError';
}
/** A path, entry or stream asked for does not exist. */
export class NotFoundError extends VdbakError {
  readonly kind = 'NotFoundError' as const;
  override name = 'NotFoundError';
}
/** The operating system refused an I/O (open, read). */
export class IoError extends VdbakError {
  readonly kind = 'IoError' as const;
  override name = 'IoError';
}

/** Work stopped because it was asked to (job cancel, daemon shutdown); nothing is damaged. */
export class CancelledError extends VdbakError {
  readonly kind = 'CancelledError' as const;
  override name = 'CancelledError';
}

const KINDS = {
  CorruptError,
  TruncatedError,
  UnsupportedError,
  LimitError,
  ChainError,
  NotFoundError,
  IoError,
  CancelledError,
} as const;

/** Rebuilds a typed error on the other side of a worker boundary. */
export function errorFromJSON(s: SerializedError): VdbakError {
  const Cls = KINDS[s.kind];
  const e = new Cls({ image: s.image, layer: s.layer }, s.code, '', s.details);
  e.message = s.message;
  return e;
}

export function isVdbakError(e: unknown): e is VdbakError {
  return e instanceof VdbakError;
}

/**
 * Short-hand factory bound to one image and layer, so parsers write
 * `throw err.corrupt('VMDK_BAD_MAGIC', 'not a sparse extent', { offset: 0 })`.
 */
export function errorsFor(ctx: ErrorContext) {
  return {
    ctx,
    corrupt: (code: string, msg: string, d?: ErrorDetails) => new CorruptError(ctx, code, msg, d),
    truncated: (code: string, msg: string, d?: ErrorDetails) => new TruncatedError(ctx, code, msg, d),
    unsupported: (code: string, msg: string, d?: ErrorDetails) => new UnsupportedError(ctx, code, msg, d),
    limit: (code: string, msg: string, d?: ErrorDetails) => new LimitError(ctx, code, msg, d),
    chain: (code: string, msg: string, d?: ErrorDetails) => new ChainError(ctx, code, msg, d),
    notFound: (code: string, msg: string, d?: ErrorDetails) => new NotFoundError(ctx, code, msg, d),
    io: (code: string, msg: string, d?: ErrorDetails) => new IoError(ctx, code, msg, d),
    cancelled: (code: string, msg: string, d?: ErrorDetails) => new CancelledError(ctx, code, msg, d),
  };
}
export type Errors = ReturnType<typeof errorsFor>;
