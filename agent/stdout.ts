/**
 * Writing to stdout with back-pressure, and stopping quietly when the reader
 * goes away (`vdbak dump disk | head -c 512` must not print an EPIPE trace).
 */
let closed = false;
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') closed = true;
  else throw e;
});

/** Writes `data`; resolves false once stdout is closed by the reader. */
export function writeOut(data: string | Uint8Array): Promise<boolean> {
  if (closed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const ok = process.stdout.write(data, (err) => {
      if (err) {
        closed = true;
        resolve(false);
      } else if (ok) resolve(true);
    });
    if (!ok) process.stdout.once('drain', () => resolve(!closed));
  });
}
