/**
 * The CLI end to end, as a user runs it: `node bin/vdbak.js …` on the demo's
 * sample volume store (built by real tools), checked against qemu-img,
 * sfdisk and the source trees. Needs `npm run build` first (npm test does it).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, ROOT, run, sha256, sha256sumFile } from '../helpers/fixtures.js';

const CLI = join(ROOT, 'bin', 'vdbak.js');

function vdbak(args: string[]): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { maxBuffer: 1024 * 1024 * 1024 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

let store: string;
let scratch: string;
let win: string;
let lin: string;

beforeAll(() => {
  const script = readFileSync(join(ROOT, 'scripts', 'make-sample-store.sh'));
  store = fixture('sample-store.sh', [createHash('sha256').update(script).digest('hex').slice(0, 16)]);
  scratch = mkdtempSync(join(tmpdir(), 'vdbak-cli-'));
  win = join(store, 'win01', 'win01-000001.vmdk');
  lin = join(store, 'lin01', 'lin01.vmdk');
});

describe('vdbak inspect', () => {
  it('describes a snapshot chain on a GPT disk like qemu-img and sfdisk do', () => {
    const r = vdbak(['inspect', win, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout.toString());
    const qemu = JSON.parse(run('qemu-img', ['info', '--output=json', '--backing-chain', win]));
    expect(d.format).toBe('vmdk');
    expect(d.virtualSize).toBe(qemu[0]['virtual-size']);
    expect(d.chain.map((c: { path: string }) => c.path)).toEqual(qemu.map((q: { filename: string }) => q.filename));
    const raw = join(scratch, 'win.raw');
    run('qemu-img', ['convert', '-O', 'raw', win, raw]);
    const sf = JSON.parse(run('sfdisk', ['--json', raw])).partitiontable;
    expect(d.partitionScheme).toBe('gpt');
    expect(d.volumes).toHaveLength(sf.partitions.length);
    sf.partitions.forEach((p: { start: number; size: number; name: string; uuid: string }, i: number) => {
      expect(d.volumes[i].offset).toBe(p.start * 512);
      expect(d.volumes[i].length).toBe(p.size * 512);
      expect(d.volumes[i].name).toBe(p.name);
      expect(d.volumes[i].uuid.toLowerCase()).toBe(p.uuid.toLowerCase());
    });
    expect(d.volumes[0].filesystem).toBeNull();
    expect(d.volumes[1].filesystem).toBe('ntfs');
    expect(d.volumes[1].fsInfo.label).toBe('WINDOWS');
  });

  it('prints a human summary', () => {
    const r = vdbak(['inspect', lin]);
    expect(r.status).toBe(0);
    const out = r.stdout.toString();
    expect(out).toMatch(/format\s+vmdk \(streamOptimized\)/);
    expect(out).toMatch(/partitions\s+mbr/);
    expect(out).toMatch(/ext4\s+label "linroot"/);
  });

  it('fails with a typed message and exit 1 for a missing file, exit 2 for bad usage', () => {
    const r = vdbak(['inspect', join(store, 'nope.vmdk')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/IMAGE_NOT_FOUND/);
    expect(vdbak(['inspect']).status).toBe(2);
    expect(vdbak(['frobnicate', lin]).status).toBe(2);
  });
});

describe('vdbak dump', () => {
  it('streams the same bytes as qemu-img convert -O raw', () => {
    const raw = join(scratch, 'lin.raw');
    run('qemu-img', ['convert', '-O', 'raw', lin, raw]);
    const r = vdbak(['dump', lin]);
    expect(r.status).toBe(0);
    expect(sha256(r.stdout)).toBe(sha256sumFile(raw));
  });

  it('streams one volume: the bytes sfdisk says the partition holds', () => {
    const raw = join(scratch, 'lin.raw');
    run('qemu-img', ['convert', '-O', 'raw', lin, raw]);
    const p = JSON.parse(run('sfdisk', ['--json', raw])).partitiontable.partitions[0];
    const part = run('bash', ['-c', `dd if=${raw} bs=512 skip=${p.start} count=${p.size} status=none | sha256sum`]);
    const r = vdbak(['dump', lin, '--volume', '1']);
    expect(r.status).toBe(0);
    expect(sha256(r.stdout)).toBe(part.split(' ')[0]);
  });

  it('stops quietly when the reader goes away', () => {
    const r = spawnSync('bash', ['-c', `set -o pipefail; node ${CLI} dump ${lin} | head -c 512 | wc -c`], {
      encoding: 'utf8',
    });
    expect(r.stdout.trim()).toBe('512');
    expect(r.stderr).toBe('');
  });
});

describe('vdbak ls and cat', () => {
  it('lists the ext4 volume of the Linux VM recursively as JSON, matching the source tree', () => {
    const r = vdbak(['ls', lin, '/', '-R', '--json']);
    expect(r.status).toBe(0);
    const entries = r.stdout
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const paths = entries.map((e) => e.path).filter((p) => !p.startsWith('/lost+found'));
    const src = run('bash', [
      '-c',
      `cd ${join(store, 'sources', 'lin01')} && find . -mindepth 1 | sed 's/^\\.//' | sort`,
    ])
      .trim()
      .split('\n');
    expect([...paths].sort()).toEqual(src);
    const motd = entries.find((e) => e.path === '/etc/motd');
    expect(motd.type).toBe('symlink');
    expect(motd.linkTarget).toBe('../home/bob/notes.txt');
  });

  it('cats a file from ext4 and from NTFS, and an NTFS alternate data stream', () => {
    const notes = vdbak(['cat', lin, '/home/bob/notes.txt']);
    expect(notes.status).toBe(0);
    expect(notes.stdout.toString()).toBe('remember the milk\n');
    const photo = vdbak(['cat', win, '/Users/ana/Documents/photo.jpg', '--volume', '2']);
    expect(photo.status).toBe(0);
    expect(sha256(photo.stdout)).toBe(sha256sumFile(join(store, 'sources', 'win01', 'Users/ana/Documents/photo.jpg')));
    const ads = vdbak(['cat', win, '/Users/ana/Documents/report.docx:Zone.Identifier', '--volume', '2']);
    expect(ads.status).toBe(0);
    expect(ads.stdout.toString()).toBe('downloaded from the internet\n');
  });

  it('ls -l shows modes, sizes and named streams; a missing path is exit 1', () => {
    const r = vdbak(['ls', win, '/Users/ana/Documents', '-l', '--volume', '2']);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/report\.docx\s+\[streams: Zone\.Identifier 29\]/);
    const missing = vdbak(['cat', lin, '/etc/nope']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/PATH_NOT_FOUND/);
    const ambiguous = vdbak(['ls', win, '/']);
    // only volume 2 holds a filesystem vdbak reads, so no --volume is needed
    expect(ambiguous.status).toBe(0);
  });
});
