/**
 * `npm run demo`: builds a small sample volume store with real tools
 * (sfdisk, mkntfs + ntfs-3g, mkfs.ext4, qemu-img) and shows, step by step,
 * what vdbak reads in it — with the exact commands, so a newcomer can type
 * them too.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const store = join(root, '.cache', 'demo', 'store');
const cli = join(root, 'bin', 'vdbak.js');

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

if (!existsSync(join(store, '.done'))) {
  say('Building a sample volume store with real tools (once; cached in .cache/demo)');
  const r = spawnSync('bash', [join(root, 'scripts', 'make-sample-store.sh'), store], { stdio: 'inherit' });
  if (r.status !== 0) {
    process.stderr.write('demo: building the sample store failed (see above)\n');
    process.exit(1);
  }
}
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

say('Next steps');
process.stdout.write(
  [
    `Every command takes any disk image: try 'vdbak inspect --json ${lin}' for scripts,`,
    `or 'vdbak dump ${lin} --volume 1 > ext4.img' to hand vdbak's view of a volume to other tools.`,
    "Backups into a deduplicated repository are the next milestone (see the project's issues).",
    '',
  ].join('\n'),
);
