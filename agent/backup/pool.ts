/**
 * The worker pool (piscina) that does a backup's CPU work. Workers run the
 * compiled agent/backup/worker.js; from the TypeScript sources (tests) the
 * built copy in dist/ is used.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { ReadTask, TaskResult } from './worker.js';

function workerFile(): string {
  const here = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (existsSync(here)) return here;
  const built = fileURLToPath(new URL('../../dist/agent/backup/worker.js', import.meta.url));
  if (existsSync(built)) return built;
  throw new Error(`the backup worker is not built (${built}): run 'npm run build'`);
}

/** Threads by default: every core but none beyond 8 (a backup shares the controller with the VMs). */
export function defaultThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

export interface BackupPool {
  readonly threads: number;
  run(task: ReadTask): Promise<TaskResult>;
  close(): Promise<void>;
}

export function createPool(threads = defaultThreads()): BackupPool {
  // started on the first task: a backup that finds nothing changed never pays for the workers
  let pool: Piscina | undefined;
  return {
    threads,
    run: (task) => {
      pool ??= new Piscina({
        filename: workerFile(),
        minThreads: threads,
        maxThreads: threads,
        // no idle teardown during a job: workers keep their open disks
        idleTimeout: 60_000,
      });
      return pool.run(task) as Promise<TaskResult>;
    },
    close: async () => {
      await pool?.destroy();
    },
  };
}
