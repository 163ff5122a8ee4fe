/**
 * Test support: recognising the errors the API throws at a caller (docs/architecture.md,
 * decision 5). Not part of the package's API.
 */
import assert from 'node:assert/strict';
import { IrqChipError } from '../base/errors.ts';

/** An `assert.throws` matcher for an `IrqChipError` with `code`. */
export function rejectsWith(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof IrqChipError && error.code === code;
}

/** Asserts that `action` throws `IrqChipError(code)`. */
export function assertIrqChipError(action: () => unknown, code: string): void {
  assert.throws(action, rejectsWith(code));
}
