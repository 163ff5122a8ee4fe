/**
 * Byte lanes of guest register accesses, for the PCI capability models (`MsixCapability`,
 * `MsiCapability`): a guest reads or writes 1, 2 or 4 bytes of a DWORD register
 * (configuration space, PCI Local Bus 3.0 §6.1), or whole DWORDs and QWORDs of an MSI-X table
 * (§6.8.2). Little-endian, as PCI is.
 */

import { allOnes } from '../base/integers.ts';

export const DWORD_BYTES = 4;
export const QWORD_BYTES = 8;
const BITS_PER_BYTE = 8;
const CONFIG_ACCESS_SIZES = [1, 2, DWORD_BYTES] as const;

/** An access of `size` bytes at `offset`: one of `sizes`, naturally aligned, inside `bytes`. */
export function isNaturalAccess(offset: number, size: number, sizes: readonly number[], bytes: number): boolean {
  return sizes.includes(size) && Number.isInteger(offset) && offset >= 0 && offset % size === 0 && offset + size <= bytes;
}

/** A configuration-space access: 1, 2 or 4 bytes, naturally aligned, inside a structure of `bytes` (PCI 3.0 §6.1). */
export function isConfigAccess(offset: number, size: number, bytes: number): boolean {
  return isNaturalAccess(offset, size, CONFIG_ACCESS_SIZES, bytes);
}

/** The bits of its DWORD an access of `size` (1, 2 or 4) at `offset` covers. */
function laneMask(offset: number, size: number): number {
  return (allOnes(size) << ((offset & 3) * BITS_PER_BYTE)) >>> 0;
}

/** What an access of `size` at `offset` reads of the DWORD `register`. */
export function readLanes(register: number, offset: number, size: number): number {
  return ((register & laneMask(offset, size)) >>> ((offset & 3) * BITS_PER_BYTE)) >>> 0;
}

/** `register` after an access of `size` at `offset` wrote `value` (the other lanes kept). */
export function writeLanes(register: number, offset: number, size: number, value: number): number {
  const lanes = laneMask(offset, size);
  return ((register & ~lanes) | ((value << ((offset & 3) * BITS_PER_BYTE)) & lanes)) >>> 0;
}

export function loadLe32(data: Uint8Array, at: number): number {
  return ((data[at] ?? 0) | ((data[at + 1] ?? 0) << 8) | ((data[at + 2] ?? 0) << 16) | ((data[at + 3] ?? 0) << 24)) >>> 0;
}

export function storeLe32(data: Uint8Array, at: number, value: number): void {
  data[at] = value & 0xff;
  data[at + 1] = (value >>> 8) & 0xff;
  data[at + 2] = (value >>> 16) & 0xff;
  data[at + 3] = (value >>> 24) & 0xff;
}
