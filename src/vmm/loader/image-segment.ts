/**
 * Placing an image's pieces in guest RAM: every piece is checked against RAM and against the
 * ranges the VMM writes itself before any byte is copied (the loaders check everything, then
 * write), so a refused image changes nothing.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';

/** A piece of an image: `bytes` at guest-physical `address`, then zeros up to `memoryBytes`. */
export interface ImageSegment {
  readonly address: number;
  readonly bytes: Uint8Array;
  /** At least `bytes.length`: the rest (an ELF segment's .bss part) is zeroed. */
  readonly memoryBytes: number;
}

/** Guest-physical [start, end) that images must not load into, and why (for the message). */
export interface ReservedRange {
  readonly start: number;
  readonly end: number;
  readonly what: string;
}

/** The guest-physical [start, end) an image occupies (its lowest and highest loaded byte). */
export interface ImageExtent {
  readonly start: number;
  readonly end: number;
}

export function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

/** Whether [start, end) overlaps `range`. */
export function overlaps(start: number, end: number, range: { readonly start: number; readonly end: number }): boolean {
  return start < range.end && range.start < end;
}

/** The extent of `segments` (at least one). */
export function imageExtent(segments: readonly ImageSegment[]): ImageExtent {
  const start = Math.min(...segments.map((segment) => segment.address));
  const end = Math.max(...segments.map((segment) => segment.address + segment.memoryBytes));
  return { start, end };
}

/**
 * Checks that `segments` lie in RAM, miss every reserved range and each other. Past the end of
 * RAM is ENOSPC (the machine needs more memory), a reserved range EINVAL, two segments on the
 * same bytes ENOEXEC (no loader can honour such an image).
 */
export function checkSegments(memory: Uint8Array, segments: readonly ImageSegment[], reserved: readonly ReservedRange[], imageName: string): void {
  const sorted = [...segments].sort((a, b) => a.address - b.address);
  sorted.forEach((segment, index) => {
    const end = segment.address + segment.memoryBytes;
    if (end > memory.length) {
      throw new IrqChipError(ErrorCode.ENOSPC, `${imageName} loads ${hex(segment.address)}-${hex(end - 1)}, past the end of RAM (${memory.length >> 20} MiB at ${hex(memory.length)}): give the machine more memory`);
    }
    const clash = reserved.find((range) => overlaps(segment.address, end, range));
    if (clash !== undefined) {
      throw new IrqChipError(ErrorCode.EINVAL, `${imageName} loads ${hex(segment.address)}-${hex(end - 1)}, over ${clash.what} (${hex(clash.start)}-${hex(clash.end - 1)})`);
    }
    const next = sorted[index + 1];
    if (next !== undefined && next.address < end) {
      throw new IrqChipError(ErrorCode.ENOEXEC, `${imageName} has two loadable pieces on the same memory: ${hex(segment.address)}-${hex(end - 1)} and one at ${hex(next.address)}`);
    }
  });
}

/** Copies checked segments (`checkSegments`) into guest RAM, zeroing each one's tail. */
export function copySegments(memory: Uint8Array, segments: readonly ImageSegment[]): void {
  for (const segment of segments) {
    memory.set(segment.bytes, segment.address);
    memory.fill(0, segment.address + segment.bytes.length, segment.address + segment.memoryBytes);
  }
}

/** ENOEXEC unless `entry` is in one of `segments`: starting outside the image can only crash. */
export function checkEntryInImage(entry: number, segments: readonly ImageSegment[], imageName: string): void {
  if (segments.some((segment) => entry >= segment.address && entry < segment.address + segment.memoryBytes)) return;
  throw new IrqChipError(ErrorCode.ENOEXEC, `${imageName}: its entry point ${hex(entry)} is outside what it loads (${segments.map((segment) => `${hex(segment.address)}-${hex(segment.address + segment.memoryBytes - 1)}`).join(', ')})`);
}
