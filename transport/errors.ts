/**
 * Typed errors for transport/ (chunk codec, packs, targets), built on the
 * parsers' serializable error classes (parsers/errors.ts) so that the agent
 * handles one family of errors with stable codes: `CODEC_*`, `PACK_*`,
 * `TARGET_*`.
 */
import { type Errors, errorsFor, type Layer, NotFoundError } from '../parsers/errors.js';

export type TransportLayer = Extract<Layer, 'codec' | 'pack' | 'target'>;

/** Error factory bound to one object (pack name, target path) and a transport layer. */
export function transportErrors(image: string, layer: TransportLayer): Errors {
  return errorsFor({ image, layer });
}

/** The code every target uses for "no object of that name". */
export const TARGET_NOT_FOUND = 'TARGET_NOT_FOUND';

export function isTargetNotFound(e: unknown): boolean {
  return e instanceof NotFoundError && e.code === TARGET_NOT_FOUND;
}
