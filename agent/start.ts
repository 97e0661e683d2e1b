/**
 * `npm start`, the README's first command: the daemon on its embedded
 * defaults, watching the sample volume store, and a short tour of how to use
 * it — the same requests an administrator or a script makes, printed as
 * commands they can type (vdbak and curl).
 *
 * The daemon is a child process whose JSON log goes to .cache/demo/daemon.log;
 * it keeps running after the tour until Ctrl-C (SIGINT/SIGTERM are passed on,
 * and it checkpoints and stops within 10 s). `--tour-only` stops it after the
 * tour (the tests run the first command that way).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ApiClient } from './api/client.js';
import { DEFAULT_LISTEN, TOKEN_FILE_NAME } from './config/defaults.js';
import { runningDaemon } from './daemon/state.js';
import type { JobRow } from './daemon/types.js';
import { CLI, DEMO_DIR, ensureSampleStore, SAMPLE_STORE } from './sample-store.js';

const REPO = join(DEMO_DIR, 'daemon-repo');
const LOG = join(DEMO_DIR, 'daemon.log');
const POLL_MS = 200;
const START_TIMEOUT_MS = 30_000;
const JOB_TIMEOUT_MS = 300_000;

const tourOnly = process.argv.includes('--tour-only');
const rel = (p: string) => relative(process.cwd(), p) || p;

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

function shown(cmd: string): void {
  process.stdout.write(`$ ${cmd}\n`);
}

/** Runs the CLI as an administrator would, against the demo repository. */
function vdbak(...args: string[]): void {
  shown(`vdbak ${args.map((a) => (/[\s']/.test(a) ? `'${a}'` : a)).join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: 'inherit', env: daemonEnv() });
  if (r.status !== 0) process.stdout.write(`(vdbak exited with ${r.status})\n`);
}

function daemonEnv(): NodeJS.ProcessEnv {
  return { ...process.env, VDBAK_REPO: REPO, VDBAK_DATASTORES: SAMPLE_STORE };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what} (see ${rel(LOG)})`);
    await sleep(POLL_MS);
  }
}

function startDaemon(): ChildProcess {
  mkdirSync(DEMO_DIR, { recursive: true });
  const log = openSync(LOG, 'w');
  const child = spawn(process.execPath, [CLI, 'daemon'], { env: daemonEnv(), stdio: ['ignore', log, log] });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`the daemon stopped unexpectedly (${signal ?? `exit ${code}`}); its log: ${rel(LOG)}\n`);
      process.exit(1);
    }
  });
  return child;
}

let stopping = false;

function stop(child: ChildProcess): Promise<number> {
  stopping = true;
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code ?? 1));
    child.kill('SIGTERM');
  });
}

async function waitJobs(api: ApiClient, jobs: JobRow[]): Promise<JobRow[]> {
  return waitFor('the jobs to finish', JOB_TIMEOUT_MS, async () => {
    const now = await Promise.all(jobs.map((j) => api.job(j.id)));
    return now.every((j) => j.state !== 'queued' && j.state !== 'running') ? now : undefined;
  });
}

