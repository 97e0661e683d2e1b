/**
 * The sample volume store the README's first commands use: two small VMs
 * built with real tools by scripts/make-sample-store.sh, once, into
 * .cache/demo/store.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEMO_DIR = join(PROJECT_ROOT, '.cache', 'demo');
export const SAMPLE_STORE = join(DEMO_DIR, 'store');
export const CLI = join(PROJECT_ROOT, 'bin', 'vdbak.js');

/** Builds the store unless a finished one is there; returns false (after saying why) when building failed. */
export function ensureSampleStore(say: (text: string) => void): boolean {
  if (existsSync(join(SAMPLE_STORE, '.done'))) return true;
  say('Building a sample volume store with real tools (once; cached in .cache/demo)');
  const r = spawnSync('bash', [join(PROJECT_ROOT, 'scripts', 'make-sample-store.sh'), SAMPLE_STORE], {
    stdio: 'inherit',
  });
  if (r.status !== 0) {
    process.stderr.write('building the sample store failed (see above)\n');
    return false;
  }
  return true;
}
