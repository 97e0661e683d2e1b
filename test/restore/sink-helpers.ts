/**
 * Restore items and content sources for the sink tests (dir-sink, tar-sink).
 */
import type { ContentSource, RestoreItem } from '../../agent/restore/sink.js';

/** ns: a time with every digit significant. */
export const T0 = 1_700_000_000_123_456_789n;

export function item(path: string, type: RestoreItem['type'], over: Partial<RestoreItem> = {}): RestoreItem {
  return {
    path,
    type,
    size: 0,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    mtimeNs: T0,
    atimeNs: T0,
    ...over,
  };
}

/** Content from a table: main stream under '', named streams under their name, split in 3-byte pieces. */
export function contentOf(streams: Record<string, string | Buffer>): ContentSource {
  return (stream?: string) =>
    (async function* () {
      const data = streams[stream ?? ''];
      if (data === undefined) throw new Error(`no stream ${stream}`);
      const buf = Buffer.from(data);
      for (let off = 0; off < buf.length; off += 3) yield buf.subarray(off, off + 3);
    })();
}
