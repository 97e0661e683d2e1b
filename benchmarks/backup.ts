/**
 * Backup benchmark (issue 5 §5): vdbak next to restic and borg from Debian, in
 * one run, on the same content — the source tree for them, the same tree in
 * an ext4 partition of a VMDK for vdbak — each with its default settings.
 *
 * 1. Full backup throughput (MiB/s of source content) of a mixed tree of
 *    `--size` MiB. Targets: vdbak ≥ 2× restic, ≥ 1.2× borg.
 * 2. Backup again with nothing changed. Target: vdbak ≤ 0.5× restic's time.
 * 3. Single-file restore of a 1 MiB file, CLI end to end, with `--versions`
 *    file versions in the catalog: `--gens` backups of a VM whose tiny files
 *    all change between backups (versions / gens files each). Peer: `borg
 *    extract` of the same file from the same history. Targets: ≤ 100 ms and
 *    ≥ 5× faster than borg.
 * 4. Catalog size after `--churn-backups` backups of a VM of `--churn-files`
 *    files with `--churn-pct` % of them changed between backups (debugfs in
 *    the ext4 image, then a new VMDK), against the first backup's. Target ≤ 1.5×.
 * Every run states its wall time and peak RSS (GNU time -v).
 *
 * Run: npm run build && node dist/benchmarks/backup.js [--size MiB] [--versions N]
 *      [--gens N] [--churn-files N] [--churn-backups N] [--churn-pct P] [--runs N]
 *      [--only 1,2,3,4] [--peers-only] [--run-dir DIR] [--rounds N]
 * Content is cached in .cache/bench/backup; repositories are made afresh in
 * .cache/bench/backup/run (or --run-dir, so two runs can go side by side) every time.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import {
  churnStep,
  churnTree,
  ext4Image,
  mixedTree,
  ONE_MIB_PATH,
  versionsTree,
  vmdkOf,
  vmOfTree,
} from './backup-content.js';
import { Borg, Restic, type Run, Vdbak } from './backup-tools.js';
import { arg, bash, CACHE, MiB, treeBytes } from './lib.js';

const SIZE = arg('size', 1024);
const VERSIONS = arg('versions', 1_000_000);
const GENS = arg('gens', 5);
const CHURN_FILES = arg('churn-files', 10_000);
const CHURN_BACKUPS = arg('churn-backups', 30);
const CHURN_PCT = arg('churn-pct', 1);
const RUNS = arg('runs', 5);
/** Rounds of measures 1 and 2 (each program once per round, the order rotating). */
const ROUNDS = arg('rounds', 3);
const PEERS_ONLY = process.argv.includes('--peers-only');
const onlyAt = process.argv.indexOf('--only');
const ONLY = new Set((onlyAt >= 0 ? process.argv[onlyAt + 1]! : '1,2,3,4').split(',').map(Number));

const BASE = join(CACHE, 'backup');
const runDirAt = process.argv.indexOf('--run-dir');
/** Removed and made afresh at start: two runs at once need two of them. */
const RUN = runDirAt >= 0 ? resolve(process.argv[runDirAt + 1]!) : join(BASE, 'run');
const SHM = '/dev/shm';
/** Spare inodes in the versions VM beyond its files. */
const SPARE_INODES = 5000;

const results: Record<string, unknown> = {};
const rows: string[][] = [];

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
}

const fmt = {
  s: (r: Run) => `${r.seconds.toFixed(2)} s, ${r.rssMiB.toFixed(0)} MiB`,
  rate: (bytes: number, r: Run) => `${(bytes / MiB / r.seconds).toFixed(0)} MiB/s (${fmt.s(r)})`,
  x: (v: number) => `${v.toFixed(2)}×`,
};

function figures(r: Run): { s: number; rssMiB: number } {
  return { s: Number(r.seconds.toFixed(3)), rssMiB: Number(r.rssMiB.toFixed(0)) };
}

