/**
 * The Multiboot information structure (Multiboot Specification 0.6.96 §3.3), written as QEMU's
 * `-kernel` writes it (hw/i386/multiboot.c and its option ROM pc-bios/optionrom/multiboot.S):
 *
 *   flags            MEMORY | BOOTDEV | CMDLINE | MODS | MMAP | BOOT_LOADER_NAME (0x24f)
 *   mem_lower/upper  from the memory map (pc-memory-map.ts)
 *   boot_device      0x8000ffff: BIOS drive 0x80, no partition (QEMU's fixed value)
 *   cmdline          the command line, NUL-terminated
 *   mods_count/addr  0 modules, at the strings (where QEMU's empty module array sits)
 *   mmap_length/addr the E820 map, 24-byte entries each starting with its size (20)
 *   boot_loader_name "qemu", right after the command line
 *
 * Everything else (symbols, drives, config table, APM, VBE) is 0. Where the pieces go is the
 * caller's choice (`MultibootInfoPlacement`): multiboot kernels get QEMU's addresses, our 64-bit
 * guests the VMM's boot page.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { LOWER_MEMORY_KIB, upperMemoryKib, type MemoryMapEntry } from './pc-memory-map.ts';

/** The structure's size as QEMU writes it: up to and including the VBE fields. */
export const MULTIBOOT_INFO_BYTES = 88;
/** One map entry: the 4-byte size field, then base (u64), length (u64), type (u32). */
export const MEMORY_MAP_ENTRY_BYTES = 24;
const MEMORY_MAP_ENTRY_SIZE_FIELD = MEMORY_MAP_ENTRY_BYTES - 4;
export const BOOT_LOADER_NAME = 'qemu';

/** multiboot_info.flags (§3.3). */
export const MultibootInfoFlag = {
  Memory: 1 << 0,
  BootDevice: 1 << 1,
  CommandLine: 1 << 2,
  Modules: 1 << 3,
  MemoryMap: 1 << 6,
  BootLoaderName: 1 << 9,
} as const;
const INFO_FLAGS = MultibootInfoFlag.Memory | MultibootInfoFlag.BootDevice | MultibootInfoFlag.CommandLine | MultibootInfoFlag.Modules | MultibootInfoFlag.MemoryMap | MultibootInfoFlag.BootLoaderName;
const BOOT_DEVICE_FIRST_DISK = 0x8000ffff;

/** Field offsets (§3.3). */
const Field = {
  Flags: 0,
  MemLower: 4,
  MemUpper: 8,
  BootDevice: 12,
  CommandLine: 16,
  ModulesCount: 20,
  ModulesAddress: 24,
  MemoryMapLength: 44,
  MemoryMapAddress: 48,
  BootLoaderName: 64,
} as const;

export interface MultibootInfoPlacement {
  /** EBX at entry. */
  readonly informationAddress: number;
  readonly memoryMapAddress: number;
  /** The command line, then the boot loader name, go from here... */
  readonly stringsAddress: number;
  /** ...and must end by here (exclusive). */
  readonly stringsEnd: number;
}

export interface WrittenMultibootInfo {
  readonly informationAddress: number;
  readonly commandLineAddress: number;
  readonly bootLoaderNameAddress: number;
  /** Just past the boot loader name's NUL. */
  readonly stringsEnd: number;
}

const encoder = new TextEncoder();

/** The bytes `writeMultibootInfo` writes at `stringsAddress` for `commandLine`: it and the boot loader name, each with its NUL. */
export function multibootStringsBytes(commandLine: string): number {
  return encoder.encode(commandLine).length + 1 + BOOT_LOADER_NAME.length + 1;
}

/** Writes the structure, the memory map and the strings at `placement`. */
export function writeMultibootInfo(memory: Uint8Array, placement: MultibootInfoPlacement, commandLine: string, memoryMap: readonly MemoryMapEntry[]): WrittenMultibootInfo {
  if (commandLine.includes('\0')) throw new IrqChipError(ErrorCode.EINVAL, 'the command line contains a NUL character, which would end it early');
  const commandLineBytes = encoder.encode(commandLine);
  const bootLoaderNameAddress = placement.stringsAddress + commandLineBytes.length + 1;
  const stringsEnd = bootLoaderNameAddress + BOOT_LOADER_NAME.length + 1;
  if (stringsEnd > placement.stringsEnd || stringsEnd > memory.length) {
    throw new IrqChipError(ErrorCode.ENOSPC, `the command line (${commandLineBytes.length} bytes) and boot loader name do not fit in the ${Math.min(placement.stringsEnd, memory.length) - placement.stringsAddress} bytes at 0x${placement.stringsAddress.toString(16)}`);
  }
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  memory.set(commandLineBytes, placement.stringsAddress);
  memory[bootLoaderNameAddress - 1] = 0;
  memory.set(encoder.encode(BOOT_LOADER_NAME), bootLoaderNameAddress);
  memory[stringsEnd - 1] = 0;

  memoryMap.forEach((entry, index) => {
    const at = placement.memoryMapAddress + index * MEMORY_MAP_ENTRY_BYTES;
    view.setUint32(at, MEMORY_MAP_ENTRY_SIZE_FIELD, true);
    view.setBigUint64(at + 4, BigInt(entry.base), true);
    view.setBigUint64(at + 12, BigInt(entry.length), true);
    view.setUint32(at + 20, entry.type, true);
  });

  const info = placement.informationAddress;
  memory.fill(0, info, info + MULTIBOOT_INFO_BYTES);
  view.setUint32(info + Field.Flags, INFO_FLAGS, true);
  view.setUint32(info + Field.MemLower, LOWER_MEMORY_KIB, true);
  view.setUint32(info + Field.MemUpper, upperMemoryKib(memoryMap), true);
  view.setUint32(info + Field.BootDevice, BOOT_DEVICE_FIRST_DISK, true);
  view.setUint32(info + Field.CommandLine, placement.stringsAddress, true);
  view.setUint32(info + Field.ModulesCount, 0, true);
  view.setUint32(info + Field.ModulesAddress, placement.stringsAddress, true);
  view.setUint32(info + Field.MemoryMapLength, memoryMap.length * MEMORY_MAP_ENTRY_BYTES, true);
  view.setUint32(info + Field.MemoryMapAddress, placement.memoryMapAddress, true);
  view.setUint32(info + Field.BootLoaderName, bootLoaderNameAddress, true);
  return { informationAddress: info, commandLineAddress: placement.stringsAddress, bootLoaderNameAddress, stringsEnd };
}
