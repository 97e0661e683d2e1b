/**
 * The three backup programs of the backup benchmark, each run under
 * /usr/bin/time -v for its wall time and peak RSS: vdbak through its CLI
 * exactly as a user types it (`node bin/vdbak.js …`), restic and borg from
 * Debian with their default settings, each with its own cache folder so no run
 * sees another's state.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, ROOT } from './lib.js';

/** One timed run: wall seconds, peak RSS of the largest process in the tree (GNU time's ru_maxrss), and its stdout. */
export interface Run {
  seconds: number;
  rssMiB: number;
  stdout: string;
}

const RSS_LINE = /Maximum resident set size \(kbytes\): (\d+)/;

/** Runs `cmd args` under /usr/bin/time -v in `cwd` with `env` added; throws with its output if it fails. */
export function timed(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Run {
  const report = join(cwd, `.time-${process.pid}`);
  // Start with nothing of the previous run waiting to be written back: its dirty pages (borg's
  // 800 MB repository, say) would otherwise be flushed inside this run's fsyncs and bill it.
  spawnSync('sync');
  const t = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-v', '-o', report, cmd, ...args], {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 256 * MiB,
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const timeOut = existsSync(report) ? readFileSync(report, 'utf8') : '';
  rmSync(report, { force: true });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  const rss = RSS_LINE.exec(timeOut);
  return { seconds, rssMiB: rss ? Number(rss[1]) / 1024 : Number.NaN, stdout: r.stdout };
}

/** vdbak through its CLI, on the repository `repo`. */
export class Vdbak {
  constructor(readonly repo: string) {}

  run(cwd: string, ...args: string[]): Run {
    const [command, ...rest] = args;
    return timed(process.execPath, [join(ROOT, 'bin', 'vdbak.js'), command!, '--repo', this.repo, ...rest], cwd);
  }

  init(cwd: string): void {
    rmSync(this.repo, { recursive: true, force: true });
    this.run(cwd, 'init');
  }

  backup(cwd: string, name: string, vmdk: string): Run {
    return this.run(cwd, 'backup', '--json', '--name', name, vmdk);
  }

  /** Bytes of catalog.db and its WAL, measured after the process that wrote them exited. */
  catalogBytes(): number {
    const db = join(this.repo, 'catalog.db');
    const wal = `${db}-wal`;
    return statSync(db).size + (existsSync(wal) ? statSync(wal).size : 0);
  }
}

/** restic, default settings (repository format 2, compression auto), a fixed password as restic requires one. */
export class Restic {
  readonly env: Record<string, string>;

  constructor(readonly repo: string) {
    this.env = { RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: `${repo}.cache` };
  }

  init(cwd: string): void {
    rmSync(this.repo, { recursive: true, force: true });
    rmSync(this.env.RESTIC_CACHE_DIR!, { recursive: true, force: true });
    timed('restic', ['init', '-q'], cwd, this.env);
  }

  /** Backs up the folder `src` by its absolute path, so a second run finds its parent snapshot. */
  backup(cwd: string, src: string): Run {
    return timed('restic', ['backup', '-q', '--host', 'bench', src], cwd, this.env);
  }
}

/** borg 1.2, `-e none` (vdbak does not encrypt yet; see README), default compression lz4. */
export class Borg {
  readonly env: Record<string, string>;

  constructor(readonly repo: string) {
    this.env = {
      BORG_BASE_DIR: `${repo}.home`,
      BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
      BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
    };
  }

  init(cwd: string): void {
    rmSync(this.repo, { recursive: true, force: true });
    rmSync(this.env.BORG_BASE_DIR!, { recursive: true, force: true });
    mkdirSync(this.env.BORG_BASE_DIR!, { recursive: true });
    timed('borg', ['init', '-e', 'none', this.repo], cwd, this.env);
  }

  /** Backs up the folder `src` as archive `name`, with paths relative to `src`. */
  create(src: string, name: string): Run {
    return timed('borg', ['create', `${this.repo}::${name}`, '.'], src, this.env);
  }

  /** Extracts one path (relative to the archive's root) into the folder `dest`. */
  extract(dest: string, name: string, path: string): Run {
    return timed('borg', ['extract', `${this.repo}::${name}`, path], dest, this.env);
  }
}
