/**
 * Worker threads for the throttle tests. The workers of a real backup run
 * compiled JavaScript (dist/), which the tests must not depend on being
 * fresh; so the few sources a test worker needs are transpiled here
 * (TypeScript's transpileModule, same relative layout) into a scratch folder,
 * and a small worker script imports them from there.
 *
 * The worker script reads a file through RawImage → ThrottledDevice on the
 * shared bucket, as a backup worker would, counting the bytes it got into a
 * shared progress array until told to stop.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import { ROOT } from '../helpers/fixtures.js';

const SOURCES = [
  'parsers/errors.ts',
  'parsers/bytes.ts',
  'parsers/blockdevice.ts',
  'parsers/disk/file.ts',
  'parsers/disk/raw.ts',
  'parsers/disk/types.ts',
  'agent/throttle/bucket.ts',
  'agent/throttle/device.ts',
];

/** Progress slots (Float64): bytes read, reads done; Int32 slot 0 of the control array: stop. */
export const PROGRESS_BYTES = 0;
export const PROGRESS_READS = 1;

const READER = `
import { parentPort, workerData } from 'node:worker_threads';
import { TokenBucket } from './agent/throttle/bucket.js';
import { ThrottledDevice } from './agent/throttle/device.js';
import { RawImage } from './parsers/disk/raw.js';
const { bucket, image, control, progress, readBytes, priority } = workerData;
const ctl = new Int32Array(control);
const prog = new Float64Array(progress);
const dev = new ThrottledDevice(new RawImage(image), TokenBucket.attach(bucket), { priority });
let off = 0;
parentPort.postMessage('started');
while (Atomics.load(ctl, 0) === 0) {
  const n = Math.min(readBytes, dev.size - off);
  const buf = dev.read(off, n);
  if (buf.length !== n) throw new Error('short read');
  off = (off + n) % (dev.size - (dev.size % readBytes) || dev.size);
  prog[${PROGRESS_BYTES}] += n;
  prog[${PROGRESS_READS}] += 1;
}
dev.close();
parentPort.postMessage('done');
`;

/** Transpiles the sources once per test file; returns the folder. */
export function compiled(): string {
  const out = mkdtempSync(join(tmpdir(), 'vdbak-throttle-'));
  for (const rel of SOURCES) {
    const js = ts.transpileModule(readFileSync(join(ROOT, rel), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const dst = join(out, rel.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dst), { recursive: true });
    writeFileSync(dst, js);
  }
  writeFileSync(join(out, 'reader.mjs'), READER);
  writeFileSync(join(out, 'package.json'), '{"type":"module"}');
  return out;
}

export interface Reader {
  /** Bytes read so far. */
  bytes(): number;
  reads(): number;
  /** Asks the worker to stop after its current read and waits for it. */
  stop(): Promise<void>;
}

/** Starts a worker reading `image` in `readBytes` reads through a ThrottledDevice on `bucket`. */
export async function startReader(
  dir: string,
  bucket: SharedArrayBuffer,
  image: string,
  readBytes: number,
  priority = false,
): Promise<Reader> {
  const control = new SharedArrayBuffer(4);
  const progress = new SharedArrayBuffer(16);
  const w = new Worker(new URL(pathToFileURL(join(dir, 'reader.mjs'))), {
    workerData: { bucket, image, control, progress, readBytes, priority },
  });
  const prog = new Float64Array(progress);
  let failure: unknown;
  const exited = new Promise<void>((resolve) => {
    w.on('error', (e) => (failure = e));
    w.on('exit', () => resolve());
  });
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  return {
    bytes: () => prog[PROGRESS_BYTES] ?? 0,
    reads: () => prog[PROGRESS_READS] ?? 0,
    async stop() {
      Atomics.store(new Int32Array(control), 0, 1);
      await exited;
      if (failure) throw failure;
    },
  };
}

export function removeCompiled(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
