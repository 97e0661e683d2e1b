/** The JSON shapes of catalog rows that the CLI (--json) and the HTTP API both print. */
import type { BackupVolumeRow } from '../../catalog/catalog.js';
import type { VersionRow } from '../../catalog/records.js';
import { isoNs } from '../format.js';

export interface VersionJson {
  path: string;
  type: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** ISO-8601 with nine fraction digits: the catalog keeps nanoseconds, JSON numbers cannot. */
  mtime: string;
  linkTarget?: string;
  streams?: { name: string; size: number }[];
  meta?: Record<string, unknown>;
  firstBackup: number;
}

export function versionJson(v: VersionRow, path: string): VersionJson {
  return {
    path,
    type: v.type,
    size: v.size,
    mode: v.mode,
    uid: v.uid,
    gid: v.gid,
    mtime: isoNs(v.mtimeNs),
    ...(v.linkTarget !== undefined ? { linkTarget: v.linkTarget } : {}),
    ...(v.streams?.length ? { streams: v.streams.map((s) => ({ name: s.name, size: s.size })) } : {}),
    ...(v.meta && Object.keys(v.meta).length ? { meta: v.meta } : {}),
    firstBackup: v.firstBackup,
  };
}

/** A volume as an entry of a backup's root. */
export function volumeJson(v: BackupVolumeRow): Record<string, unknown> {
  return { path: `/${v.name}`, type: 'volume', ...v };
}
