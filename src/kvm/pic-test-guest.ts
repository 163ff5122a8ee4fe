/**
 * A tiny real-mode guest for interrupt tests and benchmarks, as machine code written out by hand
 * (no assembler needed). It programs the 8259A pair the way a BIOS does (master ICW1–4 = 0x11,
 * 0x20, 0x04, 0x01: vector base 0x20, slave on IR2; slave fully masked; master OCW1 = 0xEF: only
 * IRQ4), writes ELCR1 (port 0x4d0: bit 4 makes IRQ4 level-triggered), installs an IVT handler for
 * vector 0x24, reports ready (OUT 0x11) and loops on `sti; hlt`. Each interrupt's handler
 * increments a counter in memory, OUTs it as a word to port 0x10, EOIs the master (OUT 0x20,
 * 0x20) and IRETs.
 */

import { KvmRegs } from './kvm-registers.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';

/** The GSI and ISA IRQ the guest takes: IRQ4 (COM1's line). */
export const GUEST_IRQ = 4;
/** The vector the master 8259A gives IRQ4 with base 0x20. */
const GUEST_VECTOR = 0x24;
/** The handler OUTs its running count (a word) here, before its EOI. */
export const COUNTER_PORT = 0x10;
/** The guest OUTs its ELCR1 value here once the PIC is programmed and the handler installed. */
export const READY_PORT = 0x11;

/** Where the code is loaded (and where execution starts), and where the handler sits. */
const GUEST_ENTRY = 0x1000;
const HANDLER_ADDRESS = 0x1100;
/** The handler's counter, a word in segment 0. */
const COUNTER_ADDRESS = 0x0600;
const STACK_TOP = 0x7000;
export const IVT_ENTRY_BYTES = 4;
/** EFLAGS bit 1 is reserved and always 1; IF (bit 9) clear. */
const RFLAGS_RESERVED = 0x2;
/** ELCR1 bit for IRQ4. */
const ELCR_IRQ4 = 0x10;

function low(word: number): number {
  return word & 0xff;
}

function high(word: number): number {
  return (word >> 8) & 0xff;
}

/** mov word [address], value */
function storeWord(address: number, value: number): number[] {
  return [0xc7, 0x06, low(address), high(address), low(value), high(value)];
}

/** mov al, value; out port, al */
function outByte(port: number, value: number): number[] {
  return [0xb0, value, 0xe6, port];
}

function mainProgram(levelTriggered: boolean): number[] {
  const ivtEntry = GUEST_VECTOR * IVT_ENTRY_BYTES;
  const elcr = levelTriggered ? ELCR_IRQ4 : 0;
  return [
    0xfa, // cli
    0x31, 0xc0, // xor ax, ax
    0x8e, 0xd8, // mov ds, ax
    0x8e, 0xd0, // mov ss, ax
    0xbc, low(STACK_TOP), high(STACK_TOP), // mov sp, STACK_TOP
    ...storeWord(ivtEntry, HANDLER_ADDRESS), // IVT[0x24].offset
    ...storeWord(ivtEntry + 2, 0), // IVT[0x24].segment
    ...storeWord(COUNTER_ADDRESS, 0),
    ...outByte(0x20, 0x11), // master ICW1: edge, cascade, ICW4 follows
    ...outByte(0x21, 0x20), // ICW2: vectors 0x20–0x27
    ...outByte(0x21, 0x04), // ICW3: slave on IR2
    ...outByte(0x21, 0x01), // ICW4: 8086 mode, normal EOI
    ...outByte(0xa0, 0x11), // slave ICW1
    ...outByte(0xa1, 0x28), // ICW2: vectors 0x28–0x2f
    ...outByte(0xa1, 0x02), // ICW3: cascade identity 2
    ...outByte(0xa1, 0x01), // ICW4
    ...outByte(0xa1, 0xff), // slave OCW1: everything masked
    ...outByte(0x21, 0xef), // master OCW1: only IRQ4 unmasked
    0xb0, elcr, // mov al, ELCR1 value
    0xba, 0xd0, 0x04, // mov dx, 0x4d0
    0xee, // out dx, al
    0xe6, READY_PORT, // out READY_PORT, al
    0xfb, // loop: sti
    0xf4, // hlt
    0xeb, 0xfc, // jmp loop
  ];
}

const HANDLER = [
  0x50, // push ax
  0xff, 0x06, low(COUNTER_ADDRESS), high(COUNTER_ADDRESS), // inc word [counter]
  0xa1, low(COUNTER_ADDRESS), high(COUNTER_ADDRESS), // mov ax, [counter]
  0xe7, COUNTER_PORT, // out COUNTER_PORT, ax
  0xb0, 0x20, 0xe6, 0x20, // EOI: out 0x20, 0x20
  0x58, // pop ax
  0xcf, // iret
];

/** Writes the guest into guest RAM (any thread holding the VM's memory). */
export function loadPicTestGuest(memory: Uint8Array, options: { readonly levelTriggered: boolean }): void {
  const program = mainProgram(options.levelTriggered);
  if (GUEST_ENTRY + program.length > HANDLER_ADDRESS) throw new Error('the guest program overlaps its handler');
  memory.set(program, GUEST_ENTRY);
  memory.set(HANDLER, HANDLER_ADDRESS);
}

/**
 * Points the vCPU at the guest in real mode (kvm-from-node.md §1): CS base 0 and selector 0 (the
 * reset value is base 0xffff0000, selector 0xf000), every register 0 but rip and rflags.
 */
export function enterPicTestGuest(vcpu: KvmVcpu): void {
  enterRealModeGuest(vcpu, GUEST_ENTRY);
}

/** Real mode at CS:IP = 0000:`entry`, interrupts disabled, every general register 0 (see above). */
export function enterRealModeGuest(vcpu: KvmVcpu, entry: number): void {
  const sregs = vcpu.getSregs();
  sregs.setSegment('cs', { ...sregs.segment('cs'), base: 0n, selector: 0 });
  vcpu.setSregs(sregs);
  const regs = new KvmRegs();
  regs.set('rip', entry);
  regs.set('rflags', RFLAGS_RESERVED);
  vcpu.setRegs(regs);
}

/**
 * What a vCPU loop running this guest records for its supervisor: Int32Array words over a
 * SharedArrayBuffer (`GUEST_LOG_WORDS` of them). Each change is followed by `Atomics.notify` on it.
 */
export const GuestLog = {
  /** Handler runs seen (OUTs to COUNTER_PORT). */
  Interrupts: 0,
  /** The last count the handler reported. */
  LastValue: 1,
  /** 1 once the guest reported ready. */
  Ready: 2,
  /** An exit the loop cannot handle (KvmExit value), which ends it; 0 while none. */
  FatalExit: 3,
  /** Handler runs whose count was not one more than the previous one. */
  OutOfOrder: 4,
  /** Handler runs that found the resample event already signalled before their EOI. */
  ResampledBeforeEoi: 5,
  /** KVM_RUN calls a kick interrupted. */
  Kicked: 6,
} as const;
export const GUEST_LOG_WORDS = 7;
