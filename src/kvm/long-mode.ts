/**
 * Starting a vCPU directly in 64-bit long mode (kvm-from-node.md §5): the VMM writes a GDT and
 * identity-mapped page tables into guest RAM and sets the registers a boot loader would leave, so
 * our C guests (guests/, built to guests/build/<name>.bin) need no real-mode stage.
 *
 * Guest-physical layout below 1 MiB (the guests are linked at GUEST_IMAGE_ADDRESS):
 *   0x0500  GDT: null, 64-bit code (selector 0x08), data (selector 0x10)
 *   0x1000  PML4, one entry
 *   0x2000  PDPT, four entries
 *   0x3000  four page directories of 2 MiB pages: the low 4 GiB identity-mapped, which also
 *           covers the IOAPIC and local APIC windows
 *   0x7000  LONG_MODE_TABLES_END: free for the VMM's boot information (src/vmm/loader/)
 *
 * The GDT writer, the flat segments and the entry registers are shared with the VMM's 32-bit
 * protected-mode entry for multiboot kernels (src/vmm/loader/protected-mode.ts).
 */

import { readFileSync } from 'node:fs';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import type { KvmRegName } from './kvm-abi.ts';
import { KvmRegs, type KvmSegment } from './kvm-registers.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';

/** Where our guests are linked and loaded: 1 MiB, above the real-mode area. */
export const GUEST_IMAGE_ADDRESS = 0x100000;
const GDT_ADDRESS = 0x500;
const PML4_ADDRESS = 0x1000;
const PDPT_ADDRESS = 0x2000;
const PAGE_DIRECTORIES_ADDRESS = 0x3000;
const PAGE_TABLE_BYTES = 0x1000;
/** Page directories mapped: 4 × 1 GiB. */
const MAPPED_GIBIBYTES = 4;
const ENTRIES_PER_TABLE = 512;
/** The first byte after the GDT and the page tables. */
export const LONG_MODE_TABLES_END = PAGE_DIRECTORIES_ADDRESS + MAPPED_GIBIBYTES * PAGE_TABLE_BYTES;
const LARGE_PAGE_BYTES = 2n ** 21n;

/** Page-table entry bits (SDM vol. 3 §4.5): present, writable, page size (a 2 MiB page in a PDE). */
const PTE_PRESENT = 0x1n;
const PTE_WRITABLE = 0x2n;
const PDE_LARGE_PAGE = 0x80n;

/** GDT entries (SDM vol. 3 §3.4.5): 64-bit code (L=1, P, DPL 0, execute/read) and flat read/write data. */
const GDT_CODE_64 = 0x00af9a000000ffffn;
export const FLAT_DATA_DESCRIPTOR = 0x00cf92000000ffffn;
const GDT = [0n, GDT_CODE_64, FLAT_DATA_DESCRIPTOR];
/** The selectors of a GDT laid out as null, code, data. */
export const CODE_SELECTOR = 0x08;
export const DATA_SELECTOR = 0x10;
const GDT_DESCRIPTOR_BYTES = 8;

/** Control registers of a long-mode CPU with SSE allowed (SDM vol. 3 §2.5, §9.8.5). */
const CR0_PE = 1n << 0n;
const CR0_MP = 1n << 1n;
const CR0_ET = 1n << 4n;
const CR0_NE = 1n << 5n;
const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const CR4_OSFXSR = 1n << 9n;
const CR4_OSXMMEXCPT = 1n << 10n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;
/** EFLAGS bit 1 is reserved and always 1; IF clear: the guest enables interrupts itself. */
const RFLAGS_RESERVED = 0x2n;

/** The flat image of one of our guests, as `npm run build:guests` wrote it. */
export function readGuestImage(name: string): Uint8Array {
  const url = new URL(`../../guests/build/${name}.bin`, import.meta.url);
  try {
    return readFileSync(url);
  } catch {
    throw new IrqChipError(ErrorCode.ENOENT, `guest image ${url.pathname} is missing or unreadable: run 'npm run build:guests'`);
  }
}

/** Copies `image` to GUEST_IMAGE_ADDRESS in guest RAM. */
export function loadGuestImage(memory: Uint8Array, image: Uint8Array): void {
  if (GUEST_IMAGE_ADDRESS + image.length > memory.length) {
    throw new IrqChipError(ErrorCode.ENOSPC, `a ${image.length}-byte guest image does not fit in ${memory.length} bytes of RAM at 0x${GUEST_IMAGE_ADDRESS.toString(16)}`);
  }
  memory.set(image, GUEST_IMAGE_ADDRESS);
}

