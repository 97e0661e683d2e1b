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

/**
 * V8 heap limits of a worker. A worker's live data is one task (≤ 512 entries
 * and their results); its bytes live outside the V8 heap. With Node's default
 * young generation (up to 3 × 16 MiB semi-spaces) each worker held ~60 MiB of
 * RSS; with 4 MiB, ~15 MiB: a backup of 200 000 changed files peaked at 474 MiB
 * with the defaults and at 380 MiB with these, at the same CPU time for a
 * 1 GiB full backup (benchmarks/README.md). The old generation is only capped
 * (a worker past it fails its task, not the process): far above what a task needs.
 */
export const WORKER_HEAP_LIMITS = Object.freeze({ maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 });

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
        resourceLimits: { ...WORKER_HEAP_LIMITS },
      });
      return pool.run(task) as Promise<TaskResult>;
    },
    close: async () => {
      await pool?.destroy();
    },
  };
}
