/**
 * Our own 64-bit guests: an x86-64 ELF (PT_LOAD segments at p_paddr, entry e_entry) or a flat
 * image (loaded at 1 MiB, entered at its first byte). The VMM writes its GDT and identity-mapped
 * page tables (src/kvm/long-mode.ts) and starts the guest in 64-bit mode with the multiboot
 * handshake a multiboot kernel gets (RAX = 0x2BADB002, RBX = the information, written by the same
 * writer), so one guest runtime reads its command line the same way however it was started.
 *
 * The information goes in the VMM's boot page, right after the page tables, rather than after the
 * image as for multiboot kernels: a flat image's .bss and stack follow it with nothing to say
 * how far. The VMM's low area (tables and boot page, 0-0x8000) is reserved in the memory map:
 *
 *   0x7000  the information structure
 *   0x7100  the E820 map
 *   0x7200  the command line, then the boot loader name, up to 0x8000
 */

import { GUEST_IMAGE_ADDRESS, LONG_MODE_TABLES_END, writeLongModeTables } from '../../kvm/long-mode.ts';
import type { ElfImage } from './elf-image.ts';
import { checkEntryInImage, checkSegments, copySegments, imageExtent, type ImageSegment, type ReservedRange } from './image-segment.ts';
import type { LoadedImage } from './loaded-image.ts';
import { writeMultibootInfo, type MultibootInfoPlacement } from './multiboot-info.ts';
import { BIOS_AREA, EBDA_START, pcMemoryMap } from './pc-memory-map.ts';

const BOOT_PAGE = LONG_MODE_TABLES_END;
const BOOT_PAGE_BYTES = 0x1000;
/** The end of the VMM's low area: tables and boot page. */
export const LONG_MODE_LOW_AREA_END = BOOT_PAGE + BOOT_PAGE_BYTES;
export const LONG_MODE_BOOT_INFO: MultibootInfoPlacement = {
  informationAddress: BOOT_PAGE,
  memoryMapAddress: BOOT_PAGE + 0x100,
  stringsAddress: BOOT_PAGE + 0x200,
  stringsEnd: LONG_MODE_LOW_AREA_END,
};

const RESERVED: readonly ReservedRange[] = [
  { start: 0, end: LONG_MODE_LOW_AREA_END, what: "the VMM's GDT, page tables and boot information" },
  { start: EBDA_START, end: BIOS_AREA.end, what: "a PC's EBDA, video memory and BIOS area" },
];

/** What a 64-bit guest loads, and where it starts. */
interface LongModeGuest {
  readonly segments: readonly ImageSegment[];
  readonly entry: number;
  readonly format: 'elf64' | 'flat';
  readonly description: string;
}

export function longModeGuestFromElf(elf: ElfImage): LongModeGuest {
  return { segments: elf.segments, entry: elf.entry, format: 'elf64', description: '64-bit guest (ELF64 x86-64)' };
}

export function longModeGuestFromFlat(image: Uint8Array): LongModeGuest {
  return { segments: [{ address: GUEST_IMAGE_ADDRESS, bytes: image, memoryBytes: image.length }], entry: GUEST_IMAGE_ADDRESS, format: 'flat', description: '64-bit guest (flat image at 1 MiB)' };
}

/** Loads `guest`, the VMM's tables and the information for `commandLine`; returns how to start it. */
export function loadLongModeGuest(memory: Uint8Array, guest: LongModeGuest, commandLine: string, imageName: string): LoadedImage {
  checkEntryInImage(guest.entry, guest.segments, imageName);
  checkSegments(memory, guest.segments, RESERVED, imageName);
  const information = writeMultibootInfo(memory, LONG_MODE_BOOT_INFO, commandLine, pcMemoryMap(memory.length, LONG_MODE_LOW_AREA_END));
  copySegments(memory, guest.segments);
  writeLongModeTables(memory);
  return {
    format: guest.format,
    description: guest.description,
    extent: imageExtent(guest.segments),
    entry: guest.entry,
    bootInformation: information,
    boot: { mode: 'long', entry: guest.entry, bootInformation: information.informationAddress },
    warnings: [],
  };
}
