/**
 * KVM's in-kernel 8259A pair as an oracle for our `PicPair` (issue 7, the differential test).
 * Test support, not part of the package's API.
 *
 * One run takes a sequence of operations (guest port writes and reads, IRQ line changes, INTA
 * cycles), plans it on our model and then replays it on KVM, comparing after every operation:
 * both chips' registers (KVM_GET_IRQCHIP), the value of each port read, the status of each line
 * change (KVM_IRQ_LINE_STATUS against `PicPair.setIrq`) and the vector of each INTA.
 *
 * KVM is driven by a real-mode guest assembled from the plan, following the report protocol of
 * oracle-guest.ts: after every operation KVM_RUN returns at the SYNC port, where we change a line
 * (KVM_IRQ_LINE_STATUS on a GSI routed to the PIC only) and read both chips. The guest runs with
 * IF = 0, so KVM's PIC is acknowledged only inside an INTA window (`sti; nop; out WINDOW, al;
 * cli`: KVM injects at the entry after that exit, deterministically; on this host a window of NOPs
 * alone is not enough, the interrupt is not injected until the next exit). Every vector's handler
 * reports the vector and clears IF in the FLAGS image its IRET pops, so one window takes at most
 * one interrupt: the window is one INTA cycle, or none when the PIC's output is low.
 *
 * Where our model differs from KVM by design (x86-controllers.md §1.11, the Recommendations), the
 * plan either leaves the operation out (`SkipReason`, counted and reported) or compares under a
 * named normalisation rule (`comparableState`, `expectedKvmLineStatus`). PIC_DIFFERENCES lists
 * every one with its reason.
 */

import { PicChip, PicPair, PicPort, type PicChipRegisters } from '../x86/pic/pic.ts';
import { IrqSourceChip, picIrqRoute } from '../routing/irq-route.ts';
import { KvmIrqchipId } from './kvm-abi.ts';
import { readKvmPicState, type KvmPicState, type KvmPicStateField, KVM_PIC_STATE_FIELDS } from './kvm-irqchip-state.ts';
import { NO_VECTOR, ORACLE_TRAP_BYTE, OraclePort, replayOracleSteps, type OracleDifference } from './oracle-guest.ts';
import { IVT_ENTRY_BYTES, enterRealModeGuest } from './pic-test-guest.ts';

export type PicOracleOp =
  | { readonly kind: 'write'; readonly port: number; readonly value: number }
  | { readonly kind: 'read'; readonly port: number }
  | { readonly kind: 'line'; readonly irq: number; readonly level: boolean }
  | { readonly kind: 'inta' };

/**
 * The differences between KVM's 8259A and ours, each with why ours is right, and how the
 * differential test handles it. The test prints this table.
 */
export const PIC_DIFFERENCES = [
  {
    rule: 'poll-read',
    handling: 'a poll read that finds a request is left out; one that finds none is compared, with KVM expected to read 0x07 where ours reads 0x00',
    reason: 'poll read (§1.8): ours follows the 8259A datasheet (0x80|level, ISR set unless AEOI); KVM returns the bare level, clears IRR (even level requests) and ISR, and 7 with nothing pending',
  },
  {
    rule: 'special-mask-priority',
    handling: 'an operation that leaves special mask mode on with a masked level in service is left out',
    reason: 'special mask mode (§1.4): per the datasheet a masked in-service level no longer blocks lower levels; KVM stores the flag and ignores it',
  },
  {
    rule: 'icw1-clears-more',
    handling: 'before ICW1 the guest EOIs each in-service level (specific EOI) and clears rotate-in-AEOI (OCW2 0x00), which both models do alike; an ICW1 while poll is armed is left out',
    reason: 'ICW1 (§1.6 Recommendation, QEMU): ours clears ISR, poll and rotate-in-AEOI; KVM keeps them (it clears only the ISR bits of pending edge requests)',
  },
  {
    rule: 'icw1-no-update',
    handling: "ICW1 is followed by a specific EOI of level 0 (nothing is in service then, so it only makes KVM re-evaluate), and the state between the two is not compared",
    reason: "ICW1 drops the master's latched IR2 request; ours re-evaluates the cascade at once, so a slave that still requests latches IR2 again (no interrupt lost); KVM re-evaluates only at its next PIC update, so until then the slave's request is stuck",
  },
  {
    rule: 'initialising-fields',
    handling: 'while a chip expects ICW2–ICW4, its irq_base, auto_eoi and special_fully_nested_mode are not compared, and no INTA window is run',
    reason: 'ICW1 (datasheet; §1.6): ours zeroes the vector base and the ICW4 functions at ICW1; KVM keeps them until ICW2/ICW4 overwrite them, which both do alike',
  },
  {
    rule: 'icw1-single-ltim',
    handling: 'ICW1 is generated with SNGL = 0 and LTIM = 0',
    reason: 'SNGL and LTIM (§1.11): ours skips ICW3 in single mode and makes every input level-sensitive under LTIM (datasheet, QEMU); KVM ignores both bits',
  },
  {
    rule: 'elcr-latches-high-line',
    handling: 'an ELCR write that makes an edge pin whose line is high and has no request level-sensitive is left out',
    reason: "ELCR write: a level input's request is its line, so ours latches it at once; KVM latches it only at the line's next change (a delayed interrupt)",
  },
  {
    rule: 'edge-assert-while-high',
    handling: 'KVM_IRQ_LINE_STATUS is expected to be 1 where setIrq returns 0 for an edge pin whose line was already high',
    reason: 'line status (§1.3): an assert of a line that is already high adds no request in either model; ours reports it as coalesced (0), KVM as delivered (1)',
  },
  {
    rule: 'irq2-line',
    handling: 'IRQ2 is never driven as a line',
    reason: "cascade (§1.5): ours keeps the IR2 edge detector across the slave's pulses so a device on IRQ2 keeps its edges; KVM's pulse clears it (IR2 is the cascade on a PC anyway)",
  },
] as const;