/** Content built once: `build()` runs unless `marker` exists. */
function once(marker: string, build: () => void): void {
  if (existsSync(marker)) return;
  const t = process.hrtime.bigint();
  build();
  writeFileSync(marker, '');
  log(`built ${marker} in ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(0)} s`);
}

/** Reads every file under the paths into the page cache, so every program starts warm. */
function warm(...paths: string[]): void {
  bash('find "$@" -type f -print0 | xargs -0 cat >/dev/null', ...paths);
}

function repoBytes(dir: string): number {
  return Number(bash('du -sb "$1" | cut -f1', dir).trim());
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The one file named `name` anywhere under `dir`. */
function findFile(dir: string, name: string): string {
  const hits = (readdirSync(dir, { recursive: true }) as string[]).filter((p) => p.endsWith(name));
  if (hits.length !== 1) throw new Error(`expected one ${name} under ${dir}, found ${JSON.stringify(hits)}`);
  return join(dir, hits[0]!);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Row counts of every table of a vdbak catalog (read-only), to show what the catalog holds. */
function catalogRows(repo: string): Record<string, number> {
  const db = new Database(join(repo, 'catalog.db'), { readonly: true, fileMustExist: true });
  const out: Record<string, number> = {};
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
    name: string;
  }[];
  for (const { name } of tables) {
    const row = db.prepare(`SELECT count(*) AS n FROM "${name.replaceAll('"', '""')}"`).get() as { n: number };
    out[name] = row.n;
  }
  db.close();
  return out;
}

/** Measures 1 and 2: full backup of the mixed tree, then again with nothing changed. */
function throughput(): void {
  const src = join(BASE, `mixed-${SIZE}m`);
  const vmdk = join(BASE, 'vms', `mixed-${SIZE}m`, 'mixed.vmdk');
  once(`${src}.done`, () => {
    const files = mixedTree(src, SIZE);
    vmOfTree(src, vmdk, 'mixed', files + SPARE_INODES);
    rmSync(`${vmdk}.ext4`);
  });
  const bytes = treeBytes(src);
  log(`mixed tree: ${(bytes / MiB).toFixed(0)} MiB; backing up with each program`);
  const out: Record<string, unknown> = { sourceMiB: Number((bytes / MiB).toFixed(1)) };

  // Each round backs up with every program (full, then again), each into a fresh repository, in
  // an order that rotates by round: whoever runs last in a round is not always the same program
  // (the machine's state drifts within a run). Figures are the medians over the rounds.
  type Side = 'restic' | 'borg' | 'vdbak';
  const order: Side[] = PEERS_ONLY ? ['restic', 'borg'] : ['restic', 'borg', 'vdbak'];
  const runs: Record<Side, { full: Run[]; again: Run[]; repoMiB: number }> = {
    restic: { full: [], again: [], repoMiB: 0 },
    borg: { full: [], again: [], repoMiB: 0 },
    vdbak: { full: [], again: [], repoMiB: 0 },
  };
  const backUp = (who: Side, round: number): void => {
    let full: Run;
    let again: Run;
    let repo: string;
    if (who === 'restic') {
      const restic = new Restic(join(RUN, `restic-main-${round}`));
      restic.init(RUN);
      full = restic.backup(RUN, src);
      again = restic.backup(RUN, src);
      repo = restic.repo;
    } else if (who === 'borg') {
      const borg = new Borg(join(RUN, `borg-main-${round}`));
      borg.init(RUN);
      full = borg.create(src, 'first');
      again = borg.create(src, 'second');
      repo = borg.repo;
    } else {
      const vd = new Vdbak(join(RUN, `vdbak-main-${round}`));
      vd.init(RUN);
      full = vd.backup(RUN, 'mixed', vmdk);
      again = vd.backup(RUN, 'mixed', vmdk);
      if (round === 0) log(`vdbak full: ${full.stdout.trim()}\nvdbak again: ${again.stdout.trim()}`);
      repo = vd.repo;
    }
    log(`round ${round + 1}/${ROUNDS}: ${who} full ${fmt.s(full)}, again ${fmt.s(again)}`);
    runs[who].full.push(full);
    runs[who].again.push(again);
    runs[who].repoMiB = repoBytes(repo) / MiB;
    // keep the disk free: only the last round's repositories stay
    if (round < ROUNDS - 1) rmSync(repo, { recursive: true, force: true });
  };
  warm(src);
  if (!PEERS_ONLY) warm(vmdk);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < order.length; i++) backUp(order[(i + round) % order.length]!, round);
  }
  /** The run with the median time (its RSS is that run's). */
  const mid = (xs: Run[]): Run => [...xs].sort((a, b) => a.seconds - b.seconds)[Math.floor(xs.length / 2)]!;
  const rFull = mid(runs.restic.full);
  const rIncr = mid(runs.restic.again);
  const bFull = mid(runs.borg.full);
  const bIncr = mid(runs.borg.again);
  const vFull: Run | undefined = PEERS_ONLY ? undefined : mid(runs.vdbak.full);
  const vIncr: Run | undefined = PEERS_ONLY ? undefined : mid(runs.vdbak.again);
  out.rounds = ROUNDS;
  for (const who of order) {
    out[who] = {
      full: figures(mid(runs[who].full)),
      again: figures(mid(runs[who].again)),
      fullAll: runs[who].full.map(figures),
      againAll: runs[who].again.map(figures),
      repoMiB: runs[who].repoMiB,
    };
  }
  const rate = (r: Run) => bytes / MiB / r.seconds;
  rows.push([
    `1. full backup, ${(bytes / MiB).toFixed(0)} MiB (median of ${ROUNDS})`,
    vFull ? fmt.rate(bytes, vFull) : '-',
    fmt.rate(bytes, rFull),
    fmt.rate(bytes, bFull),
    vFull ? `${fmt.x(rate(vFull) / rate(rFull))} / ${fmt.x(rate(vFull) / rate(bFull))}` : '-',
    '≥ 2× / ≥ 1.2×',
  ]);
  rows.push([
    `2. backup again, nothing changed (median of ${ROUNDS})`,
    vIncr ? fmt.s(vIncr) : '-',
    fmt.s(rIncr),
    fmt.s(bIncr),
    vIncr ? `${fmt.x(vIncr.seconds / rIncr.seconds)} of restic` : '-',
    '≤ 0.5× restic',
  ]);
  if (vFull && vIncr) {
    out.ratios = {
      fullVsRestic: rate(vFull) / rate(rFull),
      fullVsBorg: rate(vFull) / rate(bFull),
      againVsRestic: vIncr.seconds / rIncr.seconds,
    };
  }
  results.throughput = out;
}