async function main(): Promise<number> {
  if (!ensureSampleStore(say)) return 1;
  // a fresh repository each time, so the tour shows a first backup
  rmSync(REPO, { recursive: true, force: true });

  say('Start the daemon on its embedded defaults');
  process.stdout.write(
    [
      `No config file: the repository is $VDBAK_REPO (${rel(REPO)}), the datastores are $VDBAK_DATASTORES`,
      `(${rel(SAMPLE_STORE)}), the API listens on ${DEFAULT_LISTEN} with a token generated into`,
      `${rel(join(REPO, TOKEN_FILE_NAME))}, backups run nightly 01:00–06:00 and the catalog ships after each one.`,
      `A config file (vdbak daemon --config FILE; agent/config/vdbak.example.yaml) changes any of it.`,
      '',
    ].join('\n'),
  );
  shown(`VDBAK_REPO=${rel(REPO)} VDBAK_DATASTORES=${rel(SAMPLE_STORE)} vdbak daemon   # JSON log → ${rel(LOG)}`);
  const child = startDaemon();
  daemon = child;
  const forward = () => {
    void stop(child).then((code) => process.exit(code));
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);

  const state = await waitFor('the daemon to listen', START_TIMEOUT_MS, () => {
    const s = runningDaemon(REPO);
    return s?.api ? s : undefined;
  });
  const base = `http://${state.api!.host}:${state.api!.port}`;
  const token = readFileSync(join(REPO, TOKEN_FILE_NAME), 'utf8').trim();
  const api = new ApiClient(base, token);
  await waitFor('the API', START_TIMEOUT_MS, () =>
    api.health().then(
      (h) => (h.ok ? h : undefined),
      () => undefined,
    ),
  );
  const curl = (path: string, extra = '') =>
    `curl -s ${extra}-H "Authorization: Bearer $(cat ${rel(join(REPO, TOKEN_FILE_NAME))})" ${base}${path}`;

  say('What the daemon found: discovery scanned the datastore for VMs');
  shown(curl('/vms'));
  const vms = await waitFor('discovery', START_TIMEOUT_MS, async () => {
    const r = (await fetch(`${base}/vms`, { headers: { authorization: `Bearer ${token}` } }).then((x) => x.json())) as {
      items: { name: string; identity: string; present: boolean }[];
    };
    return r.items.length > 0 ? r.items : undefined;
  });
  for (const v of vms) process.stdout.write(`  ${v.name}  (identity ${v.identity}${v.present ? '' : ', vanished'})\n`);

  say('Ask for a backup of each VM now, instead of waiting for the night');
  const jobs: JobRow[] = [];
  for (const v of vms) {
    shown(curl('/backups', `-X POST -H 'Content-Type: application/json' -d '{"vm":"${v.name}"}' `));
    jobs.push(await api.submitBackup(v.name));
  }
  process.stdout.write(`queued as job(s) ${jobs.map((j) => j.id).join(', ')}; the runner takes them one at a time\n`);
  const done = await waitJobs(api, jobs);
  vdbak('jobs');
  if (done.some((j) => j.state !== 'done')) {
    process.stdout.write(`a backup did not finish: see 'vdbak job ID' and ${rel(LOG)}\n`);
  }

  say("The daemon's state: throttle, schedules with their next run, last results");
  vdbak('status');

  say('Browse a backup and fetch one file over the API (a restore pauses running backups)');
  shown(curl('/backups/lin01/tree?path=/linroot/home/bob'));
  const tree = (await fetch(`${base}/backups/lin01/tree?path=${encodeURIComponent('/linroot/home/bob')}`, {
    headers: { authorization: `Bearer ${token}` },
  }).then((r) => r.json())) as { items?: { name?: string; path?: string; type?: string; size?: number }[] };
  for (const e of tree.items ?? []) process.stdout.write(`  ${e.type ?? ''}\t${e.size ?? ''}\t${e.path ?? e.name}\n`);
  shown(curl('/backups/lin01/download?path=/linroot/home/bob/notes.txt'));
  const file = await fetch(`${base}/backups/lin01/download?path=${encodeURIComponent('/linroot/home/bob/notes.txt')}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  process.stdout.write(file.ok ? await file.text() : `(HTTP ${file.status}: ${await file.text()})\n`);

  say('Restore a folder into the restore root, as a job');
  const to = join(REPO, 'restore', 'win01');
  shown(
    curl(
      '/restores',
      `-X POST -H 'Content-Type: application/json' -d '{"backup":"win01","path":"/d0p2/Users/ana","to":"${rel(to)}"}' `,
    ),
  );
  const [restored] = await waitJobs(api, [await api.submitRestore({ backup: 'win01', path: '/d0p2/Users/ana', to })]);
  process.stdout.write(`job ${restored!.id}: ${restored!.state}\n`);
  shown(`ls -R ${rel(to)}`);
  spawnSync('ls', ['-R', to], { stdio: 'inherit' });

  say('More');
  process.stdout.write(
    [
      `  ${curl('/openapi.json', '').replace(/-H "[^"]*" /, '')}   # every route, documented (OpenAPI 3.1)`,
      `  vdbak ls win01 /d0p2 --repo ${rel(REPO)}        # the CLI reads the catalog directly too`,
      `  vdbak restore-vm lin01 --to /tmp/lin01-back --repo ${rel(REPO)}   # the whole VM: disk rebuilt, config patched`,
      `  kill -HUP <pid>   # reload a config file without dropping running jobs`,
      `  npm run demo      # the CLI walkthrough: incremental backups, find, versions, restore an old version`,
      '',
    ].join('\n'),
  );

  if (tourOnly) {
    say('Stop the daemon (SIGTERM: running work is checkpointed, it exits within 10 s)');
    const code = await stop(child);
    process.stdout.write(`the daemon exited with ${code}\n`);
    return code === 0 && done.every((j) => j.state === 'done') && restored!.state === 'done' ? 0 : 1;
  }
  say(`The daemon keeps running (pid ${child.pid}, log ${rel(LOG)}). Ctrl-C stops it.`);
  return new Promise<number>(() => {
    // runs until a signal: forward() exits with the daemon's code
  });
}

let daemon: ChildProcess | undefined;

main().then(
  (code) => process.exit(code),
  async (e: unknown) => {
    process.stderr.write(`start: ${e instanceof Error ? e.message : String(e)}\n`);
    // never leave a daemon behind a failed tour
    if (daemon) await stop(daemon);
    process.exit(1);
  },
);
