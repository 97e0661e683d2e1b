/**
 * The daemon's root logger: pino, one JSON object per line. Everything about
 * a job logs through `jobLogger`, a child that carries the job's id and kind,
 * so `grep '"job":12'` finds every line about job 12.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from '../config/types.js';
import type { JobKind } from './types.js';

export interface LoggerOptions {
  level: LogLevel;
  /** Where the lines go: a stream (tests capture it), a file path (appended), or stdout by default. */
  destination?: DestinationStream | NodeJS.WritableStream | string;
}

export function createLogger(opts: LoggerOptions): Logger {
  const options = {
    level: opts.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const d = opts.destination;
  // synchronous writes: a daemon logs a few lines a second, and the last ones before an exit must not be lost
  if (d === undefined) return pino(options, pino.destination({ dest: 1, sync: true }));
  if (typeof d === 'string') return pino(options, pino.destination({ dest: d, append: true, mkdir: true, sync: true }));
  return pino(options, d as DestinationStream);
}

/** The child logger of one job: every line carries `job` and `kind`. */
export function jobLogger(log: Logger, job: { id: number; kind: JobKind }): Logger {
  return log.child({ job: job.id, kind: job.kind });
}
