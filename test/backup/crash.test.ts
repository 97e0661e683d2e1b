/**
 * Crash and resume (issue 5 §3): `kill -9` during a backup and during a prune,
 * then run again. Nothing is sent twice, a killed backup is never visible,
 * `check --read-data` passes and restores equal the source tree (sha256).
 *
 * Kills happen at named steps through the CLI's test-only hooks
 * (VDBAK_TEST_KILL_BACKUP_AT, VDBAK_TEST_KILL_PRUNE_AT) and at random moments
 * (a seeded delay, then SIGKILL from outside). The packs on the target are read
 * here with a small parser of the documented pack trailer and index, not with
 * vdbak's reader, to count which chunks the target really holds.
 *
 * Needs `npm run build` first (the CLI runs from dist/).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from '../helpers/fixtures.js';
import { CLI, vdbak, vdbakOk, type BackupJson } from '../helpers/vdbak.js';
import { prng } from '../../transport/prng.js';

/** Small packs and chunks so that a few MiB of content makes ~25 packs and a kill lands between them. */
const PACK_SIZE = 256 * 1024;
const INIT_SIZES = ['--pack-size', '256K', '--chunk-min', '16K', '--chunk-avg', '64K', '--chunk-max', '256K'];
const VM = 'crashvm';
/** The volume the fixture's unpartitioned ext4 disk shows as. */
const VOL = '/d0p1';
/** Pack format (transport/pack.ts header comment): a 64-byte trailer, index entries of 56 bytes, hash first. */
const TRAILER = 64;
const ENTRY = 56;
const HASH = 32;

let fx: string;
let scratch: string;
let v1Tree: Map<string, string>;
let v2Tree: Map<string, string>;
/** A clean single backup of v1 into a fresh repository: what the target holds then. */
let clean: { bytes: number; hashes: Set<string>; packs: number };
/** How long that clean backup took, process start to exit: random kills are spread over it. */
let cleanMs: number;

interface BackupRow {
  id: number;
  state: 'running' | 'complete' | 'failed';
  error: string | null;
}

interface CheckJson {
  ok: boolean;
  errors: string[];
  orphanPacks: string[];
  damaged: unknown[];
  chunks: number;
}

interface PackOnTarget {
  name: string;
  size: number;
  hashes: string[];
}

// ---- helpers ------------------------------------------------------------------------------------

/** sha256 of every regular file under dir, by path relative to it (lost+found is mkfs's, not ours). */
function treeHashes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'lost+found') walk(p);
      } else if (e.isFile()) {
        out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
      }
    }
  };
  walk(dir);
  return out;
}

/** Every pack object under <repo>/target/packs with the chunk hashes its own index lists. */
function packsOnTarget(repo: string): PackOnTarget[] {
  const root = join(repo, 'target', 'packs');
  const out: PackOnTarget[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      // a kill during a write may leave a hidden temporary file: never a pack
      else if (e.isFile() && !e.name.startsWith('.')) {
        const b = readFileSync(p);
        expect(b.subarray(b.length - TRAILER, b.length - TRAILER + 8).toString('latin1')).toBe('VDBAKPK\0');
        const count = b.readUInt32LE(b.length - TRAILER + 12);
        const indexStart = b.length - TRAILER - count * ENTRY;
        const hashes: string[] = [];
        for (let i = 0; i < count; i++) {
          const at = indexStart + i * ENTRY;
          hashes.push(b.subarray(at, at + HASH).toString('hex'));
        }
        out.push({ name: relative(join(repo, 'target'), p), size: b.length, hashes });
      }
    }
  };
  try {
    walk(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return out;
}

function targetBytes(packs: PackOnTarget[]): number {
  return packs.reduce((a, p) => a + p.size, 0);
}

/** Chunk hashes the target holds more than once (in two packs, or twice in one). */
function duplicateChunks(packs: PackOnTarget[]): string[] {
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const p of packs) {
    for (const h of p.hashes) {
      if (seen.has(h)) dup.push(h);
      seen.add(h);
    }
  }
  return dup;
}

function allHashes(packs: PackOnTarget[]): Set<string> {
  return new Set(packs.flatMap((p) => p.hashes));
}

