/**
 * The vdbak command line. Each command's module is loaded only when it runs,
 * so that a single-file restore does not pay for loading every disk parser.
 */
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { isVdbakError } from '../parsers/errors.js';
import { DAEMON_USAGE, UsageError } from './commands/usage.js';

/** The usage text; the version is read from package.json only when it is shown. */
const usage = async (): Promise<string> => `vdbak ${(await import('./version.js')).VERSION} — agentless VM backup

Repository (--repo DIR on every command, else $VDBAK_REPO, else /var/lib/vdbak):
  vdbak init [--target PATH] [--chunk-min N --chunk-avg N --chunk-max N] [--pack-size N]
      create a repository: a SQLite catalog and a backup target (default DIR/target)
  vdbak backup <vm folder | .vmx | libvirt .xml | disk image>... [--json] [--name NAME] [--threads N]
               [--throttle] [--max-rate N] [--rescan]
      back up every disk, volume and file of each VM (incremental: unchanged files are not read; a VM
      none of whose files changed is not read at all, unless --rescan)
  vdbak backups [vm] [--json] [--all]
      list backups (--all: also running and failed ones)

Browse and restore (a backup is an id, a VM name for its latest backup, or VM~N):
  vdbak ls <backup> [/<volume>/path] [-l] [-R] [--json]
  vdbak cat <backup> </volume/path>[:stream]
  vdbak find <glob | /regex/> [--vm VM] [--since DATE|3d] [--json] [--limit N]
  vdbak versions <vm> </volume/path> [--json]
  vdbak restore <backup> </volume/path> (--to DIR | --tar FILE|-) [--overwrite] [--json]
      volumes are named d<disk>p<partition> (d0p2), or by their label when unique

Whole-VM recovery:
  vdbak restore-vm <backup> --to FOLDER [--name NEW] [--datastore-map OLD=NEW ...]
      [--format vmdk-sparse|vmdk-flat|qcow2|raw] [--keep-identity] [--dry-run] [--overwrite] [--json]
      rebuild every disk of the VM (sparse) and restore its configuration files into FOLDER, patched for
      the new place; a backup without disk regions restores, but is reported incomplete (exit 1)
  vdbak group set NAME [--vm VM ...] [--datastore DS ...] [--critical VM ...] | group ls | group show NAME | group rm NAME
      protection groups: listed VMs and every VM of listed datastores (critical ones are restored first)
  vdbak plan set NAME --step GROUP[:stop|:continue] ... | plan ls | plan show NAME | plan rm NAME
  vdbak plan run NAME --to FOLDER [--format F] [--datastore-map OLD=NEW ...] [--keep-identity] [--dry-run] [--json]
      restore each step's VMs in order into FOLDER/<vm>, and report every step

Repository health:
  vdbak check [--read-data] [--json]
  vdbak forget [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--vm VM] [--dry-run] [--prune]
  vdbak prune [--dry-run]
  vdbak ship-catalog [--keep N] [--json]
      copy the catalog to the target (catalog/*.db.zst + manifest), keep the last N (default 7)
  vdbak recover --from-target PATH --repo NEWDIR [--json]
      rebuild a repository on a new machine from the target's newest verified catalog copy

${DAEMON_USAGE}
Disk images directly (no backup needed):
  vdbak inspect <disk> [--json]
      format, snapshot chain, virtual size, allocated bytes, volumes and filesystems
  vdbak dump <disk> [--volume N]
      write the virtual disk's bytes (or volume N's) to stdout
  vdbak ls <disk> [path] [-l] [-R] [--json] [--volume N]
  vdbak cat <disk> <path>[:stream] [--volume N]

<disk> is any disk image (VMDK of any subformat, snapshot deltas, qcow2, raw):
the format is recognised by content. ls and cat work on a disk when their
first argument is an existing file, on a backup otherwise.
`;

function need(args: string[], n: number, what: string): void {
  if (args.length < n) throw new UsageError(`missing ${what}`);
}

function volumeArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--volume takes a volume number (1, 2, …), not '${v}'`);
  return n;
}

function isFile(p: string | undefined): boolean {
  try {
    return !!p && existsSync(p) && statSync(p).isFile();
  } catch {
    return false;
  }
}

async function diskCommand(cmd: string, rest: string[]): Promise<number> {
  const { cmdCat, cmdDump, cmdInspect, cmdLs } = await import('./commands/disk.js');
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
    default:
      need(positionals, 2, '<disk> <path>');
      return cmdCat(positionals[0]!, positionals[1]!, { volume: volumeArg(values.volume) });
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(await usage());
    return cmd ? 0 : 2;
  }
  if (cmd === '--version' || cmd === 'version') {
    process.stdout.write(`${(await import('./version.js')).VERSION}\n`);
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(await usage());
    return 0;
  }
  const firstPositional = rest.find((a) => !a.startsWith('-'));
  switch (cmd) {
    case 'inspect':
    case 'dump':
      return diskCommand(cmd, rest);
    case 'ls':
    case 'cat':
      if (isFile(firstPositional)) return diskCommand(cmd, rest);
      return cmd === 'ls'
        ? (await import('./commands/browse.js')).cmdBackupLs(rest)
        : (await import('./commands/browse.js')).cmdBackupCat(rest);
    case 'init':
      return (await import('./commands/repo.js')).cmdInit(rest);
    case 'backup':
      return (await import('./commands/backup.js')).cmdBackup(rest);
    case 'backups':
      return (await import('./commands/repo.js')).cmdBackups(rest);
    case 'find':
      return (await import('./commands/browse.js')).cmdFind(rest);
    case 'versions':
      return (await import('./commands/browse.js')).cmdVersions(rest);
    case 'restore':
      return (await import('./commands/browse.js')).cmdRestore(rest);
    case 'restore-vm':
      return (await import('./commands/restore-vm.js')).cmdRestoreVm(rest);
    case 'group':
      return (await import('./commands/plans.js')).cmdGroup(rest);
    case 'plan':
      return (await import('./commands/plans.js')).cmdPlan(rest);
    case 'check':
      return (await import('./commands/maint.js')).cmdCheck(rest);
    case 'forget':
      return (await import('./commands/maint.js')).cmdForget(rest);
    case 'prune':
      return (await import('./commands/maint.js')).cmdPrune(rest);
    case 'ship-catalog':
      return (await import('./commands/ship.js')).cmdShipCatalog(rest);
    case 'recover':
      return (await import('./commands/ship.js')).cmdRecover(rest);
    case 'daemon':
      return (await import('./commands/daemon.js')).cmdDaemon(rest);
    case 'status':
      return (await import('./commands/daemon.js')).cmdStatus(rest);
    case 'jobs':
      return (await import('./commands/daemon.js')).cmdJobs(rest);
    case 'job':
      return (await import('./commands/daemon.js')).cmdJob(rest);
    case 'cancel':
      return (await import('./commands/daemon.js')).cmdCancel(rest);
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  async (e: unknown) => {
    if (
      e instanceof UsageError ||
      (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))
    ) {
      process.stderr.write(`vdbak: ${e.message}\n\n${await usage()}`);
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
