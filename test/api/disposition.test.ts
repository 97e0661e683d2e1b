/**
 * Download names come from the guest (file names) or the VM's config (its
 * display name): the Content-Disposition header must stay one valid header
 * whatever they hold, and still carry the exact name for clients that read
 * RFC 5987's filename*.
 */
import { validateHeaderValue } from 'node:http';
import { describe, expect, it } from 'vitest';
import { contentDisposition } from '../../agent/api/routes/download.js';

const NAMES = [
  'report.docx',
  'résumé.txt',
  'a"b\\c.txt',
  'line\r\nSet-Cookie: x=1',
  'semi;colon,comma.txt',
  "it's (1)*!.txt",
  '..',
  '',
  '日本語のファイル.txt',
  '\u0000nul\u0007bell',
  'x'.repeat(1000),
  'emoji 😀.png',
];

describe('contentDisposition', () => {
  for (const name of NAMES) {
    it(`keeps ${JSON.stringify(name.slice(0, 40))} one safe header with the exact name in filename*`, () => {
      const h = contentDisposition(name);
      expect(() => validateHeaderValue('Content-Disposition', h)).not.toThrow();
      const m = /^attachment; filename="([A-Za-z0-9._ -]+)"; filename\*=UTF-8''([A-Za-z0-9%._~-]*)$/.exec(h);
      expect(m, h).not.toBeNull();
      expect(m![1]!.length).toBeLessThanOrEqual(220);
      expect(m![1]).not.toMatch(/^[._ ]*$/);
      const exact = decodeURIComponent(m![2]!);
      expect(exact).toBe([...name].slice(0, 200).join(''));
    });
  }
});
