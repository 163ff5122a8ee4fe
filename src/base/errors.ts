/**
 * The package's one error type.
 *
 * Two kinds of bad input get two answers (docs/architecture.md, decision 5): what a guest writes
 * never throws (it gets the hardware's behaviour and a counter); what a caller does wrong throws an
 * `IrqChipError` whose `code` names the errno the Linux interface would have returned, and changes
 * nothing.
 */

/** errno-like codes used across the package. */
export const ErrorCode = {
  /** Invalid argument: out of range, wrong kind, malformed buffer. */
  EINVAL: 'EINVAL',
  /** No such entry: an unregistered index, an unknown GSI or vCPU. */
  ENOENT: 'ENOENT',
  /** Already exists: a second registration of something unique. */
  EEXIST: 'EEXIST',
  /** No space left: an allocator or budget is spent. */
  ENOSPC: 'ENOSPC',
  /** Try again: the operation would block or overflow (eventfd counter full). */
  EAGAIN: 'EAGAIN',
  /** Not supported by this object (the ioctl is not for this kind of file). */
  ENOTTY: 'ENOTTY',
  /** Busy: the resource is in use in a way that forbids the operation. */
  EBUSY: 'EBUSY',
  /** Bad file descriptor: an fd in a request names no open event (VFIO eventfd arrays). */
  EBADF: 'EBADF',
  /** Result out of range: a request whose range the interface cannot satisfy (VFIO enable with count 0). */
  ERANGE: 'ERANGE',
  /** Bad address: a buffer shorter than the data it claims to carry. */
  EFAULT: 'EFAULT',
  /** No such device: the hardware behind the request is absent (an INTx pin with no host IRQ). */
  ENODEV: 'ENODEV',
  /** Exec format error: an image that is not in a format the VMM loads, or is malformed. */
  ENOEXEC: 'ENOEXEC',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class IrqChipError extends Error {
  override readonly name = 'IrqChipError';

  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/**
 * Throws `IrqChipError(code, message)` unless `condition` holds. Pass the message as a function
 * on hot paths: a template string is formatted on every call, even when the check passes.
 */
export function check(condition: boolean, code: ErrorCode, message: string | (() => string)): asserts condition {
  if (!condition) throw new IrqChipError(code, typeof message === 'string' ? message : message());
}

/** Validates that `value` is an integer in [min, max]; throws EINVAL naming `what` otherwise. */
export function checkRange(value: number, min: number, max: number, what: string): void {
  if (Number.isInteger(value) && value >= min && value <= max) return;
  throw new IrqChipError(ErrorCode.EINVAL, `${what} must be an integer in [${min}, ${max}], got ${String(value)}`);
}
