/**
 * Hand-assembled 32-bit flat protected-mode guests (no assembler needed), for the oracles that
 * drive KVM's in-kernel IOAPIC and local APIC through their MMIO windows at 0xFEC00000 and
 * 0xFEE00000, which real mode cannot address. Test support, not part of the package's API.
 *
 * The vCPU enters protected mode through KVM_SET_SREGS (`enterFlat32Guest`): CS and the data
 * segments flat (base 0, limit 4 GiB, 32-bit), CR0.PE set, no paging. Interrupts need a GDT (an
 * interrupt gate, and the handler's far return, load CS from it) and an IDT: `loadFlat32Guest`
 * lays both out with one handler per vector, which reports its vector and returns with IF clear
 * (see oracle-guest.ts for the report ports).
 *
 * Encodings: Intel SDM vol. 2 (MOV C7 /0, C6 /0, A1 moffs32, MOVZX 0F B6/B7, OUT E6/E7, the 66
 * operand-size prefix); in a 32-bit code segment an absolute address is a disp32 ModRM operand
 * (mod 00, r/m 101).
 */

import { KvmRegs } from './kvm-registers.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';
import { ORACLE_TRAP_BYTE, OraclePort } from './oracle-guest.ts';

/** MMIO access sizes a 32-bit guest makes with one ordinary instruction. */
export type Flat32AccessSize = 1 | 2 | 4;

const OPERAND_SIZE_PREFIX = 0x66;
/** ModRM mod = 00, r/m = 101: a disp32 absolute address; reg = 0 (the /0 of MOV and MOVZX's EAX). */
const MODRM_ABSOLUTE = 0x05;

function dword(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

function word(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff];
}

/** `mov byte|word|dword [address], value`: one guest write of `size` bytes. */
export function storeImmediate(address: number, size: Flat32AccessSize, value: number): number[] {
  switch (size) {
    case 1:
      return [0xc6, MODRM_ABSOLUTE, ...dword(address), value & 0xff];
    case 2:
      return [OPERAND_SIZE_PREFIX, 0xc7, MODRM_ABSOLUTE, ...dword(address), ...word(value)];
    case 4:
      return [0xc7, MODRM_ABSOLUTE, ...dword(address), ...dword(value)];
  }
}

/** `mov eax, [address]`, or `movzx eax, byte|word [address]`: one guest read of `size` bytes into EAX. */
export function loadEax(address: number, size: Flat32AccessSize): number[] {
  switch (size) {
    case 1:
      return [0x0f, 0xb6, MODRM_ABSOLUTE, ...dword(address)];
    case 2:
      return [0x0f, 0xb7, MODRM_ABSOLUTE, ...dword(address)];
    case 4:
      return [0xa1, ...dword(address)];
  }
}

/** `out port, eax`: reports EAX on a report port (a 4-byte KVM_EXIT_IO). */
export function outEax(port: number): number[] {
  return [0xe7, port];
}

/** `out port, al`. */
export function outAl(port: number): number[] {
  return [0xe6, port];
}

export const Flat32Opcode = { CLI: 0xfa, STI: 0xfb, NOP: 0x90 } as const;

/**
 * An INTA window: `sti; nop; out WINDOW, al; cli`. KVM_RUN returns at the OUT, and KVM injects at
 * the next entry, where IF = 1 and the STI shadow has passed (on this host a window of NOPs alone
 * is not enough: the interrupt waits for the next exit). The handler returns with IF still clear,
 * so the window takes at most one interrupt.
 */
export function interruptWindow(): number[] {
  return [Flat32Opcode.STI, Flat32Opcode.NOP, ...outAl(OraclePort.Window), Flat32Opcode.CLI];
}

/** An oracle guest's program (oracle-guest.ts): each step's code, then an OUT to SYNC; at the end an OUT to DONE. */
export function flat32OracleProgram(stepCodes: readonly (readonly number[])[]): number[] {
  return [...stepCodes.flatMap((code) => [...code, ...outAl(OraclePort.Sync)]), ...outAl(OraclePort.Done)];
}

// ---------------------------------------------------------------------------------------------
// Memory layout and the descriptor tables
// ---------------------------------------------------------------------------------------------

/** `push dword value`. */
export function pushImmediate(value: number): number[] {
  return [0x68, ...dword(value)];
}

/** Guest RAM the layout needs: tables, handlers, stack and up to ~60 KiB of program. */
export const FLAT32_GUEST_MEMORY_BYTES = 0x10000;
const GDT_AT = 0x0500;
const IDT_AT = 0x1000;
const VECTORS = 256;
const IDT_GATE_BYTES = 8;
const HANDLERS_AT = IDT_AT + VECTORS * IDT_GATE_BYTES;
const HANDLER_STRIDE = 16;
const STACK_TOP = HANDLERS_AT + VECTORS * HANDLER_STRIDE + 0x1000;
/** Where `loadFlat32Guest` puts the program: its entry point. */
export const FLAT32_PROGRAM_AT = STACK_TOP;

