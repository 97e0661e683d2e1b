/**
 * The .vmx parser on configurations shaped like what VMware Workstation and
 * ESXi write (the device, UUID and escape conventions of VMware's own files
 * and libvirt's VMX reader), on the limits, and on mutated inputs: any
 * mutation either parses or throws one of our typed errors.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeDictionary,
  MAX_DICTIONARY_CHARS,
  MAX_DICTIONARY_LINES,
  parseDictionary,
  unescapeValue,
} from '../../agent/source/dictionary.js';
import { MAX_DEVICE_SLOTS, normaliseUuid, parseVmx } from '../../agent/source/vmx.js';
import { errorsFor, LimitError, UnsupportedError } from '../../parsers/errors.js';
import { catchTyped, expectTypedOrOk, mutate, newTally, prng } from '../helpers/fuzz.js';

const PATH = '/vmfs/volumes/datastore1/win01/win01.vmx';

/** A Windows Server VM as Workstation 17 / ESXi 8 write it, with the odd corners a real datastore has. */
export const WINDOWS_VMX = `.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "Windows Server |22Prod|22 |7C EU"
annotation = "Owner: ops|0AReplaced 2024-03"
guestOS = "windows2019srv-64"
uuid.bios = "56 4d 2f 3a 1c 9e 8b 7a-12 34 56 78 9a bc de f0"
uuid.location = "56 4d 2f 3a 1c 9e 8b 7a-12 34 56 78 9a bc de f1"
vc.uuid = "52 7e 4c 11 22 33 44 55-66 77 88 99 aa bb cc dd"
memSize = "8192"
numvcpus = "4"
firmware = "efi"
# the boot disk: after a snapshot the .vmx names the delta
scsi0.present = "TRUE"
scsi0.virtualDev = "lsisas1068"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "win01-000001.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
scsi0:1.present = "FALSE"
scsi0:1.fileName = "old-data.vmdk"
scsi0:2.present = "TRUE"
scsi0:2.fileName = "scratch.vmdk"
scsi0:2.mode = "independent-nonpersistent"
scsi1.present = "TRUE"
scsi1.virtualDev = "pvscsi"
scsi1:10.present = "TRUE"
scsi1:10.fileName = "/vmfs/volumes/datastore2/win01/logs.vmdk"
scsi1:2.present = "TRUE"
scsi1:2.fileName = "data.vmdk"
scsi2:0.present = "TRUE"
scsi2:0.fileName = "orphan.vmdk"
sata0.present = "TRUE"
sata0:1.present = "TRUE"
sata0:1.deviceType = "cdrom-image"
sata0:1.fileName = "/vmfs/volumes/isos/en_windows_server_2019.iso"
sata0:2.present = "TRUE"
sata0:2.deviceType = "atapi-cdrom"
sata0:2.fileName = "auto detect"
sata0:3.present = "TRUE"
sata0:3.fileName = "emptyBackingString"
nvme0.present = "TRUE"
nvme0:0.present = "TRUE"
nvme0:0.fileName = "win01_1.vmdk"
NVME0:1.PRESENT = "true"
nvme0:1.FileName = "Win01_2.vmdk"
ide0:0.present = "TRUE"
ide0:0.fileName = "legacy.vmdk"
ide1:0.present = "TRUE"
ide1:0.deviceType = "cdrom-raw"
ide1:0.fileName = "auto detect"
ethernet0.present = "TRUE"
ethernet0.virtualDev = "vmxnet3"
ethernet0.addressType = "generated"
ethernet0.generatedAddress = "00:0c:29:9a:bc:de"
floppy0.present = "FALSE"
tools.syncTime = "FALSE"
`;

