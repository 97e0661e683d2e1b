/**
 * `npm run demo`: builds a small sample volume store with real tools
 * (sfdisk, mkntfs + ntfs-3g, mkfs.ext4, qemu-img) and shows, step by step,
 * what vdbak reads in it — with the exact commands, so a newcomer can type
 * them too.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CLI as cli, ensureSampleStore, PROJECT_ROOT as root, SAMPLE_STORE as store } from './sample-store.js';

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

function vdbak(...args: string[]): void {
  process.stdout.write(`$ vdbak ${args.map((a) => (/[\s']/.test(a) ? `'${a}'` : a)).join(' ')}\n`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    process.stdout.write(`(vdbak exited with ${r.status})\n`);
    process.exitCode = 1;
  }
}

if (!ensureSampleStore(say)) process.exit(1);
const rel = (p: string) => relative(process.cwd(), p) || p;
const win = rel(join(store, 'win01', 'win01-000001.vmdk'));
const lin = rel(join(store, 'lin01', 'lin01.vmdk'));

say('A Windows-like VM: its current disk is a snapshot delta on top of a base VMDK');
process.stdout.write(
  'vdbak recognises each file by its content, follows the snapshot chain and finds the partitions.\n',
);
vdbak('inspect', win);

say('The guest files, read straight from the disk image (no guest agent, no mount)');
vdbak('ls', win, '/Users/ana/Documents', '-l', '--volume', '2');
vdbak('cat', win, '/Windows/System32/drivers/etc/hosts', '--volume', '2');
process.stdout.write('An NTFS alternate data stream, FILE:STREAM:\n');
vdbak('cat', win, '/Users/ana/Documents/report.docx:Zone.Identifier', '--volume', '2');

say('A Linux VM: ext4 on an MBR partition, in a compressed streamOptimized VMDK');
vdbak('inspect', lin);
vdbak('ls', lin, '/', '-R');
vdbak('cat', lin, '/home/bob/notes.txt');

// ---- backups ------------------------------------------------------------------------------
const repo = join(root, '.cache', 'demo', 'repo');
const storeRel = rel(store);
rmSync(repo, { recursive: true, force: true });
process.env.VDBAK_REPO = repo;

say('Backups: create a repository (a SQLite catalog and a backup target folder)');
process.stdout.write(`Every command below uses it through VDBAK_REPO=${rel(repo)} (or --repo DIR).\n`);
vdbak('init');

say('Back up both VMs: every disk, every volume, every file, cut into deduplicated chunks');
process.stdout.write(
  'The EFI partition holds no filesystem vdbak reads: it is kept as its allocated bytes, and said so.\n',
);
vdbak('backup', join(storeRel, 'win01'), join(storeRel, 'lin01'));

say('Browse a backup without the VM or its disks: volumes are d<disk>p<partition>, or their label');
vdbak('backups');
vdbak('ls', 'win01', '/WINDOWS/Users/ana/Documents', '-l');

say('Inside lin01 a user edits a file (we change the disk image with debugfs, as the VM would)');
const work = join(root, '.cache', 'demo', 'work');
mkdirSync(work, { recursive: true });
writeFileSync(join(work, 'notes.txt'), 'remember the milk\nand the bread\n');
const linVmdk = join(store, 'lin01', 'lin01.vmdk');
const edit = spawnSync(
  'bash',
  [
    '-c',
    `set -e; cd "${work}"; qemu-img convert -O raw "${linVmdk}" lin.raw
     start=$(sfdisk --json lin.raw | jq '.partitiontable.partitions[0].start')
     size=$(sfdisk --json lin.raw | jq '.partitiontable.partitions[0].size')
     dd if=lin.raw of=part.img bs=512 skip=$start count=$size status=none
     debugfs -w -R "rm /home/bob/notes.txt" part.img >/dev/null 2>&1
     debugfs -w -R "write notes.txt /home/bob/notes.txt" part.img >/dev/null 2>&1
     dd if=part.img of=lin.raw bs=512 seek=$start conv=notrunc status=none
     qemu-img convert -f raw -O vmdk -o subformat=streamOptimized lin.raw "${linVmdk}.new"
     mv "${linVmdk}.new" "${linVmdk}"; rm -f lin.raw part.img
     rm -f "${join(store, '.done')}"`,
  ],
  { stdio: 'inherit' },
);
if (edit.status !== 0) {
  process.stderr.write('demo: changing the Linux disk failed (see above)\n');
  process.exit(1);
}

say('Back up lin01 again: only the changed file is read, only its new chunk is sent');
vdbak('backup', join(storeRel, 'lin01'));

say('Find a file across every backup, and see its versions');
vdbak('find', 'notes*');
vdbak('versions', 'lin01', '/d0p1/home/bob/notes.txt');

say('Restore: the file as it is now, and as it was one backup before (lin01~1)');
const out = join(root, '.cache', 'demo', 'restored');
rmSync(out, { recursive: true, force: true });
vdbak('cat', 'lin01', '/d0p1/home/bob/notes.txt');
vdbak('restore', 'lin01~1', '/linroot/home/bob/notes.txt', '--to', rel(out));
process.stdout.write(`${rel(join(out, 'notes.txt'))} now holds the older version:\n`);
process.stdout.write(readFileSync(join(out, 'notes.txt'), 'utf8'));
vdbak('restore', 'win01', '/d0p2/Users/ana', '--to', rel(join(out, 'win01')));

say('Keep the repository healthy: verify every chunk of every backup');
vdbak('check', '--read-data');

say('Next steps');
process.stdout.write(
  [
    `Every command takes any disk image: try 'vdbak inspect --json ${lin}' for scripts.`,
    "'vdbak restore-vm lin01 --to DIR' brings back the whole VM: its disk rebuilt from the backup, sparse.",
    "'vdbak --help' lists the rest: restore --tar, forget with retention rules, prune, recovery plans.",
    `The demo's repository stays in ${rel(repo)}; run 'npm run demo' again to start over.`,
    '',
  ].join('\n'),
);