/** Writes the GDT and the identity-mapped page tables (layout above) into guest RAM. */
export function writeLongModeTables(memory: Uint8Array): void {
  writeGdt(memory, GDT_ADDRESS, GDT);
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  memory.fill(0, PML4_ADDRESS, PAGE_DIRECTORIES_ADDRESS + MAPPED_GIBIBYTES * PAGE_TABLE_BYTES);
  view.setBigUint64(PML4_ADDRESS, BigInt(PDPT_ADDRESS) | PTE_PRESENT | PTE_WRITABLE, true);
  for (let gibibyte = 0; gibibyte < MAPPED_GIBIBYTES; gibibyte++) {
    const directory = PAGE_DIRECTORIES_ADDRESS + gibibyte * PAGE_TABLE_BYTES;
    view.setBigUint64(PDPT_ADDRESS + gibibyte * 8, BigInt(directory) | PTE_PRESENT | PTE_WRITABLE, true);
    for (let entry = 0; entry < ENTRIES_PER_TABLE; entry++) {
      const page = BigInt(gibibyte * ENTRIES_PER_TABLE + entry) * LARGE_PAGE_BYTES;
      view.setBigUint64(directory + entry * 8, page | PTE_PRESENT | PTE_WRITABLE | PDE_LARGE_PAGE, true);
    }
  }
}

/** Writes `descriptors` as a GDT at `address`. */
export function writeGdt(memory: Uint8Array, address: number, descriptors: readonly bigint[]): void {
  const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
  descriptors.forEach((descriptor, index) => {
    view.setBigUint64(address + index * GDT_DESCRIPTOR_BYTES, descriptor, true);
  });
}

/** GDTR.limit for a table of `descriptors`. */
export function gdtLimit(descriptors: readonly bigint[]): number {
  return descriptors.length * GDT_DESCRIPTOR_BYTES - 1;
}

/** Segment descriptor types (SDM vol. 3 §3.4.5.1): execute/read code and read/write data, both accessed. */
export const SegmentType = { Code: 0xb, Data: 0x3 } as const;

/**
 * A segment register as loading a flat descriptor (base 0, limit 4 GiB, G=1) leaves it; a 64-bit
 * code segment has L=1 and D=0, every other one D/B=1 (SDM vol. 3 §3.4.5).
 */
export function flatSegment(selector: number, type: number, longMode: boolean): KvmSegment {
  return { base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: longMode ? 0 : 1, s: 1, l: longMode ? 1 : 0, g: 1, avl: 0, unusable: 0 };
}

/** General registers at an entry point: those not named are 0. */
export type EntryRegisters = Readonly<Partial<Record<Exclude<KvmRegName, 'rip' | 'rflags'>, number>>>;

/**
 * Puts the vCPU in 64-bit mode at `entry` with the tables of `writeLongModeTables` (which must be
 * in guest RAM), interrupts disabled, the general registers as `registers` says (0 otherwise).
 * TR and LDTR keep KVM's values.
 */
export function enterLongMode(vcpu: KvmVcpu, entry: number, registers: EntryRegisters = {}): void {
  const sregs = vcpu.getSregs();
  sregs.setSegment('cs', flatSegment(CODE_SELECTOR, SegmentType.Code, true));
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs.setSegment(name, flatSegment(DATA_SELECTOR, SegmentType.Data, false));
  sregs.setTable('gdt', BigInt(GDT_ADDRESS), gdtLimit(GDT));
  sregs.set('cr3', BigInt(PML4_ADDRESS));
  sregs.set('cr4', CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT);
  sregs.set('cr0', CR0_PG | CR0_WP | CR0_NE | CR0_ET | CR0_MP | CR0_PE);
  sregs.set('efer', EFER_LME | EFER_LMA);
  vcpu.setSregs(sregs);
  setEntryRegisters(vcpu, entry, registers);
}

/** Sets RIP to `entry`, RFLAGS to its reserved bit alone (IF clear), and the general registers to `registers`. */
export function setEntryRegisters(vcpu: KvmVcpu, entry: number, registers: EntryRegisters): void {
  const regs = new KvmRegs();
  for (const [name, value] of Object.entries(registers) as [keyof EntryRegisters, number][]) regs.set(name, value);
  regs.set('rip', entry);
  regs.set('rflags', RFLAGS_RESERVED);
  vcpu.setRegs(regs);
}
