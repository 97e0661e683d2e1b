/**
 * applyPatch is all or nothing and one at a time (issue 7 §3): a stale plan,
 * a failed temporary write and a kill -9 between the temporary writes and the
 * renames leave every original as it was; two patches of one backup run one
 * after the other; a lock file left by a dead process is taken over; a
 * patch killed after its commit (the journal) is finished by the next one.
 *
 * The kill test runs the built module (`npm run build` first), as the CLI
 * crash tests do.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  applyPatch,
  patchFolder,
  planPatch,
  recoverPatch,
  type PatchStep,
} from '../../agent/restore-vm/patch/index.js';
import { JOURNAL_FILE } from '../../agent/restore-vm/patch/journal.js';
import { LOCK_FILE, withPatchLock } from '../../agent/restore-vm/patch/lock.js';
import { parseVmx } from '../../agent/source/vmx.js';
import { parseDescriptor, type Descriptor } from '../../parsers/disk/vmdk/descriptor.js';
import { CorruptError, errorsFor, IoError } from '../../parsers/errors.js';
import { openDisk } from '../../parsers/disk/open.js';
import { ROOT, run } from '../helpers/fixtures.js';
import { DISK_FILES, makeVmFolder, snapshotFolder } from './patch-fixture.js';

const OPTS = {
  name: 'new01',
  datastoreMap: [{ from: 'ds1', to: 'ds2' }],
  diskFiles: DISK_FILES.map((f) => ({ old: f, new: f })),
};
const DIST = join(ROOT, 'dist', 'agent', 'restore-vm', 'patch', 'index.js');

/** The descriptor embedded in a sparse VMDK (qemu puts it at sector 1, 20 sectors). */
function embeddedDescriptor(path: string): Descriptor {
  const b = readFileSync(path);
  return parseDescriptor(b.subarray(512, 512 + 20 * 512), errorsFor({ image: path, layer: 'vmdk' }), 512);
}

