/**
 * Throttle benchmark (issue 6 §5): a foreground workload's throughput alone,
 * next to the same workload while a backup reads a disk image on the same
 * filesystem — throttled (ThrottleLoop on the real sensor, default limits)
 * and, for reference, unthrottled. Target: foreground with the throttled
 * backup ≥ 90 % of alone, and the backup still completes.
 *
 * The foreground is dd with O_DIRECT (it bypasses the page cache, as a VM's
 * disk I/O does): reading `--fg-mib` MiB, and writing `--fg-write-mib` MiB
 * over the start of the same file, each `--fg-passes` times in a row. The backup is `--threads` worker threads
 * reading the image (random bytes, `--mib` MiB, its page cache dropped
 * before each run with dd iflag=nocache) in 4 MiB reads through
 * RawImage → ThrottledDevice, as the backup workers do; this file is also
 * the worker's code. The backup starts with the foreground and runs to its
 * end after it. Each round measures the foreground alone before and after
 * the runs with a backup and uses the mean (other work on a shared machine
 * drifts); ratios are per round, and the summary is their median.
 *
 * Run: npm run build && node dist/benchmarks/throttle.js [--runs N] [--mib N]
 *      [--fg-mib N] [--fg-write-mib N] [--fg-passes N] [--threads N]
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { TokenBucket } from '../agent/throttle/bucket.js';
import { formatRate } from '../agent/throttle/controller.js';
import { ThrottledDevice } from '../agent/throttle/device.js';
import { ThrottleLoop } from '../agent/throttle/loop.js';
import { RawImage } from '../parsers/disk/raw.js';
import { arg, cached, CACHE, MiB } from './lib.js';

const READ = 4 * MiB;

interface WorkerJob {
  throttleBench: true;
  bucket: SharedArrayBuffer;
  image: string;
  start: number;
  end: number;
}

/** Worker side: read [start, end) of the image through the bucket, then report. */
function workerMain(job: WorkerJob): void {
  const dev = new ThrottledDevice(new RawImage(job.image), TokenBucket.attach(job.bucket));
  let bytes = 0;
  for (let off = job.start; off < job.end; off += READ) {
    bytes += dev.read(off, Math.min(READ, job.end - off)).length;
  }
  dev.close();
  parentPort?.postMessage(bytes);
}

if (!isMainThread && (workerData as WorkerJob | undefined)?.throttleBench) {
  workerMain(workerData as WorkerJob);
}

const RUNS = arg('runs', 3);
const IMAGE_MIB = arg('mib', 2048);
const FG_MIB = arg('fg-mib', 4096);
const FG_WRITE_MIB = arg('fg-write-mib', 2048);
const THREADS = arg('threads', 2);
/** Passes of each foreground workload per measurement: longer runs, less noise. */
const PASSES = arg('fg-passes', 2);
const DIR = join(CACHE, 'throttle');

/** Runs a command without blocking the event loop (the throttle's timer must keep running). */
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(err) : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

/** dd's own timing of its copy, in seconds. */
async function dd(args: string[]): Promise<number> {
  const out = await run('dd', args);
  const m = /copied, ([\d.]+) s/.exec(out);
  if (!m) throw new Error(`dd printed no timing: ${out}`);
  return Number(m[1]);
}

type Workload = { name: string; mib: number; go: () => Promise<number> };

/** Runs one pass of a workload PASSES times; returns the seconds summed. */
async function passes(one: () => Promise<number>): Promise<number> {
  let s = 0;
  for (let i = 0; i < PASSES; i++) s += await one();
  return s;
}

function workloads(fgFile: string, fgWrite: string): Workload[] {
  return [
    {
      name: 'direct read 1 MiB',
      mib: FG_MIB * PASSES,
      go: () => passes(() => dd([`if=${fgFile}`, 'of=/dev/null', 'bs=1M', 'iflag=direct'])),
    },
    {
      name: 'direct write 1 MiB',
      mib: FG_WRITE_MIB * PASSES,
      go: () =>
        passes(() =>
          dd(['if=/dev/zero', `of=${fgWrite}`, 'bs=1M', `count=${FG_WRITE_MIB}`, 'oflag=direct', 'conv=notrunc']),
        ),
    },
  ];
}

interface Backup {
  done: Promise<number>;
  startedAt: number;
}

