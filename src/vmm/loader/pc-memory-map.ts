/**
 * The memory a multiboot kernel is told about: the E820 map and the mem_lower/mem_upper fields
 * that QEMU's `-kernel` gives a PC (its default `pc` machine, TCG, SeaBIOS), for our RAM size.
 *
 * Under QEMU the multiboot option ROM (pc-bios/optionrom/multiboot.S) asks the BIOS: INT 12h for
 * mem_lower, INT 15h E820 for the map, and computes mem_upper from that map. Our machine has no
 * BIOS, so the VMM writes what SeaBIOS answers for QEMU's RAM layout:
 *
 *   0          .. 0x9fc00     RAM: conventional memory below SeaBIOS's 1 KiB EBDA
 *   0x9fc00    .. 0xa0000     reserved: the EBDA
 *   0xf0000    .. 0x100000    reserved: the BIOS's F segment
 *   0x100000   .. RAM − 128 KiB  RAM
 *   RAM − 128 KiB .. RAM      reserved: SeaBIOS's tables at the top of RAM (ACPI, SMBIOS; 128 KiB
 *                             is what it keeps for a `pc` machine: "0x7fe0000" with 128 MiB)
 *   0xfffc0000 .. 4 GiB       reserved: the BIOS ROM (256 KiB)
 *   0xfd00000000 .. 1 TiB     reserved: the AMD HyperTransport hole QEMU ≥ 7.1 reserves for its
 *                             default CPU (qemu64, AMD vendor, 40 physical address bits; hw/i386/pc.c)
 *
 * 0xa0000-0xf0000 (video memory, option ROMs) is in no entry. QEMU with `-accel kvm` also lists
 * 0xfeffc000-0xfeffffff (its KVM identity-map and TSS pages); this map is the default (TCG) one,
 * and the KVM TSS pages this VMM sets (kvm-vm.ts, 0xfffbd000) lie outside RAM and the PCI window.
 *
 * Our own 64-bit guests are started by the VMM on page tables it keeps in low memory, so their
 * map reserves that area (`vmmLowBytes`) instead of calling it RAM.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../machine-layout.ts';

/** E820 types (ACPI 6.5 §15, "Address Range Types"). */
export const E820Type = { Ram: 1, Reserved: 2 } as const;

export interface MemoryMapEntry {
  readonly base: number;
  readonly length: number;
  readonly type: number;
}

const KIB = 1024;
const MIB = 1 << 20;
/** Where SeaBIOS puts its extended BIOS data area: the last KiB below 640 KiB. */
export const EBDA_START = 0x9fc00;
const LOW_MEMORY_END = 0xa0000;
export const BIOS_AREA = { start: 0xf0000, end: 0x100000 } as const;
const SEABIOS_HIGH_TABLES_BYTES = 128 * KIB;
const BIOS_ROM = { base: 0xfffc0000, length: 0x40000 } as const;
const AMD_HYPERTRANSPORT_HOLE = { base: 0xfd_0000_0000, length: 0x3_0000_0000 } as const;
const FOUR_GIB = 2 ** 32;

/** mem_lower: INT 12h's conventional memory, in KiB (SeaBIOS: below its EBDA). */
export const LOWER_MEMORY_KIB = EBDA_START / KIB;

/**
 * The map for `ramBytes` of RAM from guest-physical 0. `vmmLowBytes` > 0 reserves
 * [0, vmmLowBytes) for the VMM's own tables (our 64-bit guests); 0 gives QEMU's map exactly.
 */
export function pcMemoryMap(ramBytes: number, vmmLowBytes = 0): MemoryMapEntry[] {
  if (!Number.isInteger(ramBytes) || ramBytes < MIN_MEMORY_MIB * MIB || ramBytes > MAX_MEMORY_MIB * MIB || ramBytes % (4 * KIB) !== 0) {
    throw new IrqChipError(ErrorCode.EINVAL, `a PC memory map needs whole pages of RAM between ${MIN_MEMORY_MIB} and ${MAX_MEMORY_MIB} MiB, got ${ramBytes} bytes`);
  }
  if (!Number.isInteger(vmmLowBytes) || vmmLowBytes < 0 || vmmLowBytes >= EBDA_START) {
    throw new IrqChipError(ErrorCode.EINVAL, `the VMM's low area must end below the EBDA (0x${EBDA_START.toString(16)}), got ${vmmLowBytes}`);
  }
  const highTables = ramBytes - SEABIOS_HIGH_TABLES_BYTES;
  return [
    ...(vmmLowBytes > 0 ? [{ base: 0, length: vmmLowBytes, type: E820Type.Reserved }] : []),
    { base: vmmLowBytes, length: EBDA_START - vmmLowBytes, type: E820Type.Ram },
    { base: EBDA_START, length: LOW_MEMORY_END - EBDA_START, type: E820Type.Reserved },
    { base: BIOS_AREA.start, length: BIOS_AREA.end - BIOS_AREA.start, type: E820Type.Reserved },
    { base: MIB, length: highTables - MIB, type: E820Type.Ram },
    { base: highTables, length: SEABIOS_HIGH_TABLES_BYTES, type: E820Type.Reserved },
    { ...BIOS_ROM, type: E820Type.Reserved },
    { ...AMD_HYPERTRANSPORT_HOLE, type: E820Type.Reserved },
  ];
}

/**
 * mem_upper as QEMU's option ROM computes it from the map: the RAM contiguous from 1 MiB, in KiB.
 * Starting at 1 MiB, any RAM entry below 4 GiB that contains the end so far extends it to its own
 * end, and the search starts over (the map need not be ordered).
 */
export function upperMemoryKib(map: readonly MemoryMapEntry[]): number {
  let end = MIB;
  for (;;) {
    const extension = map.find((entry) => entry.type === E820Type.Ram && entry.base < FOUR_GIB && entry.base <= end && end < entry.base + entry.length);
    if (extension === undefined) return Math.floor((end - MIB) / KIB);
    end = extension.base + extension.length;
  }
}