/** Runs patchFolder in a child process (the built module) that kills itself with SIGKILL at `step`. */
function killAt(dir: string, step: PatchStep): void {
  const script = `
    const { patchFolder } = await import(${JSON.stringify(DIST)});
    await patchFolder(${JSON.stringify(dir)}, ${JSON.stringify(OPTS)}, {
      hook: (step) => { if (step === ${JSON.stringify(step)}) process.kill(process.pid, 'SIGKILL'); },
    });
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(r.signal, `the child should die at ${step}: ${r.stderr}`).toBe('SIGKILL');
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('all or nothing', () => {
  it('a plan whose file changed since is refused (PATCH_STALE) and nothing is written', async () => {
    const dir = makeVmFolder();
    const plan = planPatch(dir, OPTS);
    writeFileSync(join(dir, 'win01.vmsd'), '.encoding = "UTF-8"\n');
    const before = snapshotFolder(dir);
    const e = await rejection(applyPatch(plan));
    expect(e).toBeInstanceOf(CorruptError);
    expect(e).toMatchObject({ code: 'PATCH_STALE', image: join(dir, 'win01.vmsd') });
    expect(snapshotFolder(dir)).toEqual(before);
  });

  it('a file that appeared since at a new name is not replaced (PATCH_STALE)', async () => {
    const dir = makeVmFolder();
    const plan = planPatch(dir, OPTS);
    writeFileSync(join(dir, 'new01.vmsd'), 'someone else’s');
    const before = snapshotFolder(dir);
    const e = await rejection(applyPatch(plan));
    expect(e).toMatchObject({ code: 'PATCH_STALE', image: join(dir, 'new01.vmsd') });
    expect(snapshotFolder(dir)).toEqual(before);
  });

  it('a temporary that cannot be written: a typed error, every original intact, no temporary left', async () => {
    const dir = makeVmFolder();
    const before = snapshotFolder(dir);
    // the .vmsd's temporary is a folder: written after the .vmx's, which must be removed again
    mkdirSync(join(dir, `win01.vmsd.tmp-${process.pid}`));
    const e = await rejection(patchFolder(dir, OPTS));
    expect(e).toBeInstanceOf(IoError);
    expect(e).toMatchObject({ code: 'PATCH_WRITE', image: join(dir, `win01.vmsd.tmp-${process.pid}`) });
    expect(snapshotFolder(dir)).toEqual(before);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('kill -9 between the temporary writes and the renames leaves the originals; the next patch cleans up', async () => {
    const dir = makeVmFolder();
    const before = snapshotFolder(dir);
    killAt(dir, 'temps-written');
    const after = snapshotFolder(dir);
    const temps = Object.keys(after).filter((f) => /\.tmp-\d+$/.test(f));
    expect(temps.length).toBeGreaterThan(1);
    for (const t of temps) delete after[t];
    delete after[LOCK_FILE];
    expect(after).toEqual(before);
    // the dead process's lock and temporaries do not stop the next patch
    await patchFolder(dir, OPTS);
    expect(readdirSync(dir).filter((f) => /\.tmp-\d+$/.test(f) || f === LOCK_FILE)).toEqual([]);
    expect(parseVmx(readFileSync(join(dir, 'new01.vmx'), 'utf8'), 'new01.vmx').displayName).toBe('new01');
  });
});

describe('a patch killed after its commit is finished by the next one', () => {
  it('kill -9 after the journal: originals still there; recoverPatch does every step, a torn descriptor write included', async () => {
    const dir = makeVmFolder();
    const before = snapshotFolder(dir);
    const chain = ['win01.vmdk', 'win01-000001.vmdk', 'win01-000002.vmdk'];
    const oldCids = chain.map((f) => embeddedDescriptor(join(dir, f)).cid);
    killAt(dir, 'committed');
    const after = snapshotFolder(dir);
    expect(Object.keys(after)).toContain(JOURNAL_FILE);
    for (const f of Object.keys(after))
      if (/\.tmp-\d+$/.test(f) || f === JOURNAL_FILE || f === LOCK_FILE) delete after[f];
    expect(after).toEqual(before);
    // the power went out in the middle of the in-place write of a descriptor
    const base = join(dir, 'win01.vmdk');
    const bytes = readFileSync(base);
    bytes.fill(0x20, 512 + 100, 512 + 4096);
    writeFileSync(base, bytes);

    expect(await recoverPatch(dir)).toBe(true);
    expect(readdirSync(dir).filter((f) => /\.tmp-\d+$/.test(f) || f.startsWith('.vdbak-patch'))).toEqual([]);
    expect(parseVmx(readFileSync(join(dir, 'new01.vmx'), 'utf8'), 'new01.vmx').displayName).toBe('new01');
    expect(existsSync(join(dir, 'win01.vmx'))).toBe(false);
    expect(existsSync(join(dir, 'new01-Snapshot2.vmsn'))).toBe(true);
    // every descriptor of the chain was written: our reader checks each parentCID against its parent's CID
    const now = chain.map((f) => embeddedDescriptor(join(dir, f)));
    now.forEach((d, i) => expect(d.cid).not.toBe(oldCids[i]));
    expect(now[0]?.extents.map((e) => e.fileName)).toEqual(['win01.vmdk']);
    expect(now[0]?.ddb['uuid']).toBeDefined();
    openDisk(join(dir, 'win01-000002.vmdk')).close();
    run('qemu-img', ['info', '--backing-chain', join(dir, 'win01-000002.vmdk')]);
    expect(await recoverPatch(dir)).toBe(false);
  });

  it('a journal naming a file outside the folder is refused', async () => {
    const dir = makeVmFolder();
    writeFileSync(
      join(dir, JOURNAL_FILE),
      JSON.stringify({ version: 1, steps: [{ op: 'rename', from: '../x', to: 'y' }] }),
    );
    const e = await rejection(recoverPatch(dir));
    expect(e).toMatchObject({ code: 'PATCH_JOURNAL', image: join(dir, JOURNAL_FILE) });
  });
});

describe('one at a time', () => {
  it('two patches of one backup run one after the other; the second plans from the first’s result', async () => {
    const dir = makeVmFolder();
    const events: string[] = [];
    const hook = (who: string) => (step: PatchStep) => events.push(`${who}:${step}`);
    const [a, b] = await Promise.all([
      patchFolder(dir, { ...OPTS, lockKey: 'backup-7' }, { hook: hook('a') }),
      patchFolder(dir, { ...OPTS, lockKey: 'backup-7' }, { hook: hook('b') }),
    ]);
    expect(events).toEqual([
      'a:temps-written',
      'a:committed',
      'a:renamed',
      'b:temps-written',
      'b:committed',
      'b:renamed',
    ]);
    expect(a.plan.files.find((f) => f.kind === 'vmx')?.renameTo).toBe(join(dir, 'new01.vmx'));
    expect(b.plan.files.find((f) => f.kind === 'vmx')?.path).toBe(join(dir, 'new01.vmx'));
    expect(b.plan.renames).toEqual([]);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('plans made together are applied one after the other: the second finds its files changed', async () => {
    const dir = makeVmFolder();
    const p1 = planPatch(dir, { ...OPTS, name: undefined });
    const p2 = planPatch(dir, { ...OPTS, name: undefined });
    const [r1, r2] = await Promise.allSettled([applyPatch(p1), applyPatch(p2)]);
    expect(r1.status).toBe('fulfilled');
    expect(r2.status === 'rejected' && (r2.reason as CorruptError).code).toBe('PATCH_STALE');
  });

  it('the lock holds across awaits: one backup in two folders (the mutex), one folder under two keys (the lock file)', async () => {
    const d1 = makeVmFolder();
    const d2 = makeVmFolder();
    const events: string[] = [];
    const job = (who: string) => async () => {
      events.push(`${who}+`);
      await sleep(30);
      events.push(`${who}-`);
    };
    await Promise.all([withPatchLock('b1', d1, job('a')), withPatchLock('b1', d2, job('b'))]);
    await Promise.all([withPatchLock('x', d1, job('c')), withPatchLock('y', d1, job('d'))]);
    expect(events).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-', 'd+', 'd-']);
  });

  it('across processes: a live holder makes us wait, then PATCH_LOCKED; a dead one is taken over', async () => {
    const dir = makeVmFolder();
    const sleeper = spawn('sleep', ['30']);
    try {
      writeFileSync(join(dir, LOCK_FILE), `${sleeper.pid}\n`);
      const e = await rejection(withPatchLock('k', dir, () => 1, 300));
      expect(e).toMatchObject({ code: 'PATCH_LOCKED' });
    } finally {
      sleeper.kill('SIGKILL');
    }
    await new Promise((r) => sleeper.once('exit', r));
    expect(await withPatchLock('k', dir, () => 2, 300)).toBe(2);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });
});
