/**
 * One temporary root per test run: every test's `mkdtempSync(join(tmpdir(), …))` lands in it
 * (TMPDIR is inherited by the test processes and the tools they start), and it is removed at
 * the end, so a run leaves nothing in /tmp whatever the tests forget to clean.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Mount points inside `root` (a FUSE mount a test left behind): never recurse into those. */
function mountsInside(root: string): string[] {
  const text = readFileSync('/proc/mounts', 'utf8');
  return text
    .split('\n')
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((p) => p === root || p.startsWith(`${root}/`));
}

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'vdbak-test-'));
  process.env.TMPDIR = root;
  return () => {
    const mounts = mountsInside(root);
    if (mounts.length > 0) {
      process.stderr.write(`test temp root ${root} kept: still mounted there: ${mounts.join(', ')}\n`);
      return;
    }
    rmSync(root, { recursive: true, force: true });
  };
}