/** Starts the backup readers on `bucket`; `done` resolves with the seconds they took. */
function startBackup(image: string, bucket: TokenBucket): Backup {
  const size = IMAGE_MIB * MiB;
  const per = Math.ceil(size / THREADS / READ) * READ;
  const startedAt = performance.now();
  const parts: Promise<number>[] = [];
  for (let i = 0; i < THREADS; i++) {
    const start = i * per;
    const end = Math.min(size, start + per);
    if (start >= end) continue;
    const w = new Worker(fileURLToPath(import.meta.url), {
      workerData: { throttleBench: true, bucket: bucket.buffer, image, start, end } satisfies WorkerJob,
    });
    parts.push(
      new Promise((resolve, reject) => {
        w.once('message', (n: number) => resolve(n));
        w.once('error', reject);
      }),
    );
  }
  const done = Promise.all(parts).then((n) => {
    const total = n.reduce((a, b) => a + b, 0);
    if (total !== size) throw new Error(`backup read ${total} of ${size} bytes`);
    return (performance.now() - startedAt) / 1000;
  });
  return { done, startedAt };
}

const dropCache = (file: string): Promise<string> =>
  run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);

interface Round {
  alone: number;
  throttled: number;
  unthrottled: number;
  backupThrottled: number;
  backupUnthrottled: number;
  modes: Record<string, number>;
  reasons: string[];
}

async function round(w: Workload, image: string): Promise<Round> {
  const aloneBefore = await w.go();

  await dropCache(image);
  const modes: Record<string, number> = {};
  const reasons: string[] = [];
  const loop = new ThrottleLoop({
    paths: [DIR],
    onChange: (s) => reasons.push(`${s.mode}: ${s.reason}`),
  });
  const timer = setInterval(() => {
    const m = loop.status().mode;
    modes[m] = (modes[m] ?? 0) + 1;
  }, 250);
  loop.start();
  const b1 = startBackup(image, loop.bucket);
  const throttled = await w.go();
  const backupThrottled = await b1.done;
  clearInterval(timer);
  loop.stop();

  await dropCache(image);
  const open = TokenBucket.create(0);
  open.close(); // a closed bucket does not limit
  const b2 = startBackup(image, open);
  const unthrottled = await w.go();
  const backupUnthrottled = await b2.done;
  // alone before and after (A-B-A): the machine's drift over the round cancels out
  const alone = (aloneBefore + (await w.go())) / 2;
  return { alone, throttled, unthrottled, backupThrottled, backupUnthrottled, modes, reasons };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
};
const pct = (x: number): string => `${(x * 100).toFixed(0)} %`;

async function main(): Promise<void> {
  mkdirSync(DIR, { recursive: true });
  const image = cached(
    `throttle/image-${IMAGE_MIB}.raw`,
    'head -c $(( $2 * 1048576 )) /dev/urandom >"$1"',
    String(IMAGE_MIB),
  );
  const fgFile = cached(
    `throttle/foreground-${FG_MIB}.raw`,
    'head -c $(( $2 * 1048576 )) /dev/zero >"$1"; sync',
    String(FG_MIB),
  );
  // the writes go over the read file's first FG_WRITE_MIB MiB: nothing grows
  const fgWrite = fgFile;
  const probe = new ThrottleLoop({ paths: [DIR] }).status();
  console.log(`devices under ${DIR}: ${probe.devices.join(', ') || 'none'} ${probe.notes.join('; ')}`);
  console.log(`backup: ${THREADS} threads reading ${IMAGE_MIB} MiB; ${RUNS} interleaved rounds per workload`);
  for (const w of workloads(fgFile, fgWrite)) {
    const rounds: Round[] = [];
    for (let r = 0; r < RUNS; r++) {
      const x = await round(w, image);
      rounds.push(x);
      const mibs = (s: number): string => `${(w.mib / s).toFixed(0)} MiB/s`;
      console.log(
        `${w.name} round ${r + 1}: alone ${mibs(x.alone)}, with throttled backup ${mibs(x.throttled)} (${pct(x.alone / x.throttled)}), ` +
          `with unthrottled backup ${mibs(x.unthrottled)} (${pct(x.alone / x.unthrottled)}); ` +
          `backup ${x.backupThrottled.toFixed(1)} s throttled / ${x.backupUnthrottled.toFixed(1)} s unthrottled; ` +
          `throttle modes ${JSON.stringify(x.modes)}`,
      );
      for (const reason of x.reasons.slice(0, 12)) console.log(`    ${reason}`);
    }
    const ratioT = median(rounds.map((x) => x.alone / x.throttled));
    const ratioU = median(rounds.map((x) => x.alone / x.unthrottled));
    const backupT = median(rounds.map((x) => x.backupThrottled));
    const backupU = median(rounds.map((x) => x.backupUnthrottled));
    console.log(
      `== ${w.name}: foreground with throttled backup ${pct(ratioT)} of alone (target ≥ 90 %), ` +
        `with unthrottled ${pct(ratioU)}; backup completes in ${backupT.toFixed(1)} s throttled ` +
        `(${formatRate((IMAGE_MIB * MiB) / backupT)} average) vs ${backupU.toFixed(1)} s unthrottled`,
    );
  }
}

if (isMainThread) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
