/**
 * Multiboot v1 kernels, loaded and started exactly as QEMU's `-kernel` does (hw/i386/multiboot.c
 * and its option ROM pc-bios/optionrom/multiboot.S):
 *
 * - an ELF kernel: its PT_LOAD segments at their physical addresses; the kernel spans the lowest
 *   to the highest loaded byte;
 * - an a.out-kludge kernel (header flag 16): the file from offset (header offset − (header_addr −
 *   load_addr)) copied to load_addr, up to load_end_addr (0: the end of the file), then zeros up
 *   to bss_end_addr (0: none); entry at entry_addr. QEMU's consistency checks are ours, refused
 *   with ENOEXEC where QEMU exits with an error;
 * - the memory map at 0x9000 and the information structure at 0x9500 (QEMU's
 *   MULTIBOOT_STRUCT_ADDR and the structure 0x500 above it);
 * - the command line, then the boot loader name, at the kernel's load address plus its size
 *   rounded up to a page;
 * - the bootstrap processor in 32-bit protected mode at the entry (protected-mode.ts).
 *
 * Beyond QEMU, an image is refused when it would land outside RAM, on the information, or in the
 * EBDA, video and BIOS area of a PC (where QEMU's memory is not RAM), or when its entry point is
 * outside it.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import type { ElfImage } from './elf-image.ts';
import { checkEntryInImage, checkSegments, copySegments, hex, imageExtent, overlaps, type ImageSegment, type ReservedRange } from './image-segment.ts';
import type { LoadedImage } from './loaded-image.ts';
import { multibootFlagWarnings, type MultibootHeader, type MultibootLoadAddresses } from './multiboot-header.ts';
import { MULTIBOOT_INFO_BYTES, multibootStringsBytes, writeMultibootInfo } from './multiboot-info.ts';
import { BIOS_AREA, EBDA_START, pcMemoryMap } from './pc-memory-map.ts';
import { writeProtectedModeGdt } from './protected-mode.ts';

/** Where QEMU puts the E820 map and, 0x500 above (room for 53 entries; a PC map has 7), the information structure. */
export const MULTIBOOT_MEMORY_MAP_ADDRESS = 0x9000;
export const MULTIBOOT_INFO_ADDRESS = 0x9500;
const PAGE_BYTES = 4096;
const MAX_ADDRESS = 0xffffffff;

/** What the multiboot path loads: the pieces, and the span QEMU's buffer covers. */
export interface MultibootKernel {
  readonly segments: readonly ImageSegment[];
  /** QEMU's mh_load_addr: where the kernel's buffer starts. */
  readonly loadAddress: number;
  /** QEMU's mb_kernel_size: the buffer's bytes before the strings' page. */
  readonly kernelBytes: number;
  readonly entry: number;
  readonly description: string;
}

export function multibootKernelFromElf(elf: ElfImage): MultibootKernel {
  const extent = imageExtent(elf.segments);
  return { segments: elf.segments, loadAddress: extent.start, kernelBytes: extent.end - extent.start, entry: elf.entry, description: 'multiboot kernel (ELF32)' };
}

/** The a.out kludge's kernel, with QEMU's checks of the header's addresses. */
export function multibootKernelFromAout(image: Uint8Array, header: MultibootHeader, addresses: MultibootLoadAddresses, imageName: string): MultibootKernel {
  const refuse = (why: string): never => {
    throw new IrqChipError(ErrorCode.ENOEXEC, `${imageName}: its multiboot header's ${why}`);
  };
  const { headerAddress, loadAddress, loadEndAddress, bssEndAddress, entryAddress } = addresses;
  if (headerAddress < loadAddress) refuse(`header_addr ${hex(headerAddress)} is below its load_addr ${hex(loadAddress)}`);
  if (headerAddress - loadAddress > header.offset) refuse(`header_addr ${hex(headerAddress)} puts the file's start before its first byte (the header is at offset ${hex(header.offset)})`);
  const textOffset = header.offset - (headerAddress - loadAddress);
  if (loadEndAddress !== 0 && loadEndAddress < loadAddress) refuse(`load_end_addr ${hex(loadEndAddress)} is below its load_addr ${hex(loadAddress)}`);
  const loadBytes = loadEndAddress === 0 ? image.length - textOffset : loadEndAddress - loadAddress;
  if (loadBytes > MAX_ADDRESS - loadAddress) refuse(`load_addr ${hex(loadAddress)} and ${hex(loadBytes)} bytes run past 4 GiB`);
  if (bssEndAddress !== 0 && bssEndAddress < loadAddress + loadBytes) refuse(`bss_end_addr ${hex(bssEndAddress)} is below the end of what it loads (${hex(loadAddress + loadBytes)})`);
  if (textOffset + loadBytes > image.length) refuse(`load_end_addr asks for ${hex(loadBytes)} bytes from file offset ${hex(textOffset)}, but the file has ${hex(image.length)} bytes`);
  const kernelBytes = bssEndAddress === 0 ? loadBytes : bssEndAddress - loadAddress;
  if (kernelBytes === 0) refuse('addresses load nothing');
  const segments = [{ address: loadAddress, bytes: image.subarray(textOffset, textOffset + loadBytes), memoryBytes: kernelBytes }];
  return { segments, loadAddress, kernelBytes, entry: entryAddress, description: 'multiboot kernel (a.out kludge)' };
}

/**
 * Loads `kernel` and writes its information for `commandLine` (already "<file> <arguments>", as
 * QEMU composes it); returns how to start it.
 */
export function loadMultibootKernel(memory: Uint8Array, kernel: MultibootKernel, header: MultibootHeader, commandLine: string, imageName: string): LoadedImage {
  const informationEnd = MULTIBOOT_INFO_ADDRESS + MULTIBOOT_INFO_BYTES;
  const reserved: ReservedRange[] = [
    { start: MULTIBOOT_MEMORY_MAP_ADDRESS, end: informationEnd, what: 'the multiboot information (where QEMU puts it)' },
    { start: EBDA_START, end: BIOS_AREA.end, what: "a PC's EBDA, video memory and BIOS area (the boot GDT is there)" },
  ];
  checkEntryInImage(kernel.entry, kernel.segments, imageName);
  checkSegments(memory, kernel.segments, reserved, imageName);
  const stringsAddress = kernel.loadAddress + Math.ceil(kernel.kernelBytes / PAGE_BYTES) * PAGE_BYTES;
  const stringsEnd = stringsAddress + multibootStringsBytes(commandLine);
  const clash = reserved.find((range) => overlaps(stringsAddress, stringsEnd, range));
  if (clash !== undefined) throw new IrqChipError(ErrorCode.EINVAL, `${imageName}: the command line would go right after it (${hex(stringsAddress)}-${hex(stringsEnd - 1)}), as QEMU places it, over ${clash.what}`);
  const information = writeMultibootInfo(memory, { informationAddress: MULTIBOOT_INFO_ADDRESS, memoryMapAddress: MULTIBOOT_MEMORY_MAP_ADDRESS, stringsAddress, stringsEnd: memory.length }, commandLine, pcMemoryMap(memory.length));
  copySegments(memory, kernel.segments);
  writeProtectedModeGdt(memory);
  return {
    format: 'multiboot',
    description: kernel.description,
    extent: imageExtent(kernel.segments),
    entry: kernel.entry,
    bootInformation: information,
    boot: { mode: 'protected', entry: kernel.entry, bootInformation: information.informationAddress },
    warnings: multibootFlagWarnings(header.flags),
  };
}
