/**
 * The README's first command (`npm start` → dist/agent/start.js) runs the
 * daemon on its embedded defaults against the sample store and tours it:
 * discovery, backups through the API, status, a download and a restore job,
 * then (with --tour-only) a SIGTERM. It must end with exit 0 and leave no
 * daemon behind.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/fixtures.js';

describe('npm start (the README first command)', () => {
  it('starts the daemon on embedded defaults, backs up and restores through it, and stops it cleanly', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'dist', 'agent', 'start.js'), '--tour-only'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 600_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status, out).toBe(0);
    expect(out).toMatch(/lin01 +\(identity /);
    // the jobs table names the VM, not its identity
    expect(out).toMatch(/backup +done .* api +(lin01|win01)$/m);
    expect(out).toContain('remember the milk');
    expect(out).toMatch(/job \d+: done/);
    expect(out).toContain('the daemon exited with 0');
    const restored = join(ROOT, '.cache', 'demo', 'daemon-repo', 'restore', 'win01', 'ana', 'Documents', 'report.docx');
    expect(existsSync(restored), out).toBe(true);
    expect(existsSync(join(ROOT, '.cache', 'demo', 'daemon-repo', 'daemon.json'))).toBe(false);
  }, 600_000);
});
