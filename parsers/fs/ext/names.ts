/**
 * ext names are raw bytes (no encoding is enforced). We decode them as UTF-8;
 * bytes that are not part of a valid UTF-8 sequence become the lone
 * surrogates U+DC80..U+DCFF ("surrogateescape", as Python does), which valid
 * UTF-8 can never produce. The mapping is reversible: `encodeName` gives the
 * original bytes back, so a restore can recreate the exact name.
 */

const decoder = new TextDecoder('utf-8', { fatal: true });
const ESCAPE_BASE = 0xdc00;

export function decodeName(b: Uint8Array): string {
  try {
    return decoder.decode(b);
  } catch {
    return decodeEscaped(b);
  }
}

/** Length of the valid UTF-8 sequence at b[i], or 0 if it is not one. */
function seqLength(b: Uint8Array, i: number): number {
  const c = b[i] as number;
  const cont = (k: number) => {
    const x = b[i + k];
    return x !== undefined && (x & 0xc0) === 0x80;
  };
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  const c1 = b[i + 1] ?? 0;
  if (c >= 0xe0 && c <= 0xef) {
    if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 >= 0xa0)) return 0; // overlong, surrogate
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if ((c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 >= 0x90)) return 0; // overlong, > U+10FFFF
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

function decodeEscaped(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const n = seqLength(b, i);
    if (n === 0) {
      out += String.fromCharCode(ESCAPE_BASE + (b[i] as number));
      i++;
    } else {
      out += Buffer.from(b.subarray(i, i + n)).toString('utf8');
      i += n;
    }
  }
  return out;
}

/** The raw bytes of a name produced by `decodeName`. */
export function encodeName(s: string): Buffer {
  const parts: Buffer[] = [];
  let run = '';
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    const lone = u >= 0xdc80 && u <= 0xdcff && !(i > 0 && isHigh(s.charCodeAt(i - 1)));
    if (lone) {
      parts.push(Buffer.from(run, 'utf8'), Buffer.of(u - ESCAPE_BASE));
      run = '';
    } else {
      run += s[i];
    }
  }
  parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}

function isHigh(u: number): boolean {
  return u >= 0xd800 && u <= 0xdbff;
}