/** Why an operation was left out: the rule of PIC_DIFFERENCES that covers it. */
export type SkipReason = Extract<(typeof PIC_DIFFERENCES)[number]['rule'], 'poll-read' | 'special-mask-priority' | 'icw1-clears-more' | 'initialising-fields' | 'elcr-latches-high-line'>;

/** What one operation shows: both chips' registers and, per kind, the read value, the line status or the INTA vector. */
export interface PicObservation {
  readonly master: KvmPicState;
  readonly slave: KvmPicState;
  /** read: the byte; line: the status; inta: the vector, or -1 when no interrupt was taken. */
  readonly result?: number;
}

export interface PicOraclePlan {
  /** `expected` is undefined for a step whose state is not compared (`icw1-no-update`). */
  readonly steps: readonly { readonly op: PicOracleOp; readonly expected: PicObservation | undefined }[];
  readonly skipped: Readonly<Partial<Record<SkipReason, number>>>;
}

export type PicOracleDifference = OracleDifference<PicOracleOp, PicObservation>;

/** ELCR writable bits (§1.1): what KVM reports as elcr_mask. */
const ELCR_MASK = { [PicChip.Master]: 0xf8, [PicChip.Slave]: 0xde } as const;
const ICW1_MARKER = 0x10;
const OCW2_ROTATE_IN_AEOI_CLEAR = 0x00;
const OCW2_SPECIFIC_EOI = 0x60;
/** `icw1-no-update`: a specific EOI of level 0, written when nothing is in service. */
const REEVALUATE_AFTER_ICW1 = OCW2_SPECIFIC_EOI;
/** A poll read that finds no request: ours (the datasheet's I bit clear), and KVM's (level 7). */
const POLL_NOTHING_PENDING = 0x00;
const KVM_POLL_NOTHING_PENDING = 0x07;
/** The cascade input, never driven as a line (`irq2-line`). */
export const CASCADE_IRQ = 2;
/** A field left out of the comparison. */
const NOT_COMPARED = -1;

// ---------------------------------------------------------------------------------------------
// Planning on our model
// ---------------------------------------------------------------------------------------------