/** GDT: null, flat 32-bit code (selector 0x08), flat data (selector 0x10) (SDM vol. 3 §3.4.5). */
export const CODE_SELECTOR = 0x08;
const DATA_SELECTOR = 0x10;
const GDT = [0n, 0x00cf9a000000ffffn, 0x00cf92000000ffffn];
const GDT_ENTRY_BYTES = 8;
/** Interrupt gate, 32-bit, present, DPL 0 (SDM vol. 3 §6.11, Figure 6-2): IF is cleared on entry. */
const INTERRUPT_GATE_32 = 0x8e;

/** Segment types: execute/read accessed code, read/write accessed data. */
const CODE_SEGMENT_TYPE = 0xb;
const DATA_SEGMENT_TYPE = 0x3;
const FLAT_LIMIT = 0xffffffff;
const CR0_PE = 1n;
/** EFLAGS bit 1 is reserved and always 1; IF clear. */
const RFLAGS_RESERVED = 0x2;

/** The interrupt frame (SDM vol. 3 §6.12.1, no privilege change): EIP, CS, EFLAGS; RETF pops two of its dwords. */
const EFLAGS_IMAGE_BYTES = 4;
const RETF_IMM16 = 0xca;

/**
 * The handler for `vector`: push eax; mov al, vector; out VECTOR, al; pop eax; retf 4.
 * It returns with a far return that drops the EFLAGS image, so IF stays clear (the gate cleared
 * it): an INTA window takes one interrupt. Not IRETD: on this host a guest without paging runs in
 * KVM's instruction emulator, whose IRET handles real mode only (arch/x86/kvm/emulate.c
 * `em_iret`: "iret from protected mode unimplemented yet"; KVM_RUN fails with
 * KVM_INTERNAL_ERROR_EMULATION at the IRETD), while its far return handles protected mode.
 * It does not EOI: the oracles make EOIs operations of their own.
 */
function handler(vector: number): number[] {
  return [0x50, 0xb0, vector, ...outAl(OraclePort.Vector), 0x58, ...farReturnDroppingFlags()];
}

/** `retf 4`: returns through an interrupt frame as IRETD would, but leaves EFLAGS (IF) as it is. */
export function farReturnDroppingFlags(): number[] {
  return [RETF_IMM16, ...word(EFLAGS_IMAGE_BYTES)];
}

/**
 * Writes the GDT, the IDT, the 256 handlers and `program` into `memory` (at least
 * FLAT32_GUEST_MEMORY_BYTES), filling the rest with the trap byte; returns the entry point.
 */
export function loadFlat32Guest(memory: Uint8Array, program: readonly number[]): number {
  if (FLAT32_PROGRAM_AT + program.length > FLAT32_GUEST_MEMORY_BYTES) throw new RangeError(`a guest of ${program.length} bytes does not fit below 0x${FLAT32_GUEST_MEMORY_BYTES.toString(16)}`);
  memory.fill(ORACLE_TRAP_BYTE, HANDLERS_AT, FLAT32_GUEST_MEMORY_BYTES);
  const tables = new DataView(memory.buffer, memory.byteOffset);
  GDT.forEach((descriptor, index) => {
    tables.setBigUint64(GDT_AT + index * GDT_ENTRY_BYTES, descriptor, true);
  });
  for (let vector = 0; vector < VECTORS; vector++) {
    const at = HANDLERS_AT + vector * HANDLER_STRIDE;
    memory.set(handler(vector), at);
    const gate = IDT_AT + vector * IDT_GATE_BYTES;
    tables.setUint16(gate, at & 0xffff, true);
    tables.setUint16(gate + 2, CODE_SELECTOR, true);
    tables.setUint8(gate + 4, 0);
    tables.setUint8(gate + 5, INTERRUPT_GATE_32);
    tables.setUint16(gate + 6, at >>> 16, true);
  }
  memory.set(program, FLAT32_PROGRAM_AT);
  return FLAT32_PROGRAM_AT;
}

/**
 * Puts the vCPU in flat 32-bit protected mode at `entry` (see the file comment): IF clear, every
 * general register 0 but EIP and ESP, GDTR and IDTR at the tables `loadFlat32Guest` wrote.
 */
export function enterFlat32Guest(vcpu: KvmVcpu, entry: number): void {
  const sregs = vcpu.getSregs();
  const flat = { base: 0n, limit: FLAT_LIMIT, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
  sregs.setSegment('cs', { ...flat, selector: CODE_SELECTOR, type: CODE_SEGMENT_TYPE });
  for (const name of ['ds', 'es', 'fs', 'gs', 'ss'] as const) sregs.setSegment(name, { ...flat, selector: DATA_SELECTOR, type: DATA_SEGMENT_TYPE });
  sregs.setTable('gdt', BigInt(GDT_AT), GDT.length * GDT_ENTRY_BYTES - 1);
  sregs.setTable('idt', BigInt(IDT_AT), VECTORS * IDT_GATE_BYTES - 1);
  sregs.set('cr0', sregs.get('cr0') | CR0_PE);
  vcpu.setSregs(sregs);
  const regs = new KvmRegs();
  regs.set('rip', entry);
  regs.set('rsp', STACK_TOP);
  regs.set('rflags', RFLAGS_RESERVED);
  vcpu.setRegs(regs);
}
