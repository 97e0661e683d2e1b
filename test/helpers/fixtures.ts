/**
 * Fixtures are built at test time by real tools (qemu-img, mkfs, mkntfs,
 * sfdisk …) from scripts in test/fixtures/, and cached in .cache/fixtures/
 * under a key made of the script's name and a hash of its text. Change the
 * script and the fixture is rebuilt; never commit the images.
 *
 * A builder script is run as `bash SCRIPT OUTDIR` with the working directory
 * set to a scratch folder; it writes what it makes into OUTDIR. Concurrent
 * test workers wait on a lock directory; a half-built fixture is never seen
 * (the output folder is renamed into place when the script succeeds).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CACHE = process.env.VDBAK_FIXTURE_CACHE ?? join(ROOT, '.cache', 'fixtures');
export const CORPUS = process.env.VDBAK_CORPUS ?? resolve(ROOT, '..', 'shared', 'corpus');

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Builds (or finds in the cache) the fixture made by test/fixtures/<script>.
 * Returns the folder holding its output. `args` become extra script arguments
 * and part of the cache key.
 */
export function fixture(script: string, args: string[] = []): string {
  const path = join(ROOT, 'test', 'fixtures', script);
  const text = readFileSync(path);
  const common = join(ROOT, 'test', 'fixtures', 'lib.sh');
  const h = createHash('sha256').update(text).update('\0').update(args.join('\0'));
  if (existsSync(common)) h.update(readFileSync(common));
  const key = `${script.replace(/\.sh$/, '')}${args.length ? `-${args.join('-').replace(/[^A-Za-z0-9_.-]/g, '_')}` : ''}-${h.digest('hex').slice(0, 12)}`;
  const out = join(CACHE, key);
  if (existsSync(join(out, '.done'))) return out;

  mkdirSync(CACHE, { recursive: true });
  const lock = `${out}.lock`;
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(join(out, '.done'))) return out;
      // a lock older than 30 minutes belongs to a dead builder
      try {
        if (Date.now() - statSync(lock).mtimeMs > 30 * 60_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        // the lock went away meanwhile: try again
      }
      if (Date.now() > deadline) throw new Error(`fixture ${key}: timed out waiting for the lock ${lock}`);
      sleepMs(250);
    }
  }
  try {
    if (existsSync(join(out, '.done'))) return out;
    const tmpOut = mkdtempSync(`${out}.tmp-`);
    const work = mkdtempSync(join(CACHE, '.work-'));
    const r = spawnSync('bash', [path, tmpOut, ...args], {
      cwd: work,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, FIXTURE_LIB: common, CORPUS },
    });
    rmSync(work, { recursive: true, force: true });
    if (r.status !== 0) {
      rmSync(tmpOut, { recursive: true, force: true });
      throw new Error(`fixture ${script} failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
    }
    spawnSync('touch', [join(tmpOut, '.done')]);
    rmSync(out, { recursive: true, force: true });
    renameSync(tmpOut, out);
    return out;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Runs a command and returns its stdout; a non-zero exit throws with stderr. */
export function run(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; cwd?: string; binary?: false } = {},
): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024, input: opts.input, cwd: opts.cwd });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Like run() but returns stdout as bytes. */
export function runBytes(cmd: string, args: string[]): Buffer {
  const r = spawnSync(cmd, args, { maxBuffer: 1024 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** SHA-256 of a file, computed by sha256sum (an oracle we did not write). */
export function sha256sumFile(path: string): string {
  return run('sha256sum', [path]).split(' ')[0] ?? '';
}
