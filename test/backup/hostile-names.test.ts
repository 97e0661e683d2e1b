/**
 * Issue 5 §2/§4: restoring a guest's hostile names never writes outside the
 * destination, and the report lists every rename. The ext4 volume
 * (backup-hostile.sh) holds names with `\`, 255 bytes, Windows device names,
 * control characters, trailing dots and spaces, invalid UTF-8, and two
 * directory entries patched so that a folder shares its name with a symlink
 * that points outside (absolute) or climbs out (relative). The destination
 * itself may already hold a symlink where the backup has a folder (a planted
 * link, or what an earlier restore of another backup left): nothing is written
 * through it, with or without --overwrite.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { fixture } from '../helpers/fixtures.js';
import { type BackupJson, CLI, newRepo, snapshotTree, vdbak, vdbakOk } from '../helpers/vdbak.js';

/** Where the guest's absolute symlink points; it must stay empty. Fixed: the fixture holds the path. */
const OUTSIDE = '/tmp/vdbak-hostile-outside';
/** Where the relative symlink climbs to, from any destination here: the file it would leave there. */
const CLIMBED = '/vdbak-pwned-rel.txt';

interface Note {
  path: string;
  kind: string;
  detail: string;
  restoredAs?: string;
}

let dir: string;
let repo: string;
let scratch: string;
let backup: BackupJson;