/** The volume name of `backup` as `vdbak ls` lists it (d0p1 or the like). */
function volumeOf(vd: Vdbak, backup: string): string {
  const listing = vd.run(RUN, 'ls', backup).stdout;
  const m = /\bd\d+p\d+\b/.exec(listing);
  if (!m) throw new Error(`no dNpM volume in \`vdbak ls ${backup}\`:\n${listing}`);
  return m[0];
}

/** Measure 3: a 1 MiB file restored from a catalog of VERSIONS file versions, vdbak next to borg extract. */
function restore(): void {
  const files = Math.ceil(VERSIONS / GENS);
  // the tree is rewritten for every generation: on tmpfs when there is one, as writing 200 000 files to disk takes ~20 s
  const tree = existsSync(SHM) ? join(SHM, `vdbak-bench-versions-${files}`) : join(BASE, `versions-${files}-src`);
  const vd = new Vdbak(join(RUN, 'vdbak-versions'));
  const borg = new Borg(join(RUN, 'borg-versions'));
  if (!PEERS_ONLY) vd.init(RUN);
  borg.init(RUN);
  const made: Record<string, unknown>[] = [];
  for (let g = 1; g <= GENS; g++) {
    versionsTree(tree, files, g);
    const vmdk = join(BASE, 'vms', `versions-${files}-g${g}`, 'versions.vmdk');
    once(`${vmdk}.done`, () => {
      vmOfTree(tree, vmdk, 'versions', files + SPARE_INODES);
      rmSync(`${vmdk}.ext4`);
    });
    // one VM keeps one disk path, as a real VM's disk does (vdbak knows a VM by it)
    const disk = join(RUN, 'vms', 'versions', 'versions.vmdk');
    mkdirSync(dirname(disk), { recursive: true });
    rmSync(disk, { force: true });
    linkSync(vmdk, disk);
    const b = borg.create(tree, `g${g}`);
    const step: Record<string, unknown> = { gen: g, borg: figures(b) };
    let line = `versions gen ${g}/${GENS} (${files} tiny files changed): borg create ${fmt.s(b)}`;
    if (!PEERS_ONLY) {
      const v = vd.backup(RUN, 'versions', disk);
      step.vdbak = figures(v);
      line += `, vdbak backup ${fmt.s(v)}`;
    }
    made.push(step);
    log(line);
  }
  const want = sha256(join(tree, ONE_MIB_PATH));
  const out: Record<string, unknown> = { files, gens: GENS, backups: made };

  const borgDest = join(RUN, 'restore-borg');
  const borgOnce = (): Run => {
    rmSync(borgDest, { recursive: true, force: true });
    mkdirSync(borgDest);
    const r = borg.extract(borgDest, `g${GENS}`, ONE_MIB_PATH);
    if (sha256(join(borgDest, ONE_MIB_PATH)) !== want) throw new Error('borg extract restored other bytes');
    return r;
  };
  let vdOnce: (() => Run) | undefined;
  if (!PEERS_ONLY) {
    const path = `/${volumeOf(vd, 'versions')}/${ONE_MIB_PATH}`;
    const vdDest = join(RUN, 'restore-vdbak');
    vdOnce = () => {
      rmSync(vdDest, { recursive: true, force: true });
      mkdirSync(vdDest);
      const r = vd.run(RUN, 'restore', 'versions', path, '--to', vdDest);
      if (sha256(findFile(vdDest, 'one-mib.bin')) !== want)
        throw new Error(`vdbak restore ${path} restored other bytes`);
      return r;
    };
    out.path = path;
    out.catalogRows = catalogRows(vd.repo);
    log(`vdbak catalog rows: ${JSON.stringify(out.catalogRows)}`);
  }
  // one warm-up each, then interleaved runs
  borgOnce();
  vdOnce?.();
  const b: Run[] = [];
  const v: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    b.push(borgOnce());
    if (vdOnce) v.push(vdOnce());
  }
  const ms = (rs: Run[]) => median(rs.map((r) => r.seconds)) * 1000;
  const best = (rs: Run[]) => Math.min(...rs.map((r) => r.seconds)) * 1000;
  const rss = (rs: Run[]) => Math.max(...rs.map((r) => r.rssMiB));
  const cell = (rs: Run[]) => `${ms(rs).toFixed(0)} ms median, ${best(rs).toFixed(0)} best (${rss(rs).toFixed(0)} MiB)`;
  log(`restore: borg extract ${cell(b)}${v.length > 0 ? `, vdbak restore ${cell(v)}` : ''}`);
  out.borgExtract = { medianMs: ms(b), bestMs: best(b), rssMiB: rss(b) };
  if (v.length > 0) {
    out.vdbakRestore = { medianMs: ms(v), bestMs: best(v), rssMiB: rss(v) };
    out.borgOverVdbak = ms(b) / ms(v);
  }
  rows.push([
    `3. restore 1 MiB file, ${files * GENS} versions`,
    v.length > 0 ? cell(v) : '-',
    '',
    cell(b),
    v.length > 0 ? `${fmt.x(ms(b) / ms(v))} faster than borg` : '-',
    '≤ 100 ms, ≥ 5×',
  ]);
  results.restore = out;
  rmSync(tree, { recursive: true, force: true });
}

