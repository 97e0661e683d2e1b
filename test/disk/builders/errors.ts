/** Asserts that `fn` throws our typed error with the code, layer, image and offset a test expects. */
import { expect } from 'vitest';
import { type ErrorKind, isVdbakError } from '../../../parsers/errors.js';

export function expectVmdkError(
  fn: () => unknown,
  want: { image: string; code: string; offset: number; kind?: ErrorKind },
): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!isVdbakError(caught)) throw new Error(`expected ${want.code}, got ${String(caught)}`);
  expect({
    code: caught.code,
    layer: caught.layer,
    image: caught.image,
    offset: caught.details.offset,
    ...(want.kind ? { kind: caught.kind } : {}),
  }).toEqual({
    code: want.code,
    layer: 'vmdk',
    image: want.image,
    offset: want.offset,
    ...(want.kind ? { kind: want.kind } : {}),
  });
  // the message names the file and the offset for a human too
  expect(caught.message).toContain(want.image);
  expect(caught.message).toContain(`offset ${want.offset}`);
}