describe('parseVmx on a Windows VM', () => {
  const cfg = parseVmx(WINDOWS_VMX, PATH);

  it('reads names, the guest OS and the UUIDs (normalised to 8-4-4-4-12)', () => {
    expect(cfg.displayName).toBe('Windows Server "Prod" | EU');
    expect(cfg.guestOS).toBe('windows2019srv-64');
    expect(cfg.uuidBios).toBe('564d2f3a-1c9e-8b7a-1234-56789abcdef0');
    expect(cfg.uuidLocation).toBe('564d2f3a-1c9e-8b7a-1234-56789abcdef1');
    expect(cfg.vcUuid).toBe('527e4c11-2233-4455-6677-8899aabbccdd');
    expect(cfg.entries.get('annotation')?.value).toBe('Owner: ops\nReplaced 2024-03');
  });

  it('keeps present disks in slot order (bus, then controller and unit numerically) with their mode', () => {
    expect(cfg.disks.map((d) => [d.slot, d.fileName, d.mode ?? null])).toEqual([
      ['scsi0:0', 'win01-000001.vmdk', null],
      ['scsi0:2', 'scratch.vmdk', 'independent-nonpersistent'],
      ['scsi1:2', 'data.vmdk', null],
      ['scsi1:10', '/vmfs/volumes/datastore2/win01/logs.vmdk', null],
      ['nvme0:0', 'win01_1.vmdk', null],
      ['nvme0:1', 'Win01_2.vmdk', null],
      ['ide0:0', 'legacy.vmdk', null],
    ]);
    expect(cfg.disks[0]?.deviceType).toBe('scsi-hardDisk');
  });

  it('skips absent devices, CD-ROMs and devices on an undeclared controller, and says why', () => {
    expect(Object.fromEntries(cfg.skipped.map((s) => [s.slot, s.reason]))).toEqual({
      'scsi0:1': 'not present',
      'scsi2:0': 'controller scsi2 not present',
      'sata0:1': 'CD-ROM',
      'sata0:2': 'CD-ROM',
      'sata0:3': 'CD-ROM',
      'ide1:0': 'CD-ROM',
    });
    expect(cfg.warnings.some((w) => w.includes('scsi2:0') && w.includes('controller scsi2'))).toBe(true);
  });

  it('treats a device without a present line as absent (VMware and libvirt do)', () => {
    const c = parseVmx('scsi0.present = "TRUE"\nscsi0:0.fileName = "a.vmdk"\n', PATH);
    expect(c.disks).toEqual([]);
    expect(c.skipped).toEqual([{ slot: 'scsi0:0', reason: 'not present' }]);
  });

  it('ignores a whole controller that is present = FALSE', () => {
    const c = parseVmx(
      'sata0.present = "FALSE"\nsata0:0.present = "TRUE"\nsata0:0.fileName = "a.vmdk"\nide0:1.present = "TRUE"\nide0:1.fileName = "b.vmdk"\n',
      PATH,
    );
    expect(c.disks.map((d) => d.slot)).toEqual(['ide0:1']);
    expect(c.skipped).toEqual([{ slot: 'sata0:0', reason: 'controller sata0 not present' }]);
  });

  it('a present disk without a file name is a warning, not a disk', () => {
    const c = parseVmx('scsi0.present = "TRUE"\nscsi0:3.present = "TRUE"\n', PATH);
    expect(c.disks).toEqual([]);
    expect(c.warnings.join('\n')).toContain('scsi0:3 is present but names no file');
  });
});

describe('dictionary syntax', () => {
  it('undoes |XX escapes, including escaped UTF-8 bytes, and leaves a lone | alone', () => {
    expect(unescapeValue('a|22b|22')).toBe('a"b"');
    expect(unescapeValue('caf|C3|A9 |7C x|zz|')).toBe('café | x|zz|');
    expect(unescapeValue('Büro')).toBe('Büro');
  });

  it('reads keys case-insensitively, unquoted values, comments and CRLF lines; the last repeat wins', () => {
    const d = parseDictionary(
      'DisplayName = "one"\r\n# comment = "no"\r\nmemsize = 4096 # MiB\r\n  displayname="two"  # trailing\r\nbroken line\r\n',
      errorsFor({ image: PATH, layer: 'file' }),
    );
    expect(d.entries.get('displayname')?.value).toBe('two');
    expect(d.entries.get('memsize')?.value).toBe('4096');
    expect(d.entries.has('# comment')).toBe(false);
    const w = d.warnings.done().join('\n');
    expect(w).toContain('repeated');
    expect(w).toContain('line 5: not a "key = value" line');
  });

  it('keeps a value with a missing closing quote and warns', () => {
    const c = parseVmx('displayName = "half\n', PATH);
    expect(c.displayName).toBe('half');
    expect(c.warnings.join('\n')).toContain('no closing quote');
  });

  it('decodes the character set the file names in .encoding', () => {
    const bytes = Buffer.concat([
      Buffer.from('.encoding = "windows-1252"\ndisplayName = "Caf'),
      Buffer.of(0xe9),
      Buffer.from('"\n'),
    ]);
    expect(parseVmx(decodeDictionary(bytes, PATH), PATH).displayName).toBe('Café');
    const bad = catchTyped(() => decodeDictionary(Buffer.from('.encoding = "klingon-1"\n'), PATH));
    expect(bad).toBeInstanceOf(UnsupportedError);
    expect(bad.code).toBe('VMX_ENCODING');
  });

  it('normalises UUIDs and refuses malformed or all-zero ones', () => {
    expect(normaliseUuid('42 1A 2B 3C 4D 5E 6F 70-81 92 A3 B4 C5 D6 E7 F8')).toBe(
      '421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8',
    );
    expect(normaliseUuid('421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8')).toBe('421a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8');
    expect(normaliseUuid('42 1a')).toBeUndefined();
    expect(normaliseUuid('00 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00')).toBeUndefined();
    const c = parseVmx('uuid.bios = "not a uuid"\n', PATH);
    expect(c.uuidBios).toBeUndefined();
    expect(c.warnings.join('\n')).toContain('uuid.bios');
  });
});