/** Names at the root of the volume, as the guest wrote them (bytes). */
function guestNames(): Buffer[] {
  return readFileSync(join(dir, 'names.txt'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((h) => Buffer.from(h, 'hex'));
}

function expectNothingOutside(dest: string): void {
  expect(readdirSync(OUTSIDE)).toEqual([]);
  expect(existsSync(CLIMBED)).toBe(false);
  // the destination's parents hold nothing but the destination
  expect(readdirSync(join(dest, '..'))).toEqual(['out']);
}

/** A destination four folders deep in the scratch folder (the relative link climbs seven). */
function destination(): string {
  const base = mkdtempSync(join(scratch, 'd-'));
  const parent = join(base, 'a', 'b', 'c');
  mkdirSync(parent, { recursive: true });
  return join(parent, 'out');
}

beforeAll(() => {
  // not emptied first: anything in it is a finding (and another run may be using it now)
  mkdirSync(OUTSIDE, { recursive: true });
  dir = fixture('backup-hostile.sh', [OUTSIDE]);
  repo = newRepo('hostile');
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-hostile-'));
  backup = vdbakOk(['backup', '--repo', repo, '--json', join(dir, 'hostile.vmdk')]).jsonLines<BackupJson>()[0]!;
});

describe('a guest volume with hostile names', () => {
  test('the backup keeps one entry of each duplicated name and says so', () => {
    const dups = backup.warningList.filter((w) => w.includes('EXT_DUPLICATE_NAME'));
    expect(dups.map((w) => /:(\/Qz7dup\w+): /.exec(w)?.[1])).toEqual(['/Qz7dupAbs', '/Qz7dupRel']);
  });

  test('restore --to: every name made safe and reported, every file whole, nothing outside', () => {
    const dest = destination();
    const r = vdbak(['restore', '--repo', repo, 'hostile', '/d0p1', '--to', dest, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const notes = r.json<{ notes: Note[] }>().notes;
    const renamed = new Map(notes.filter((n) => n.kind === 'renamed').map((n) => [n.path, n.restoredAs!]));
    // each hostile name that Linux or a Windows share would refuse or misread is renamed
    const mustRename = guestNames()
      .map((b) => b.toString('utf8'))
      .filter((n) => /[\\\x00-\x1f]|^(con|aux|nul|com1)(\.|$)|[. ]$/i.test(n));
    expect(mustRename.length).toBe(11);
    for (const n of mustRename) expect(renamed.has(n), JSON.stringify(n)).toBe(true);
    expect(renamed.get('dir/CON')).toBe('dir/CON_');
    // renamed files hold their own content, under a name that is one plain component
    for (const [guest, safe] of renamed) {
      if (guest === 'dir/CON') continue;
      expect(safe).not.toMatch(/[\\/\x00-\x1f]|^\.\.?$/);
      expect(readFileSync(join(dest, safe), 'utf8')).toBe(`content of ${guest}\n`);
    }
    // names that are fine stay as they are: 255 bytes, leading dots
    const long = `${'L'.repeat(251)}.txt`;
    expect(readFileSync(join(dest, long), 'utf8')).toBe(`content of ${long}\n`);
    expect(readFileSync(join(dest, '..hidden'), 'utf8')).toBe('content of ..hidden\n');
    // the folders that kept the duplicated names are ordinary folders here
    const tree = snapshotTree(dest);
    expect(tree.get('Qz7dupAbs')?.type).toBe('dir');
    expect(tree.get('Qz7dupRel')?.type).toBe('dir');
    expect([...tree.values()].filter((e) => e.type === 'symlink')).toEqual([]);
    expectNothingOutside(dest);
  });

  test.each([false, true])(
    'a symlink already in the destination where the backup has a folder is not followed (--overwrite %s)',
    (overwrite) => {
      const dest = destination();
      mkdirSync(dest);
      symlinkSync(OUTSIDE, join(dest, 'dir'));
      symlinkSync('../../../../../../..', join(dest, 'Qz7dupRel'));
      const r = vdbak([
        'restore',
        '--repo',
        repo,
        'hostile',
        '/d0p1',
        '--to',
        dest,
        '--json',
        ...(overwrite ? ['--overwrite'] : []),
      ]);
      expect([0, 1], r.stderr).toContain(r.code);
      const notes = r.json<{ notes: Note[] }>().notes;
      // what could not be written is reported, by the guest's path
      const about = (p: string) => notes.some((n) => n.path === p || n.path.startsWith(`${p}/`));
      if (!overwrite) {
        expect(about('dir')).toBe(true);
        expect(about('Qz7dupRel')).toBe(true);
      }
      expectNothingOutside(dest);
      // whatever --overwrite did, the folder's files are inside the destination or not at all
      const tree = snapshotTree(dest);
      for (const [p, e] of tree) if (e.type === 'symlink') expect(['dir', 'Qz7dupRel']).toContain(p);
    },
  );

  test('cat and restore of a name with a colon give the file (a colon is not a stream on ext)', () => {
    const path = '/d0p1/dir/at 10:30.txt';
    const dest = destination();
    vdbakOk(['restore', '--repo', repo, 'hostile', path, '--to', dest]);
    expect(readFileSync(join(dest, 'at 10:30.txt'), 'utf8')).toBe('meeting notes\n');
    const c = vdbak(['cat', '--repo', repo, 'hostile', path]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toBe('meeting notes\n');
  });

  test('restore --tar -: relative, safe names only; GNU tar extracts nothing outside', () => {
    const dest = destination();
    mkdirSync(dest);
    const r = spawnSync(process.execPath, [CLI, 'restore', '--repo', repo, 'hostile', '/d0p1', '--tar', '-'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(r.status, r.stderr.toString()).toBe(0);
    const list = spawnSync('tar', ['-t', '--quoting-style=escape'], { input: r.stdout, encoding: 'utf8' });
    expect(list.status).toBe(0);
    const names = list.stdout.split('\n').filter(Boolean);
    expect(names.length).toBeGreaterThan(15);
    for (const n of names) {
      expect(n.startsWith('/'), n).toBe(false);
      expect(
        n.split('/').some((c) => c === '..'),
        n,
      ).toBe(false);
    }
    const x = spawnSync('tar', ['-x', '-C', dest], { input: r.stdout });
    expect(x.status, x.stderr.toString()).toBe(0);
    expect(readFileSync(join(dest, 'back_slash'), 'utf8')).toBe('content of back\\slash\n');
    expect(readFileSync(join(dest, 'dir', 'CON_'), 'utf8')).toBe('inner\n');
    expectNothingOutside(dest);
  });
});

describe('NTFS stream names with path separators', () => {
  let streamsBackup: number;
  const escaping = `../../../../../../..${OUTSIDE}/pwned-stream`;

  beforeAll(() => {
    streamsBackup = vdbakOk(['backup', '--repo', repo, '--json', join(dir, 'streams.img')]).jsonLines<BackupJson>()[0]!
      .backupId;
  });

  test('are kept whole in the catalog (ls lists them)', () => {
    const ls = vdbakOk(['ls', '--repo', repo, String(streamsBackup), '/d0p1/file.txt', '--json']).json<
      { streams?: { name: string }[] }[]
    >();
    expect(ls[0]!.streams!.map((s) => s.name).sort()).toEqual([escaping, 'a/b'].sort());
  });

  test('restore --to writes each as one safe sidecar beside its file, nothing outside', () => {
    const dest = destination();
    const r = vdbak(['restore', '--repo', repo, String(streamsBackup), '/d0p1', '--to', dest, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const sidecars = readdirSync(dest).filter((n) => n.startsWith('file.txt:'));
    expect(sidecars).toHaveLength(2);
    const contents = sidecars.map((n) => readFileSync(join(dest, n), 'utf8')).sort();
    expect(contents).toEqual(['escaping stream', 'slashed stream']);
    const notes = r.json<{ notes: Note[] }>().notes.filter((n) => n.kind === 'renamed');
    expect(notes.map((n) => n.path).sort()).toEqual([`file.txt:${escaping}`, 'file.txt:a/b'].sort());
    expectNothingOutside(dest);
  });

  test('restore --tar - holds them as single safe entries; GNU tar extracts nothing outside', () => {
    const dest = destination();
    mkdirSync(dest);
    const r = spawnSync(process.execPath, [
      CLI,
      'restore',
      '--repo',
      repo,
      String(streamsBackup),
      '/d0p1',
      '--tar',
      '-',
    ]);
    expect(r.status, r.stderr.toString()).toBe(0);
    const x = spawnSync('tar', ['-x', '-C', dest], { input: r.stdout });
    expect(x.status, x.stderr.toString()).toBe(0);
    expect(readdirSync(dest).filter((n) => n.startsWith('file.txt:'))).toHaveLength(2);
    expectNothingOutside(dest);
  });
});