function newRepo(label: string): string {
  const repo = mkdtempSync(join(scratch, `${label}-`));
  vdbakOk(['init', '--repo', repo, ...INIT_SIZES]);
  return repo;
}

/** A VM folder whose disk is the given fixture version (same path → same VM identity across versions). */
function vmWith(version: 'v1' | 'v2' | 'many', vmDir?: string): string {
  const dir = vmDir ?? mkdtempSync(join(scratch, 'vm-'));
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(fx, `${version}.vmdk`), join(dir, 'disk.vmdk'));
  return dir;
}

function backup(repo: string, vmDir: string, name = VM): BackupJson {
  const out = vdbakOk(['backup', '--repo', repo, '--json', '--threads', '2', '--name', name, join(vmDir, 'disk.vmdk')]);
  const lines = out.jsonLines<BackupJson>();
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

/** Runs the CLI with a kill hook set; the process must die by SIGKILL (the hook was reached). */
function killedAt(args: string[], env: Record<string, string>): void {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.error) throw r.error;
  expect(
    r.signal,
    `vdbak ${args.join(' ')} with ${JSON.stringify(env)} should die by SIGKILL; exit ${r.status}: ${r.stderr}`,
  ).toBe('SIGKILL');
}

/** Spawns the CLI, waits delayMs, sends SIGKILL; resolves with how it ended. */
function killAfter(args: string[], delayMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== null && code !== 0) reject(new Error(`vdbak ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve({ code, signal });
    });
  });
}

function backups(repo: string, all = true): BackupRow[] {
  return vdbakOk(['backups', '--repo', repo, '--json', ...(all ? ['--all'] : [])]).json<BackupRow[]>();
}

function check(repo: string): CheckJson {
  const r = vdbak(['check', '--repo', repo, '--read-data', '--json']);
  const report = r.json<CheckJson>();
  expect(report.errors).toEqual([]);
  expect(report.damaged).toEqual([]);
  expect(r.code).toBe(0);
  return report;
}

function restored(repo: string, ref: string): Map<string, string> {
  const to = mkdtempSync(join(scratch, 'restore-'));
  vdbakOk(['restore', '--repo', repo, ref, VOL, '--to', to]);
  return treeHashes(to);
}

/**
 * After a crash and a resumed backup of v1: the target holds exactly the chunks
 * a clean backup stores, each once, so its bytes differ from the clean run's
 * only by per-pack trailers (more, smaller packs): never by a resent chunk.
 */
function expectSentOnce(repo: string): PackOnTarget[] {
  const packs = packsOnTarget(repo);
  expect(duplicateChunks(packs)).toEqual([]);
  expect(allHashes(packs)).toEqual(clean.hashes);
  // same chunks, same stored bytes, same index entries: only the number of trailers differs
  expect(targetBytes(packs)).toBe(clean.bytes + TRAILER * (packs.length - clean.packs));
  expect(targetBytes(packs)).toBeLessThanOrEqual(clean.bytes + PACK_SIZE);
  return packs;
}

beforeAll(() => {
  fx = fixture('crash-tree.sh');
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-crash-'));
  v1Tree = treeHashes(join(fx, 'v1'));
  v2Tree = treeHashes(join(fx, 'v2'));
  const repo = newRepo('clean');
  const t0 = Date.now();
  const r = backup(repo, vmWith('v1'));
  cleanMs = Date.now() - t0;
  const packs = packsOnTarget(repo);
  expect(duplicateChunks(packs)).toEqual([]);
  clean = { bytes: targetBytes(packs), hashes: allHashes(packs), packs: packs.length };
  expect(r.bytesSent).toBe(clean.bytes);
  // enough packs that the kill points below fall in the middle of the run
  expect(clean.packs).toBeGreaterThanOrEqual(10);
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// ---- backup -------------------------------------------------------------------------------------

describe('kill -9 during a backup, then back up again', () => {
  it.each([
    // the first pack is on the target and nothing of it is in the catalog yet
    ['pack-stored', 1],
    // a pack in the middle: the ones before are recorded (or in an uncommitted batch)
    ['pack-stored', 7],
    ['pack-recorded', 3],
    // every pack stored and recorded, every version written: only the completing commit is missing
    ['before-complete', 1],
  ] as const)('killed at %s (#%i): not visible, resumed without resending, check passes', (step, nth) => {
    const repo = newRepo(`${step}-${nth}`);
    const vm = vmWith('v1');
    killedAt(['backup', '--repo', repo, '--json', '--name', VM, join(vm, 'disk.vmdk')], {
      VDBAK_TEST_KILL_BACKUP_AT: `${step}:${nth}`,
    });

    // the killed run is not a backup anyone can see or restore
    const after = backups(repo);
    expect(after.filter((b) => b.state === 'complete')).toEqual([]);
    expect(backups(repo, false)).toEqual([]);
    expect(vdbak(['ls', '--repo', repo, VM, VOL]).code).not.toBe(0);
    // and check explains what it left: no error, at most packs the catalog does not know yet
    check(repo);

    const before = packsOnTarget(repo);
    // the hook fired after the nth pack was stored: at least that many are on the target
    if (step !== 'before-complete') expect(before.length).toBeGreaterThanOrEqual(nth);
    else expect(allHashes(before)).toEqual(clean.hashes);

    const r = backup(repo, vm);
    const packs = expectSentOnce(repo);
    // the second run sent only what was not on the target; nothing there was replaced
    expect(targetBytes(packs)).toBe(targetBytes(before) + r.bytesSent);
    expect(packs.map((p) => p.name)).toEqual(expect.arrayContaining(before.map((p) => p.name)));
    if (step === 'before-complete') {
      expect(r.bytesSent).toBe(0);
      expect(r.newChunks).toBe(0);
    } else {
      expect(r.bytesSent).toBeLessThan(clean.bytes);
    }

    // the killed run shows as failed (reaped by the next writer), the new one complete
    const list = backups(repo);
    expect(list.map((b) => b.state)).toEqual(['failed', 'complete']);
    expect(list[0]!.error).toMatch(/interrupted/);
    const report = check(repo);
    expect(report.orphanPacks).toEqual([]);
    expect(restored(repo, VM)).toEqual(v1Tree);
  });

  it('two kills in a row, each run resuming where the last stopped, then a clean run', () => {
    const repo = newRepo('twice');
    const vm = vmWith('v1');
    const args = ['backup', '--repo', repo, '--json', '--name', VM, join(vm, 'disk.vmdk')];
    killedAt(args, { VDBAK_TEST_KILL_BACKUP_AT: 'pack-stored:5' });
    const first = packsOnTarget(repo);
    killedAt(args, { VDBAK_TEST_KILL_BACKUP_AT: 'pack-recorded:5' });
    const second = packsOnTarget(repo);
    // the second run adopted the first's packs and added new ones: none replaced, none repeated
    expect(second.length).toBeGreaterThanOrEqual(first.length + 5);
    expect(second.map((p) => p.name)).toEqual(expect.arrayContaining(first.map((p) => p.name)));
    expect(duplicateChunks(second)).toEqual([]);
    expect(backups(repo).map((b) => b.state)).toEqual(['failed', 'running']);

    const r = backup(repo, vm);
    const packs = expectSentOnce(repo);
    expect(targetBytes(packs)).toBe(targetBytes(second) + r.bytesSent);
    expect(backups(repo).map((b) => b.state)).toEqual(['failed', 'failed', 'complete']);
    expect(check(repo).orphanPacks).toEqual([]);
    expect(restored(repo, VM)).toEqual(v1Tree);
  });

  it.each(['pack-recorded:2', 'before-complete'])(
    'a backup of changed content killed at %s leaves the previous backup as the VM’s latest',
    (at) => {
      const repo = newRepo(`visible-${at.replace(':', '-')}`);
      const vm = vmWith('v1');
      const first = backup(repo, vm);
      vmWith('v2', vm);
      killedAt(['backup', '--repo', repo, '--json', '--name', VM, join(vm, 'disk.vmdk')], {
        VDBAK_TEST_KILL_BACKUP_AT: at,
      });
      // before anything reaps the dead run (backups, ls, find, versions and restore only read)
      expect(backups(repo, false).map((b) => b.id)).toEqual([first.backupId]);
      expect(backups(repo).map((b) => b.state)).toEqual(['complete', 'running']);
      // the VM name resolves to the complete backup: v1's names, v1's bytes
      const ls = vdbakOk(['ls', '--repo', repo, VM, `${VOL}/docs`, '--json']).json<{ path: string }[]>();
      const v1Docs = [...v1Tree.keys()].filter((p) => p.startsWith('docs/')).map((p) => `${VOL}/${p}`);
      expect(ls.map((e) => e.path).sort()).toEqual(v1Docs.sort());
      expect(restored(repo, VM)).toEqual(v1Tree);
      expect(vdbakOk(['cat', '--repo', repo, VM, `${VOL}/docs/file-03.bin`]).bytes).toEqual(
        readFileSync(join(fx, 'v1', 'docs', 'file-03.bin')),
      );
      // files only the killed run saw are nowhere; a changed file has only its v1 version
      expect(vdbakOk(['find', '--repo', repo, 'new-*', '--json']).json()).toEqual([]);
      const changed = vdbakOk(['versions', '--repo', repo, VM, `${VOL}/docs/file-00.bin`, '--json']).json<
        { size: number; backups: number[] }[]
      >();
      expect(changed.map((v) => [v.size, v.backups])).toEqual([
        [statSync(join(fx, 'v1', 'docs', 'file-00.bin')).size, [first.backupId]],
      ]);
      check(repo);

      const second = backup(repo, vm);
      if (at === 'before-complete') expect(second.bytesSent).toBe(0);
      expect(backups(repo).map((b) => b.state)).toEqual(['complete', 'failed', 'complete']);
      expect(restored(repo, VM)).toEqual(v2Tree);
      expect(restored(repo, `${VM}~1`)).toEqual(v1Tree);
      expect(duplicateChunks(packsOnTarget(repo))).toEqual([]);
      expect(check(repo).orphanPacks).toEqual([]);
    },
  );

  it('a kill in the second VM of one command leaves the first VM’s backup whole and the second invisible', () => {
    const repo = newRepo('two-vms');
    const a = mkdtempSync(join(scratch, 'vm-alpha-'));
    const b = mkdtempSync(join(scratch, 'vm-beta-'));
    copyFileSync(join(fx, 'many.vmdk'), join(a, 'alpha.vmdk'));
    copyFileSync(join(fx, 'v1.vmdk'), join(b, 'beta.vmdk'));
    const args = ['backup', '--repo', repo, '--json', join(a, 'alpha.vmdk'), join(b, 'beta.vmdk')];
    // alpha stores one pack; the hook counts per VM, so the 2nd pack stored is beta's
    killedAt(args, { VDBAK_TEST_KILL_BACKUP_AT: 'pack-stored:2' });
    expect(backups(repo).map((x) => [x.state, x.id])).toEqual([
      ['complete', 1],
      ['running', 2],
    ]);
    expect(vdbakOk(['cat', '--repo', repo, 'alpha', `${VOL}/d/f17`]).bytes).toEqual(
      readFileSync(join(fx, 'many', 'd', 'f17')),
    );
    expect(vdbak(['ls', '--repo', repo, 'beta', VOL]).code).not.toBe(0);
    const alphaPacks = packsOnTarget(repo).filter((p) => p.hashes.every((h) => !clean.hashes.has(h)));
    expect(alphaPacks).toHaveLength(1);

    const out = vdbakOk(args).jsonLines<BackupJson>();
    expect(out.map((r) => r.vm)).toEqual(['alpha', 'beta']);
    expect(out[0]!.bytesSent).toBe(0);
    expect(out[1]!.bytesSent).toBeLessThan(clean.bytes);
    const packs = packsOnTarget(repo);
    expect(duplicateChunks(packs)).toEqual([]);
    expect(allHashes(packs)).toEqual(new Set([...clean.hashes, ...alphaPacks[0]!.hashes]));
    expect(backups(repo).map((x) => x.state)).toEqual(['complete', 'failed', 'complete', 'complete']);
    expect(check(repo).orphanPacks).toEqual([]);
    expect(restored(repo, 'beta')).toEqual(v1Tree);
  });

  it('check right after a kill does not count the dead run’s file rows as references', () => {
    // 6000 files of one chunk: the catalog commits a batch of their rows while that chunk's pack
    // is still in memory, then the pack is stored and the process dies before recording it
    const repo = newRepo('many');
    const vm = vmWith('many');
    killedAt(['backup', '--repo', repo, '--json', '--name', VM, join(vm, 'disk.vmdk')], {
      VDBAK_TEST_KILL_BACKUP_AT: 'pack-stored:1',
    });
    expect(backups(repo, false)).toEqual([]);
    expect(packsOnTarget(repo)).toHaveLength(1);
    // nothing visible is damaged: the repository is consistent (one pack for the next run to adopt)
    const report = check(repo);
    expect(report.orphanPacks).toHaveLength(1);

    const r = backup(repo, vm);
    expect(r.bytesSent).toBe(0);
    expect(packsOnTarget(repo)).toHaveLength(1);
    expect(check(repo).orphanPacks).toEqual([]);
    expect(restored(repo, VM)).toEqual(treeHashes(join(fx, 'many')));
  });

  it('survives SIGKILL at seeded random moments, then completes without resending', async () => {
    const rand = prng(0x5eed);
    const vm = vmWith('v1');
    let repo = newRepo('random-backup');
    // 50–800 ms, narrowed to the first 70 % of a whole backup's time here (which varies with the
    // machine's load) so that kills land inside a run rather than after it
    let span = Math.min(750, 0.7 * cleanMs);
    let killed = 0;
    for (let attempt = 0; attempt < 8 && killed < 3; attempt++) {
      const delay = 50 + Math.floor(rand() * span);
      const args = ['backup', '--repo', repo, '--json', '--name', VM, join(vm, 'disk.vmdk')];
      const end = await killAfter(args, delay);
      if (end.signal === 'SIGKILL') killed++;
      expect(duplicateChunks(packsOnTarget(repo))).toEqual([]);
      check(repo);
      // a kill after the completing commit (while the process shuts down) leaves a whole backup,
      // any other none: what is visible is always restorable
      const visible = backups(repo, false);
      expect(visible.length).toBeLessThanOrEqual(1);
      if (visible.length === 1) {
        expect(restored(repo, VM)).toEqual(v1Tree);
        // a whole backup took less than this delay: aim earlier, at a fresh repository
        span = Math.min(span, 0.7 * delay);
        repo = newRepo('random-backup');
      }
    }
    expect(killed).toBeGreaterThan(0);
    backup(repo, vm);
    expectSentOnce(repo);
    expect(backups(repo).filter((b) => b.state === 'running')).toEqual([]);
    expect(check(repo).orphanPacks).toEqual([]);
    expect(restored(repo, VM)).toEqual(v1Tree);
  });
  it('survives SIGKILL at seeded random moments in an incremental backup of changed content', async () => {
    const rand = prng(0x1ce);
    const vm = vmWith('v1');
    const start = (): { repo: string; first: number } => {
      const repo = newRepo('random-incremental');
      vmWith('v1', vm);
      const first = backup(repo, vm).backupId;
      vmWith('v2', vm);
      return { repo, first };
    };
    let { repo, first } = start();
    let span = Math.min(750, 0.7 * cleanMs);
    let killed = 0;
    for (let attempt = 0; attempt < 6 && killed < 3; attempt++) {
      const delay = 50 + Math.floor(rand() * span);
      const end = await killAfter(['backup', '--repo', repo, '--json', '--name', VM, join(vm, 'disk.vmdk')], delay);
      if (end.signal === 'SIGKILL') killed++;
      expect(duplicateChunks(packsOnTarget(repo))).toEqual([]);
      check(repo);
      const visible = backups(repo, false).map((b) => b.id);
      expect(visible[0]).toBe(first);
      if (visible.length === 1) {
        // the killed run changed nothing anyone sees
        expect(restored(repo, VM)).toEqual(v1Tree);
      } else {
        expect(visible).toHaveLength(2);
        expect(restored(repo, VM)).toEqual(v2Tree);
        span = Math.min(span, 0.7 * delay);
        ({ repo, first } = start());
      }
    }
    expect(killed).toBeGreaterThan(0);
    backup(repo, vm);
    expect(duplicateChunks(packsOnTarget(repo))).toEqual([]);
    expect(check(repo).orphanPacks).toEqual([]);
    expect(restored(repo, VM)).toEqual(v2Tree);
    expect(restored(repo, String(first))).toEqual(v1Tree);
  });
});

// ---- prune --------------------------------------------------------------------------------------

/** A repository with a backup of v1 (forgotten) and one of v2: prune has packs to delete and to rewrite. */
function repoToPrune(label: string): string {
  const repo = newRepo(label);
  const vm = vmWith('v1');
  backup(repo, vm);
  vmWith('v2', vm);
  backup(repo, vm);
  vdbakOk(['forget', '--repo', repo, '--keep-last', '1']);
  expect(backups(repo, false)).toHaveLength(1);
  return repo;
}

/** After a clean prune: the remaining backup restores, nothing is on the target twice or unknown to the catalog. */
function expectPrunedHealthy(repo: string, bytesBefore: number): void {
  const packs = packsOnTarget(repo);
  expect(duplicateChunks(packs)).toEqual([]);
  expect(targetBytes(packs)).toBeLessThan(bytesBefore);
  const report = check(repo);
  expect(report.orphanPacks).toEqual([]);
  expect(report.chunks).toBe(allHashes(packs).size);
  expect(restored(repo, VM)).toEqual(v2Tree);
}

describe('kill -9 during a prune, then prune again', () => {
  // 'committed' first fires in the loop over packs with nothing live (v2 dropped big.bin): their rows
  // are gone, the objects still there; the other two fire while live chunks are copied out of packs
  it.each(['stored-new-pack', 'committed', 'deleted-old'])(
    'killed at %s: the catalog never points at a missing pack and the next prune finishes the job',
    (step) => {
      const repo = repoToPrune(`prune-${step}`);
      const bytesBefore = targetBytes(packsOnTarget(repo));
      killedAt(['prune', '--repo', repo], { VDBAK_TEST_KILL_PRUNE_AT: step });
      // the half-done prune left a repository that checks clean and restores
      check(repo);
      expect(restored(repo, VM)).toEqual(v2Tree);

      vdbakOk(['prune', '--repo', repo]);
      expectPrunedHealthy(repo, bytesBefore);
      // a further prune has nothing left to rewrite
      const again = vdbakOk(['prune', '--repo', repo, '--json']).json<{ packsWritten: number; adoptedPacks: number }>();
      expect(again.packsWritten).toBe(0);
      expect(again.adoptedPacks).toBe(0);
    },
  );

  it('a backup after a killed prune adopts nothing twice and sends only new chunks', () => {
    const repo = repoToPrune('prune-then-backup');
    killedAt(['prune', '--repo', repo], { VDBAK_TEST_KILL_PRUNE_AT: 'committed' });
    const vm = mkdtempSync(join(scratch, 'vm-same-'));
    // the same v2 content under another VM: every chunk is already on the target
    const r = backup(repo, vmWith('v2', vm), 'clone');
    expect(r.bytesSent).toBe(0);
    check(repo);
    vdbakOk(['prune', '--repo', repo]);
    expect(duplicateChunks(packsOnTarget(repo))).toEqual([]);
    expect(check(repo).orphanPacks).toEqual([]);
    expect(restored(repo, VM)).toEqual(v2Tree);
  });

  it('survives SIGKILL at seeded random moments', async () => {
    const rand = prng(0xc0ffee);
    const repo = repoToPrune('random-prune');
    const bytesBefore = targetBytes(packsOnTarget(repo));
    for (let i = 0; i < 4; i++) {
      // a prune of this repository lasts a few hundred milliseconds after node starts:
      // kill within that span rather than mostly before or after it
      const delay = 150 + Math.floor(rand() * 350);
      await killAfter(['prune', '--repo', repo], delay);
      // whatever step it died at, nothing visible lost a chunk
      check(repo);
      expect(restored(repo, VM)).toEqual(v2Tree);
    }
    vdbakOk(['prune', '--repo', repo]);
    expectPrunedHealthy(repo, bytesBefore);
  });
});