/** Runs `ops` on a fresh `PicPair`, leaving out and expanding operations as PIC_DIFFERENCES says. */
export function planPicOracleRun(ops: readonly PicOracleOp[]): PicOraclePlan {
  const model = PicPair.create();
  const steps: { op: PicOracleOp; expected: PicObservation | undefined }[] = [];
  const skipped: Partial<Record<SkipReason, number>> = {};
  const perform = (op: PicOracleOp): void => {
    const before = model.snapshot();
    const chip = chipOfOp(op);
    const chipBefore = chip === undefined ? undefined : model.registers(chip);
    const result = applyToModel(model, op);
    const reason = skipReason(model, op, result, before);
    if (reason === undefined) {
      const kvmResult = expectedKvmResult(op, result, chipBefore);
      steps.push({ op, expected: observe(model, kvmResult) });
      return;
    }
    model.restore(before);
    skipped[reason] = (skipped[reason] ?? 0) + 1;
  };
  for (const op of ops) {
    const icw1 = isIcw1(op);
    for (const alignment of icw1 ? icw1Alignment(model, op.port) : []) perform(alignment);
    const stepsBefore = steps.length;
    perform(op);
    const performed = steps[stepsBefore];
    if (!icw1 || performed === undefined) continue;
    performed.expected = undefined;
    perform({ kind: 'write', port: op.port, value: REEVALUATE_AFTER_ICW1 });
  }
  return { steps, skipped };
}

/** `icw1-clears-more`: before ICW1, what brings KVM's chip to what ours keeps (nothing in service, no rotate-in-AEOI). */
function icw1Alignment(model: PicPair, commandPort: number): PicOracleOp[] {
  const registers = model.registers(chipOfPort(commandPort));
  const alignment: PicOracleOp[] = [];
  for (let pin = 0; pin < 8; pin++) {
    if ((registers.isr & (1 << pin)) !== 0) alignment.push({ kind: 'write', port: commandPort, value: OCW2_SPECIFIC_EOI | pin });
  }
  if (registers.rotateOnAutoEoi) alignment.push({ kind: 'write', port: commandPort, value: OCW2_ROTATE_IN_AEOI_CLEAR });
  return alignment;
}

function isIcw1(op: PicOracleOp): op is Extract<PicOracleOp, { kind: 'write' }> {
  return op.kind === 'write' && isCommandPort(op.port) && (op.value & ICW1_MARKER) !== 0;
}

function applyToModel(model: PicPair, op: PicOracleOp): number | undefined {
  switch (op.kind) {
    case 'write':
      model.writePort(op.port, 1, op.value);
      return undefined;
    case 'read':
      return model.readPort(op.port, 1);
    case 'line':
      return model.setIrq(op.irq, op.level);
    case 'inta':
      return model.outputLevel() ? model.acknowledge() : NO_VECTOR;
  }
}

/** Why `op`, just applied to `model` (which was `before`), is outside what KVM and ours share; undefined if it is not. */
function skipReason(model: PicPair, op: PicOracleOp, result: number | undefined, before: Uint8Array): SkipReason | undefined {
  const previous = PicPair.create();
  previous.restore(before);
  if (isPollRead(op, previous) && result !== POLL_NOTHING_PENDING) return 'poll-read';
  if (isIcw1(op) && previous.registers(chipOfPort(op.port)).pollArmed) return 'icw1-clears-more';
  if (op.kind === 'inta' && bothChips.some((chip) => previous.registers(chip).initState !== 0)) return 'initialising-fields';
  if (op.kind === 'write' && isElcrPort(op.port) && latchesHighLine(previous.registers(chipOfPort(op.port)), model.registers(chipOfPort(op.port)))) {
    return 'elcr-latches-high-line';
  }
  if (bothChips.some((chip) => specialMaskMatters(model.registers(chip)))) return 'special-mask-priority';
  return undefined;
}

const bothChips = [PicChip.Master, PicChip.Slave] as const;

function isPollRead(op: PicOracleOp, before: PicPair): boolean {
  return op.kind === 'read' && !isElcrPort(op.port) && before.registers(chipOfPort(op.port)).pollArmed;
}

/** The chip whose registers decide how `op` is compared: a port's or a line's. */
function chipOfOp(op: PicOracleOp): PicChip | undefined {
  if (op.kind === 'line') return op.irq < 8 ? PicChip.Master : PicChip.Slave;
  return op.kind === 'read' ? chipOfPort(op.port) : undefined;
}

function latchesHighLine(before: PicChipRegisters, after: PicChipRegisters): boolean {
  const newlyLevel = after.elcr & ~before.elcr;
  return (newlyLevel & before.lastIrr & ~before.irr) !== 0;
}

function specialMaskMatters(registers: PicChipRegisters): boolean {
  return registers.specialMask && (registers.isr & registers.imr) !== 0;
}

function observe(model: PicPair, result: number | undefined): PicObservation {
  const master = comparableState(picStateOf(model.registers(PicChip.Master), PicChip.Master));
  const slave = comparableState(picStateOf(model.registers(PicChip.Slave), PicChip.Slave));
  return result === undefined ? { master, slave } : { master, slave, result };
}

