/**
 * The embedded defaults, written in the config file's own shape so that they
 * go through the same validator as a file does (a default can never be a
 * value the file would refuse). A file's top-level key replaces the default
 * of that key; in the mappings api, throttle, log and ship it replaces only
 * the keys it names (see load.ts).
 */
import { basename, delimiter, resolve } from 'node:path';
import { DEFAULT_REPO } from '../repo.js';
import { DEFAULT_KEEP } from '../ship/ship.js';

export const DEFAULT_LISTEN = '127.0.0.1:8470';
/** Where the embedded defaults say they come from (DaemonConfig.source). */
export const EMBEDDED_SOURCE = 'embedded defaults';
/** The file in the repository holding the generated API token when the config names none. */
export const TOKEN_FILE_NAME = 'api-token';
/** Folder under the repository restores go to when the config names no restore root. */
export const DEFAULT_RESTORE_FOLDER = 'restore';

/** Environment variables the defaults read (and nothing else does). */
export const ENV_REPO = 'VDBAK_REPO';
export const ENV_DATASTORES = 'VDBAK_DATASTORES';

export const DEFAULT_SCHEDULES = [
  // nightly, inside the quiet hours; a night missed while the daemon was down is made up only before 06:00
  { name: 'nightly-backup', kind: 'backup', cron: '0 1 * * *', window: { start: '01:00', end: '06:00' } },
  // after the night's backups, so a lost controller loses at most one day of catalog
  { name: 'daily-ship', kind: 'ship', cron: '30 6 * * *' },
  { name: 'weekly-forget', kind: 'forget', cron: '0 7 * * 0', prune: true },
  { name: 'monthly-check', kind: 'check', cron: '0 8 1 * *' },
] as const;

export const DEFAULT_RETENTION = { keepDaily: 7, keepWeekly: 4, keepMonthly: 6 } as const;

/** Datastore names derived from VDBAK_DATASTORES folder names: "/srv/ds-1/" → "ds-1". */
function datastoresFromEnv(value: string | undefined): { name: string; path: string }[] {
  if (value === undefined || value.trim() === '') return [];
  const taken = new Set<string>();
  return value
    .split(delimiter)
    .filter((p) => p.trim() !== '')
    .map((path, i) => {
      const base = basename(path)
        .replace(/[^A-Za-z0-9_.-]/g, '-')
        .replace(/^[^A-Za-z0-9]+/, '')
        .slice(0, 60);
      let name = base === '' ? `ds${i + 1}` : base;
      for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
      taken.add(name);
      // like --repo and $VDBAK_REPO on the CLI, a relative path in the environment means the caller's folder
      return { name, path: resolve(path) };
    });
}

/** The defaults as a raw config tree (the file's shape), for this environment. */
export function embeddedDefaults(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const fromEnv = env[ENV_REPO];
  const repo = resolve(fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_REPO);
  return {
    repo,
    datastores: datastoresFromEnv(env[ENV_DATASTORES]),
    schedules: DEFAULT_SCHEDULES.map((s) => ({ ...s })),
    retention: { ...DEFAULT_RETENTION },
    throttle: { enabled: true },
    api: { listen: DEFAULT_LISTEN },
    log: { level: 'info' },
    ship: { keep: DEFAULT_KEEP, afterBackup: true },
  };
}

/** Restore roots when the config names none: one folder inside the repository. */
export function defaultRestoreRoots(repo: string): string[] {
  return [`${repo === '/' ? '' : repo}/${DEFAULT_RESTORE_FOLDER}`];
}
