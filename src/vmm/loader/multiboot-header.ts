/**
 * The Multiboot v1 header (Multiboot Specification 0.6.96 §3.1): magic 0x1BADB002, flags, and a
 * checksum such that the three add up to 0 (mod 2^32), 32-bit aligned within the image's first
 * 8192 bytes. Found as QEMU finds it (hw/i386/multiboot.c): the first aligned offset below
 * 8192 − 48 (room for the longest header) whose three words check out.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';

export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** EAX at the kernel's entry (§3.2). */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;

/** Header flags (§3.1.2). Bits 0-15 are requirements a loader must meet, bits 16-31 optional features. */
export const MultibootHeaderFlag = {
  /** Modules page-aligned: met (QEMU's module placement is page-aligned; we load none). */
  PageAlign: 1 << 0,
  /** mem_* fields in the information: met (always given). */
  MemoryInfo: 1 << 1,
  /** A video mode: QEMU warns ("multiboot knows VBE. we don't.") and boots without. */
  VideoMode: 1 << 2,
  /** The a.out kludge: the load addresses are in the header, not in an ELF. */
  AoutKludge: 1 << 16,
} as const;
const UNDERSTOOD_REQUIREMENTS = MultibootHeaderFlag.PageAlign | MultibootHeaderFlag.MemoryInfo;
const REQUIREMENT_BITS = 0xffff;

/** How far into the image the header may start (QEMU: `i < 8192 - 48`). */
export const MULTIBOOT_SEARCH_BYTES = 8192 - 48;
const MAGIC_FLAGS_CHECKSUM_BYTES = 12;
const AOUT_ADDRESS_FIELDS_END = 32;

/** The a.out kludge's address fields (header offsets 12-28). */
export interface MultibootLoadAddresses {
  readonly headerAddress: number;
  readonly loadAddress: number;
  /** 0: load to the end of the file. */
  readonly loadEndAddress: number;
  /** 0: no .bss. */
  readonly bssEndAddress: number;
  readonly entryAddress: number;
}

export interface MultibootHeader {
  /** The header's offset in the image. */
  readonly offset: number;
  readonly flags: number;
  /** Present when the a.out kludge flag is set. */
  readonly loadAddresses?: MultibootLoadAddresses;
}

/** The image's multiboot header, or undefined when it has none; ENOEXEC when the a.out fields are cut off. */
export function findMultibootHeader(image: Uint8Array, imageName: string): MultibootHeader | undefined {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const searchEnd = Math.min(MULTIBOOT_SEARCH_BYTES, image.length - MAGIC_FLAGS_CHECKSUM_BYTES + 1);
  for (let offset = 0; offset < searchEnd; offset += 4) {
    if (view.getUint32(offset, true) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = view.getUint32(offset + 4, true);
    if (((MULTIBOOT_HEADER_MAGIC + flags + view.getUint32(offset + 8, true)) | 0) !== 0) continue;
    if ((flags & MultibootHeaderFlag.AoutKludge) === 0) return { offset, flags };
    if (offset + AOUT_ADDRESS_FIELDS_END > image.length) {
      throw new IrqChipError(ErrorCode.ENOEXEC, `${imageName}: its multiboot header (offset 0x${offset.toString(16)}) asks for the a.out kludge but the file ends before the load addresses`);
    }
    const field = (index: number): number => view.getUint32(offset + 12 + index * 4, true);
    return { offset, flags, loadAddresses: { headerAddress: field(0), loadAddress: field(1), loadEndAddress: field(2), bssEndAddress: field(3), entryAddress: field(4) } };
  }
  return undefined;
}

/**
 * What the loader says about header flags it does not meet. QEMU boots such images all the same
 * (it only warns about the video mode), and so do we, saying which requirement went unmet.
 */
export function multibootFlagWarnings(flags: number): string[] {
  const warnings: string[] = [];
  if ((flags & MultibootHeaderFlag.VideoMode) !== 0) warnings.push('the multiboot header asks for a video mode (flag 2); this machine has no display, so the image starts without one, as under QEMU');
  const unknown = flags & REQUIREMENT_BITS & ~(UNDERSTOOD_REQUIREMENTS | MultibootHeaderFlag.VideoMode);
  if (unknown !== 0) warnings.push(`the multiboot header requires features this loader does not know (flags 0x${unknown.toString(16)}); it starts the image anyway, as QEMU does`);
  return warnings;
}