describe('limits', () => {
  it('refuses text over the size cap', () => {
    const e = catchTyped(() => parseVmx('#'.repeat(MAX_DICTIONARY_CHARS + 1), PATH));
    expect(e).toBeInstanceOf(LimitError);
    expect(e.code).toBe('VMX_TOO_LARGE');
    expect(e.image).toBe(PATH);
  });

  it('refuses too many lines', () => {
    const e = catchTyped(() => parseVmx('\n'.repeat(MAX_DICTIONARY_LINES + 1), PATH));
    expect(e.code).toBe('VMX_TOO_MANY_LINES');
  });

  it('refuses more device slots than any VM can have', () => {
    const lines: string[] = [];
    for (let i = 0; i <= MAX_DEVICE_SLOTS; i++) lines.push(`scsi${i % 100}:${Math.floor(i / 100)}.present = "TRUE"`);
    const e = catchTyped(() => parseVmx(lines.join('\n'), PATH));
    expect(e).toBeInstanceOf(LimitError);
    expect(e.code).toBe('VMX_TOO_MANY_DEVICES');
    expect(e.offset).toBeGreaterThan(0);
  });
});

describe('mutated configurations', () => {
  it('byte mutations of a real .vmx parse or throw typed errors', () => {
    const tally = newTally();
    for (const { index, bytes } of mutate(Buffer.from(WINDOWS_VMX), 3000, 7)) {
      expectTypedOrOk(tally, index, () => {
        const c = parseVmx(decodeDictionary(bytes, PATH), PATH);
        // whatever survives is well formed
        for (const d of c.disks) expect(d.fileName.length).toBeGreaterThan(0);
      });
    }
    expect(tally.ok + tally.typed).toBe(3000);
    expect(tally.ok).toBeGreaterThan(0);
  });

  it('syntax-level mutations (quotes, escapes, separators, long keys) parse or throw typed errors', () => {
    const rnd = prng(11);
    const tokens = [
      '"',
      '|',
      '|2',
      '|22',
      '=',
      '#',
      '\n',
      '\r',
      ':',
      '.',
      '0',
      '99',
      '\u0000',
      '\uFEFF',
      'present',
      ' ',
    ];
    const tally = newTally();
    for (let i = 0; i < 3000; i++) {
      let t = WINDOWS_VMX;
      const edits = 1 + Math.floor(rnd() * 10);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(rnd() * t.length);
        const op = rnd();
        const tok = tokens[Math.floor(rnd() * tokens.length)] ?? '';
        if (op < 0.5) t = t.slice(0, at) + tok + t.slice(at);
        else if (op < 0.8) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(rnd() * 20));
        else t = t.slice(0, at) + tok.repeat(1 + Math.floor(rnd() * 500)) + t.slice(at);
      }
      expectTypedOrOk(tally, i, () => parseVmx(t, PATH));
    }
    expect(tally.ok).toBeGreaterThan(0);
  });
});
