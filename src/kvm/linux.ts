/**
 * The Linux (x86-64) constants and errno handling the KVM layer needs besides KVM's own
 * (kvm-abi.ts). Values are the kernel's / glibc's for x86-64.
 */

import { constants } from 'node:os';
import { ErrorCode, IrqChipError } from '../base/errors.ts';

/** open(2) flags. */
export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;

/** eventfd(2) flags. */
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

/** poll(2) and libuv readiness: readable. Both are 1. */
export const POLLIN = 1;
export const UV_READABLE = 1;

/**
 * The signal that kicks a vCPU thread out of KVM_RUN: SIGRTMIN + 4 (glibc's SIGRTMIN is 34; the
 * kernel's 32 and 33 belong to NPTL). Not SIGUSR1 (Node's inspector) nor SIGUSR2 (tools such as
 * nodemon). A `process.on()` listener for this signal would replace the addon's handler.
 */
export const KICK_SIGNAL = 38;

export const { EAGAIN, EINTR } = constants.errno;

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/**
 * A system call failed for a reason that is not one of the package's `ErrorCode`s (ENOMEM, EPERM,
 * EACCES, EIO, ENXIO, ...): the host could not do it. `code` is the errno's name, as in Node's own
 * system errors.
 */
export class KvmError extends Error {
  override readonly name = 'KvmError';

  constructor(
    readonly code: string,
    readonly errno: number,
    readonly operation: string,
  ) {
    super(`${code}: ${operation} failed`);
  }
}

const PACKAGE_CODES = new Set<string>(Object.values(ErrorCode));

/**
 * The error for a refused system call: an `IrqChipError` when the errno is one of the package's
 * codes (the request was refused: EINVAL, EBUSY, EEXIST, EBADF, ...), a `KvmError` otherwise.
 */
export function systemError(errno: number, operation: string): IrqChipError | KvmError {
  const code = errnoName(errno);
  return PACKAGE_CODES.has(code) ? new IrqChipError(code as ErrorCode, `${operation} failed`) : new KvmError(code, errno, operation);
}

/** Returns a non-negative system-call result; throws `systemError` for `-errno`. */
export function check(result: number, operation: string): number {
  if (result < 0) throw systemError(-result, operation);
  return result;
}
