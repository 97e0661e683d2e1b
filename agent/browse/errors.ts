/**
 * A query the user got wrong (a bad pattern, date or limit). It is a UsageError
 * so the CLI keeps exiting 2 with its usage text, and it carries a stable code
 * so the HTTP API can answer 400 with it.
 */
import { UsageError } from '../commands/usage.js';

export class BadQueryError extends UsageError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
