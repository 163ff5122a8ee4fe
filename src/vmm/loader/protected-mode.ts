/**
 * The CPU state a multiboot kernel starts in (Multiboot Specification 0.6.96 §3.2), as QEMU's
 * multiboot option ROM leaves it (pc-bios/optionrom/multiboot.S): 32-bit protected mode with
 * paging off (CR0 = PE, and ET, which the SDM fixes at 1), CS = 0x08 a flat 32-bit code segment,
 * DS = ES = FS = GS = SS = 0x10 flat data, EFLAGS = 0x2 (IF clear), CR3 = CR4 = EFER = 0. A20 is
 * on: KVM has no A20 gate. The GDT the selectors came from is the option ROM's, in ROM; ours is
 * in the BIOS area the memory map reserves (pc-memory-map.ts), so it stays valid as QEMU's does,
 * though a kernel may not rely on it (§3.2: "GDTR ... may be invalid"). ESP is undefined by the
 * specification; QEMU's ROM runs on SeaBIOS's stack below 0x7000 (its BUILD_STACK_ADDR), so a
 * kernel that pushes before setting its own stack finds one there too.
 */

import type { KvmVcpu } from '../../kvm/kvm-vcpu.ts';
import { CODE_SELECTOR, DATA_SELECTOR, FLAT_DATA_DESCRIPTOR, SegmentType, flatSegment, gdtLimit, setEntryRegisters, writeGdt, type EntryRegisters } from '../../kvm/long-mode.ts';
import { BIOS_AREA } from './pc-memory-map.ts';

/** Null, flat 32-bit code (D=1, P, DPL 0, execute/read; the ROM's 0x08), flat data (0x10). */
const GDT = [0n, 0x00cf9a000000ffffn, FLAT_DATA_DESCRIPTOR];
export const PROTECTED_MODE_GDT_ADDRESS = BIOS_AREA.start;
export const PROTECTED_MODE_STACK = 0x7000;

const CR0_PE = 1n << 0n;
/** CR0.ET is hardwired to 1 on P6 and later processors (SDM vol. 3 §2.5). */
const CR0_ET = 1n << 4n;

export function writeProtectedModeGdt(memory: Uint8Array): void {
  writeGdt(memory, PROTECTED_MODE_GDT_ADDRESS, GDT);
}

/** Puts the vCPU at `entry` in the state above (the GDT of `writeProtectedModeGdt` in guest RAM). */
export function enterProtectedMode(vcpu: KvmVcpu, entry: number, registers: EntryRegisters): void {
  const sregs = vcpu.getSregs();
  sregs.setSegment('cs', flatSegment(CODE_SELECTOR, SegmentType.Code, false));
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs.setSegment(name, flatSegment(DATA_SELECTOR, SegmentType.Data, false));
  sregs.setTable('gdt', BigInt(PROTECTED_MODE_GDT_ADDRESS), gdtLimit(GDT));
  sregs.set('cr0', CR0_PE | CR0_ET);
  sregs.set('cr3', 0n);
  sregs.set('cr4', 0n);
  sregs.set('efer', 0n);
  vcpu.setSregs(sregs);
  setEntryRegisters(vcpu, entry, { rsp: PROTECTED_MODE_STACK, ...registers });
}