/** Our registers in kvm_pic_state's terms. */
function picStateOf(registers: PicChipRegisters, chip: PicChip): KvmPicState {
  return {
    lastIrr: registers.lastIrr,
    irr: registers.irr,
    imr: registers.imr,
    isr: registers.isr,
    priorityAdd: registers.priorityAdd,
    irqBase: registers.irqBase,
    readRegisterSelect: Number(registers.readsIsr),
    poll: Number(registers.pollArmed),
    specialMask: Number(registers.specialMask),
    initState: registers.initState,
    autoEoi: Number(registers.autoEoi),
    rotateOnAutoEoi: Number(registers.rotateOnAutoEoi),
    specialFullyNestedMode: Number(registers.specialFullyNested),
    init4: Number(registers.icw4Expected),
    elcr: registers.elcr,
    elcrMask: ELCR_MASK[chip],
  };
}

/** `initialising-fields`: while ICW2–ICW4 are awaited, the fields ICW1 treats differently are not compared. */
const FIELDS_UNSETTLED_WHILE_INITIALISING: readonly KvmPicStateField[] = ['irqBase', 'autoEoi', 'specialFullyNestedMode'];

export function comparableState(state: KvmPicState): KvmPicState {
  if (state.initState === 0) return state;
  const comparable = { ...state };
  for (const field of FIELDS_UNSETTLED_WHILE_INITIALISING) comparable[field] = NOT_COMPARED;
  return comparable;
}

/** What KVM should give where ours gave `result` for `op` (`edge-assert-while-high`, `poll-read`). */
function expectedKvmResult(op: PicOracleOp, result: number | undefined, chipBefore: PicChipRegisters | undefined): number | undefined {
  if (result === undefined || chipBefore === undefined) return result;
  if (op.kind === 'line') return expectedKvmLineStatus(op, result, chipBefore);
  if (op.kind === 'read' && !isElcrPort(op.port) && chipBefore.pollArmed) return KVM_POLL_NOTHING_PENDING;
  return result;
}

/** `edge-assert-while-high`: KVM's status for the line change `op` where ours returned `status`. */
function expectedKvmLineStatus(op: Extract<PicOracleOp, { kind: 'line' }>, status: number, chipBefore: PicChipRegisters): number {
  if (!op.level || status !== 0) return status;
  const bit = 1 << (op.irq & 7);
  const edgeLineAlreadyHigh = (chipBefore.elcr & bit) === 0 && (chipBefore.lastIrr & bit) !== 0;
  return edgeLineAlreadyHigh ? 1 : status;
}

// ---------------------------------------------------------------------------------------------
// The guest
// ---------------------------------------------------------------------------------------------

const STACK_TOP = 0x0ff0;
const HANDLERS_AT = 0x1000;
const HANDLER_STRIDE = 16;
const VECTORS = 256;
const CODE_AT = HANDLERS_AT + VECTORS * HANDLER_STRIDE;
/** Real mode with CS = 0 reaches the first 64 KiB. */
const CODE_SEGMENT_END = 0x10000;
const GUEST_MEMORY_BYTES = CODE_SEGMENT_END;

const Opcode = {
  CLI: 0xfa,
  STI: 0xfb,
  NOP: 0x90,
  MOV_AL_IMM8: 0xb0,
  MOV_DX_IMM16: 0xba,
  OUT_IMM8_AL: 0xe6,
  IN_AL_IMM8: 0xe4,
  OUT_DX_AL: 0xee,
  IN_AL_DX: 0xec,
} as const;

/**
 * The handler for `vector`: reports it and returns with IF clear, so an INTA window takes one
 * interrupt. push bp; mov bp, sp; and byte [bp+7], ~0x02 (FLAGS bit 9, IF, in the image IRET pops);
 * pop bp; push ax; mov al, vector; out OraclePort.Vector, al; pop ax; iret.
 */
function handler(vector: number): number[] {
  return [0x55, 0x89, 0xe5, 0x80, 0x66, 0x07, 0xfd, 0x5d, 0x50, Opcode.MOV_AL_IMM8, vector, Opcode.OUT_IMM8_AL, OraclePort.Vector, 0x58, 0xcf];
}

function outPort(port: number): number[] {
  return port <= 0xff ? [Opcode.OUT_IMM8_AL, port] : [Opcode.MOV_DX_IMM16, port & 0xff, port >> 8, Opcode.OUT_DX_AL];
}