/** Measure 4: catalog size after CHURN_BACKUPS backups with CHURN_PCT % of files changed between them. */
function catalogGrowth(): void {
  if (PEERS_ONLY) return;
  const dir = join(RUN, 'churn');
  mkdirSync(dir, { recursive: true });
  const tree = join(dir, 'src');
  const fsImg = join(dir, 'vm.ext4');
  const vmdk = join(dir, 'vm', 'churn.vmdk');
  const paths = churnTree(tree, CHURN_FILES);
  ext4Image(tree, fsImg, 'churn', CHURN_FILES * 2);
  rmSync(tree, { recursive: true, force: true });
  vmdkOf(fsImg, vmdk);
  const vd = new Vdbak(join(RUN, 'vdbak-churn'));
  vd.init(RUN);
  const first = vd.backup(RUN, 'churn', vmdk);
  const firstBytes = vd.catalogBytes();
  log(`churn backup 1/${CHURN_BACKUPS}: ${fmt.s(first)}, catalog ${(firstBytes / MiB).toFixed(2)} MiB`);
  const later: Run[] = [];
  let changed = 0;
  for (let b = 2; b <= CHURN_BACKUPS; b++) {
    changed += churnStep(fsImg, paths, CHURN_PCT, b, join(dir, 'scratch'));
    vmdkOf(fsImg, vmdk);
    later.push(vd.backup(RUN, 'churn', vmdk));
    if (b % 10 === 0 || b === CHURN_BACKUPS) {
      log(
        `churn backup ${b}/${CHURN_BACKUPS}: ${fmt.s(later.at(-1)!)}, catalog ${(vd.catalogBytes() / MiB).toFixed(2)} MiB`,
      );
    }
  }
  const lastBytes = vd.catalogBytes();
  const ratio = lastBytes / firstBytes;
  const meanS = later.reduce((a, r) => a + r.seconds, 0) / Math.max(1, later.length);
  const maxRss = Math.max(first.rssMiB, ...later.map((r) => r.rssMiB));
  results.catalog = {
    files: CHURN_FILES,
    backups: CHURN_BACKUPS,
    pct: CHURN_PCT,
    filesChanged: changed,
    firstBytes,
    lastBytes,
    ratio,
    firstBackup: figures(first),
    laterBackupMeanS: meanS,
    maxRssMiB: maxRss,
    rows: catalogRows(vd.repo),
  };
  rows.push([
    `4. catalog, ${CHURN_BACKUPS} backups × ${CHURN_PCT} % change of ${CHURN_FILES} files`,
    `${(firstBytes / MiB).toFixed(2)} → ${(lastBytes / MiB).toFixed(2)} MiB (backups ${meanS.toFixed(2)} s avg, ${maxRss.toFixed(0)} MiB)`,
    '',
    '',
    `${fmt.x(ratio)} of the first`,
    '≤ 1.5×',
  ]);
}

function table(): void {
  const head = ['measure', 'vdbak', 'restic', 'borg', 'ratio', 'target'];
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

function versionOf(cmd: string, flag: string): string {
  return spawnSync(cmd, [flag], { encoding: 'utf8' }).stdout.trim().split('\n')[0] ?? '?';
}

function main(): void {
  bash(`command -v restic >/dev/null && command -v borg >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends restic borgbackup >/dev/null; }`);
  rmSync(RUN, { recursive: true, force: true });
  mkdirSync(RUN, { recursive: true });
  results.peers = { restic: versionOf('restic', 'version'), borg: versionOf('borg', '--version') };
  log(`peers: ${JSON.stringify(results.peers)}`);
  if (ONLY.has(1) || ONLY.has(2)) throughput();
  if (ONLY.has(3)) restore();
  if (ONLY.has(4)) catalogGrowth();
  table();
  console.log(JSON.stringify({ benchmark: 'backup', date: new Date().toISOString(), ...results }));
}

main();
