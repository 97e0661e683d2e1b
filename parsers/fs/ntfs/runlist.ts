/**
 * Runlists (data runs / mapping pairs) of non-resident attributes.
 *
 * Spec: libyal libfsntfs "Data runs". Each run starts with a header byte: low
 * nibble = size of the cluster count, high nibble = size of the signed LCN
 * delta (0 = a sparse run). A 0 header ends the list. Decoded runs are checked
 * against the VCN range of the attribute and the clusters of the volume, and a
 * whole stream is checked for runs that overlap each other.
 */
import type { Errors } from '../../errors.js';

export interface Run {
  /** First virtual cluster of the run inside the stream. */
  vcn: number;
  /** First logical cluster in the volume, or null for a sparse run. */
  lcn: number | null;
  /** Length in clusters. */
  clusters: number;
}

export interface RunlistContext {
  err: Errors;
  /** Volume offset of the runlist bytes, for errors. */
  at: number;
  inode: number;
  totalClusters: number;
}

function readUnsigned(b: Buffer, off: number, size: number): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (b[off + i] ?? 0);
  return v;
}

function readSigned(b: Buffer, off: number, size: number): number {
  const v = readUnsigned(b, off, size);
  const top = (b[off + size - 1] ?? 0) & 0x80;
  return top ? v - 2 ** (8 * size) : v;
}

/**
 * Decodes the runlist of one attribute piece covering VCNs startVcn..lastVcn.
 * The runs must cover exactly that range.
 */
export function decodeRunlist(bytes: Buffer, startVcn: number, lastVcn: number, ctx: RunlistContext): Run[] {
  const { err, at, inode } = ctx;
  const runs: Run[] = [];
  let pos = 0;
  let vcn = startVcn;
  let lcn = 0;
  const want = lastVcn + 1;
  while (pos < bytes.length) {
    const h = bytes[pos] ?? 0;
    if (h === 0) break;
    const lenSize = h & 0x0f;
    const offSize = h >> 4;
    // 6 bytes of cluster count / delta already exceed any volume we accept
    if (lenSize === 0 || lenSize > 6 || offSize > 6 || pos + 1 + lenSize + offSize > bytes.length) {
      throw err.corrupt('NTFS_BAD_RUN_HEADER', `run header 0x${h.toString(16)}`, { offset: at + pos, inode });
    }
    const clusters = readUnsigned(bytes, pos + 1, lenSize);
    if (clusters === 0 || vcn + clusters > want) {
      throw err.corrupt('NTFS_RUN_PAST_VCN', `run of ${clusters} clusters at VCN ${vcn} passes last VCN ${lastVcn}`, {
        offset: at + pos,
        inode,
      });
    }
    let runLcn: number | null = null;
    if (offSize > 0) {
      lcn += readSigned(bytes, pos + 1 + lenSize, offSize);
      if (lcn < 0 || lcn + clusters > ctx.totalClusters) {
        throw err.corrupt(
          'NTFS_RUN_OUTSIDE_VOLUME',
          `run [${lcn}, +${clusters}) outside ${ctx.totalClusters} clusters`,
          {
            offset: at + pos,
            inode,
          },
        );
      }
      runLcn = lcn;
    }
    const last = runs[runs.length - 1];
    if (last && runLcn === null && last.lcn === null) last.clusters += clusters;
    else runs.push({ vcn, lcn: runLcn, clusters });
    vcn += clusters;
    pos += 1 + lenSize + offSize;
  }
  if (vcn !== want) {
    throw err.corrupt('NTFS_RUNLIST_SHORT', `runs cover VCN ${startVcn}..${vcn - 1}, attribute says ..${lastVcn}`, {
      offset: at,
      inode,
    });
  }
  return runs;
}

/** Rejects streams whose allocated runs overlap each other (a run pointing into itself). */
export function checkRunsDisjoint(runs: Run[], ctx: RunlistContext): void {
  const alloc = runs.filter((r) => r.lcn !== null).sort((a, b) => (a.lcn ?? 0) - (b.lcn ?? 0));
  for (let i = 1; i < alloc.length; i++) {
    const prev = alloc[i - 1]!;
    const cur = alloc[i]!;
    if ((cur.lcn ?? 0) < (prev.lcn ?? 0) + prev.clusters) {
      throw ctx.err.corrupt('NTFS_RUNS_OVERLAP', `runs at LCN ${prev.lcn} and ${cur.lcn} overlap`, {
        offset: ctx.at,
        inode: ctx.inode,
      });
    }
  }
}

/** Index of the run holding `vcn` (runs sorted, contiguous), or -1. */
export function findRun(runs: Run[], vcn: number): number {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (vcn < r.vcn) hi = mid - 1;
    else if (vcn >= r.vcn + r.clusters) lo = mid + 1;
    else return mid;
  }
  return -1;
}