function inPort(port: number): number[] {
  return port <= 0xff ? [Opcode.IN_AL_IMM8, port] : [Opcode.MOV_DX_IMM16, port & 0xff, port >> 8, Opcode.IN_AL_DX];
}

function guestCode(op: PicOracleOp): number[] {
  switch (op.kind) {
    case 'write':
      return [Opcode.MOV_AL_IMM8, op.value, ...outPort(op.port)];
    case 'read':
      return [...inPort(op.port), Opcode.OUT_IMM8_AL, OraclePort.Read];
    case 'line':
      return []; // done by us at the SYNC exit
    case 'inta':
      return [Opcode.STI, Opcode.NOP, Opcode.OUT_IMM8_AL, OraclePort.Window, Opcode.CLI];
  }
}

/** Loads the IVT, the handlers and the program for `ops` into `memory`; returns the entry point. */
function loadGuest(memory: Uint8Array, ops: readonly PicOracleOp[]): number {
  memory.fill(ORACLE_TRAP_BYTE, HANDLERS_AT, CODE_SEGMENT_END);
  const ivt = new DataView(memory.buffer, memory.byteOffset);
  for (let vector = 0; vector < VECTORS; vector++) {
    const at = HANDLERS_AT + vector * HANDLER_STRIDE;
    memory.set(handler(vector), at);
    ivt.setUint16(vector * IVT_ENTRY_BYTES, at, true);
    ivt.setUint16(vector * IVT_ENTRY_BYTES + 2, 0, true);
  }
  const program = [
    Opcode.CLI,
    0x31, 0xc0, // xor ax, ax
    0x8e, 0xd0, // mov ss, ax
    0xbc, STACK_TOP & 0xff, STACK_TOP >> 8, // mov sp, STACK_TOP
    ...ops.flatMap((op) => [...guestCode(op), Opcode.OUT_IMM8_AL, OraclePort.Sync]),
    Opcode.OUT_IMM8_AL, OraclePort.Done,
  ];
  if (CODE_AT + program.length > CODE_SEGMENT_END) throw new RangeError(`a guest of ${program.length} bytes does not fit its code segment`);
  memory.set(program, CODE_AT);
  return CODE_AT;
}

// ---------------------------------------------------------------------------------------------
// Replaying on KVM
// ---------------------------------------------------------------------------------------------

/** Replays `plan` on KVM's PIC; returns the first step where KVM and ours differ, or undefined. */
export function replayOnKvm(plan: PicOraclePlan): PicOracleDifference | undefined {
  // GSIs 0–15 reach the PIC only: the line status is then the PIC's alone (§1.3).
  const routes = [];
  for (let irq = 0; irq < 16; irq++) routes.push(picIrqRoute(irq < 8 ? IrqSourceChip.PicPrimary : IrqSourceChip.PicSecondary, irq));
  const machine = { memoryBytes: GUEST_MEMORY_BYTES, routes, load: (memory: Uint8Array) => loadGuest(memory, plan.steps.map((step) => step.op)), enter: enterRealModeGuest };
  return replayOracleSteps(machine, plan.steps, {
    drive: ({ chip }, op) => (op.kind === 'line' ? chip.serviceIrq(op.irq, op.level) : undefined),
    observe: ({ vm }, result) => ({
      master: comparableState(readKvmPicState(vm, KvmIrqchipId.PicMaster)),
      slave: comparableState(readKvmPicState(vm, KvmIrqchipId.PicSlave)),
      ...(result === undefined ? {} : { result }),
    }),
    same: sameObservation,
  });
}

function sameObservation(kvm: PicObservation, ours: PicObservation): boolean {
  return kvm.result === ours.result && KVM_PIC_STATE_FIELDS.every((field) => kvm.master[field] === ours.master[field] && kvm.slave[field] === ours.slave[field]);
}

function isElcrPort(port: number): boolean {
  return port === PicPort.MasterElcr || port === PicPort.SlaveElcr;
}

function isCommandPort(port: number): boolean {
  return port === PicPort.MasterCommand || port === PicPort.SlaveCommand;
}

function chipOfPort(port: number): PicChip {
  return port === PicPort.MasterCommand || port === PicPort.MasterData || port === PicPort.MasterElcr ? PicChip.Master : PicChip.Slave;
}
