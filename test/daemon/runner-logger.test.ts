/**
 * The daemon's root logger (agent/daemon/logger.ts): JSON lines with a time,
 * the pid and the level asked for; a job's child logger puts the job's id and
 * kind on every line; a file destination gets every line before the process
 * exits (a child process logs and exits at once).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, jobLogger } from '../../agent/daemon/logger.js';
import { ROOT } from '../helpers/fixtures.js';

describe('daemon logger', () => {
  it('writes JSON lines at the configured level; job lines carry the job id and kind', () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      level: 'info',
      destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
    });
    const job = jobLogger(log, { id: 42, kind: 'backup' });
    job.debug('not at info');
    job.info({ files: 3 }, 'backup complete');
    job.child({ vm: 'win01' }).warn('source warning');
    log.info('daemon started');
    expect(lines.map((l) => [l.msg, l.job, l.kind, l.level])).toEqual([
      ['backup complete', 42, 'backup', 30],
      ['source warning', 42, 'backup', 40],
      ['daemon started', undefined, undefined, 30],
    ]);
    expect(lines[0]).toMatchObject({ pid: process.pid, files: 3 });
    expect(typeof lines[0]!.time).toBe('string');
  });

  it('loses no line written to a file just before the process exits', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdbak-logger-'));
    try {
      const file = join(dir, 'logs', 'daemon.log');
      const script = `
        import { createLogger } from ${JSON.stringify(join(ROOT, 'dist', 'agent', 'daemon', 'logger.js'))};
        const log = createLogger({ level: 'info', destination: ${JSON.stringify(file)} });
        for (let i = 0; i < 500; i++) log.info({ i }, 'line');
        log.info('last words');
        process.exit(0);
      `;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script]);
      expect(r.status, r.stderr.toString()).toBe(0);
      const got = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { msg: string });
      expect(got).toHaveLength(501);
      expect(got.at(-1)!.msg).toBe('last words');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
