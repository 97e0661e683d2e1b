/**
 * The vdbak command line.
 *
 *   vdbak inspect <disk> [--json]                 what is inside a disk image
 *   vdbak dump <disk> [--volume N]                the virtual device's (or one volume's) bytes to stdout
 *   vdbak ls <disk> [path] [-l] [-R] [--json] [--volume N]
 *   vdbak cat <disk> <path>[:stream] [--volume N]
 */
import { parseArgs } from 'node:util';
import { isVdbakError } from '../parsers/errors.js';
import { cmdCat, cmdDump, cmdInspect, cmdLs } from './commands/disk.js';
import { VERSION } from './version.js';

const USAGE = `vdbak ${VERSION} — agentless VM backup

Usage:
  vdbak inspect <disk> [--json]
      format, snapshot chain, virtual size, allocated bytes, volumes and filesystems
  vdbak dump <disk> [--volume N]
      write the virtual disk's bytes (or volume N's) to stdout
  vdbak ls <disk> [path] [-l] [-R] [--json] [--volume N]
      list a directory of a guest filesystem (no backup needed)
  vdbak cat <disk> <path>[:stream] [--volume N]
      write a guest file (or one of its named streams) to stdout

<disk> is any disk image (VMDK of any subformat, snapshot deltas, qcow2, raw):
the format is recognised by content. --volume N picks a partition by the
number 'inspect' shows; it may be left out when only one volume holds a
filesystem vdbak reads.
`;

class UsageError extends Error {}

function need(args: string[], n: number, what: string): void {
  if (args.length < n) throw new UsageError(`missing ${what}`);
}

function volumeArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--volume takes a volume number (1, 2, …), not '${v}'`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === '--version' || cmd === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      volume: { type: 'string' },
      long: { type: 'boolean', short: 'l', default: false },
      recursive: { type: 'boolean', short: 'R', default: false },
    },
  });
  switch (cmd) {
    case 'inspect':
      need(positionals, 1, '<disk>');
      return cmdInspect(positionals[0]!, { json: values.json ?? false });
    case 'dump':
      need(positionals, 1, '<disk>');
      return cmdDump(positionals[0]!, { volume: volumeArg(values.volume) });
    case 'ls':
      need(positionals, 1, '<disk>');
      return cmdLs(positionals[0]!, positionals[1] ?? '/', {
        volume: volumeArg(values.volume),
        long: values.long ?? false,
        recursive: values.recursive ?? false,
        json: values.json ?? false,
      });
    case 'cat':
      need(positionals, 2, '<disk> <path>');
      return cmdCat(positionals[0]!, positionals[1]!, { volume: volumeArg(values.volume) });
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (
      e instanceof UsageError ||
      (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))
    ) {
      process.stderr.write(`vdbak: ${e.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (isVdbakError(e)) {
      process.stderr.write(`vdbak: ${e.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`vdbak: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exitCode = 70;
    }
  },
);
