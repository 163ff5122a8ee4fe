/**
 * KVM's in-kernel IOAPIC as an oracle for our `Ioapic` (issue 7, the differential test). Test
 * support, not part of the package's API.
 *
 * KVM's IOAPIC is the 82093AA, version 0x11, without an EOI register (arch/x86/kvm/ioapic.h
 * `IOAPIC_VERSION_ID 0x11`), so ours is built as version 0x11 too. Its messages go to a local
 * APIC: KVM's in-kernel one on the KVM side, our `LocalApic` on an `ApicBus` on ours, and both
 * APICs' IRR, ISR and TMR are compared, so every delivery (vector, destination match, trigger)
 * shows. The plan also keeps each message ours sent and the bus's answer, for the tests.
 *
 * One run takes a sequence of operations (guest MMIO writes and reads of IOREGSEL and IOWIN,
 * pin line changes, LAPIC register writes, INTA windows), plans it on our models and replays it
 * on KVM, comparing after every operation: KVM_GET_IRQCHIP's kvm_ioapic_state against our
 * registers and pin levels, KVM_GET_LAPIC's vector banks against our LAPIC's, and the result of
 * the operation (the value read, KVM_IRQ_LINE_STATUS against `Ioapic.setIrq`, the vector taken).
 *
 * KVM is driven by a flat 32-bit guest (flat32-guest.ts; the IOAPIC sits at 0xFEC00000, beyond
 * real mode) following oracle-guest.ts's report protocol. GSI p is routed to IOAPIC pin p alone,
 * so a line status is the IOAPIC's. The guest first software-enables its LAPIC (SVR = 0x1FF); an
 * EOI reaches the IOAPIC the way it does in a PC: the guest takes the interrupt in an INTA window
 * and its LAPIC broadcasts the EOI of a level vector (TMR set). On this host KVM's LAPIC does that
 * at delivery (LAPIC_DIFFERENCES `eoi-at-delivery`), so our LAPIC does it after each acknowledge
 * too (`takeInterrupt`).
 *
 * Where our IOAPIC differs from KVM's by design, the plan leaves the operation out
 * (`IoapicSkipReason`, counted and reported) or compares under a named normalisation; every case
 * is in IOAPIC_DIFFERENCES with its reason.
 */

import { VirtualClock } from '../base/clock.ts';
import { allOnes } from '../base/integers.ts';
import { ioapicIrqRoute } from '../routing/irq-route.ts';
import { TriggerMode, type InterruptMessage } from '../x86/interrupt-message.ts';
import { IOAPIC_DEFAULT_BASE_ADDRESS, IOAPIC_PIN_COUNT, IOAPIC_RTC_PIN, Ioapic, IoapicMmioOffset, IoapicRegisterIndex, IoapicVersion } from '../x86/ioapic/ioapic.ts';
import { RTE_MASKED, RTE_REMOTE_IRR, rteIsLevelTriggered, rteVector } from '../x86/ioapic/redirection-entry.ts';
import { ApicBus } from '../x86/lapic/apic-bus.ts';
import { ApicRegister, XAPIC_REGISTER_STRIDE } from '../x86/lapic/apic-registers.ts';
import { LocalApic } from '../x86/lapic/local-apic.ts';
import { interruptWindow, loadEax, outEax, storeImmediate, type Flat32AccessSize } from './flat32-guest.ts';
import { readKvmIoapicState, type KvmIoapicState } from './kvm-irqchip-state.ts';
import { KvmLapicState } from './kvm-lapic-state.ts';
import {
  LAPIC_MMIO_BASE,
  LAPIC_VECTOR_BANKS,
  SVR_ENABLED,
  flat32OracleMachine,
  intaOutcome,
  kvmHashesToEmptySlot,
  kvmLapicRegisters,
  kvmNoDestinationStatus,
  ourLapicRegisters,
  underUndefinedDfrModel,
  type KvmLapicHost,
} from './lapic-oracle.ts';
import { OraclePort, replayOracleSteps, type OracleDifference } from './oracle-guest.ts';

export type IoapicOracleOp =
  /** A guest write of `size` bytes at `offset` in the IOAPIC's window. */
  | { readonly kind: 'write'; readonly offset: number; readonly size: Flat32AccessSize; readonly value: number }
  | { readonly kind: 'read'; readonly offset: number; readonly size: Flat32AccessSize }
  | { readonly kind: 'line'; readonly pin: number; readonly level: boolean }
  /** A guest write of an xAPIC register (an `ApicRegister`): LDR, DFR, EOI. */
  | { readonly kind: 'lapic-write'; readonly register: number; readonly value: number }
  | { readonly kind: 'inta' };

/**
 * The differences between KVM's IOAPIC and ours, each with why ours is right and how the
 * differential test handles it. The test prints this table.
 */
export const IOAPIC_DIFFERENCES = [
  {
    rule: 'eoi-at-delivery',
    handling: 'our LAPIC EOIs each interrupt right after acknowledging it (takeInterrupt), so both IOAPICs get the same EOI broadcasts at the same step',
    reason: "not the IOAPIC's: KVM's LAPIC on this host ends every interrupt as it injects it (LAPIC_DIFFERENCES eoi-at-delivery), so a level vector's EOI reaches the IOAPIC at the INTA, not at the guest's EOI write",
  },
  {
    rule: 'irr-hides-delivered-edges',
    handling: "irr is compared as our pin levels without the edge pins whose assertion was delivered since it rose (the oracle tracks which, as KVM's irr_delivered)",
    reason: 'representation only: KVM_GET_IRQCHIP reports irr & ~irr_delivered (ioapic.c kvm_get_ioapic), so a save/restore does not deliver an edge twice; ours keeps the pin levels, which are the inputs',
  },
  {
    rule: 'reserved-register-read',
    handling: 'an IOWIN read with IOREGSEL at 0x03–0x0F is compared with KVM expected to read all ones where ours reads 0',
    reason: "82093AA §3.2: 0x03–0x0F select no register; ours reads 0 (x86-controllers.md §2.2 Recommendation); KVM's all-ones comes from its unsigned index arithmetic ((IOREGSEL − 0x10) >> 1 wraps to a pin past 23), not from a rule",
  },
  {
    rule: 'sub-dword-window',
    handling: 'a 1- or 2-byte IOWIN write is left out; a 1- or 2-byte IOWIN read is compared with KVM expected to read the low bytes of the register where ours reads 0',
    reason: '82093AA §3.0: IOWIN is a dword register, read and written as a dword (x86-controllers.md §2.1 Recommendation, QEMU, crosvm); KVM writes the zero-extended byte or word as the whole register and reads the low bytes',
  },
  {
    rule: 'ioregsel-word-access',
    handling: 'a 2-byte IOREGSEL write is left out; a 2-byte IOREGSEL read is compared with KVM expected to read IOREGSEL where ours reads 0',
    reason: 'IOREGSEL is an 8-bit register taken by byte or dword (x86-controllers.md §2.1 Recommendation); KVM takes any size',
  },
  {
    rule: 'level-assert-awaiting-eoi',
    handling: 'KVM_IRQ_LINE_STATUS is expected to be -1 where setIrq returns 0 for an unmasked level pin with remote IRR set',
    reason: 'line status (x86-controllers.md §0, §2.10): the assertion merges with the interrupt awaiting its EOI, which re-delivers the line if it is still high, so ours reports it coalesced (0); KVM reports it ignored (-1), as for a masked pin, though nothing is lost',
  },
  {
    rule: 'no-destination-status',
    handling: 'where setIrq returns -1 because no LAPIC matched the destination, KVM_IRQ_LINE_STATUS is expected to be 0, or -1 where the LAPIC\'s logical ID disables KVM\'s logical map (kvmNoDestinationStatus)',
    reason: "line status (x86-controllers.md §0): a message no LAPIC is addressed by was ignored, -1, as KVM's own slow path answers too (lapic.c kvm_irq_delivery_to_apic); KVM's fast path, which resolves a destination through its APIC map, answers 0 when the map holds no match (kvm_irq_delivery_to_apic_fast sets *r = 0 before counting the targets), so KVM's answer depends on whether its map is usable; the state is the same in both (nothing delivered, no remote IRR)",
  },
  {
    rule: 'lapic-irr-merge',
    handling: 'for an edge pin KVM_IRQ_LINE_STATUS is expected to be 1 where ours returns 0 because the vector was already pending in the LAPIC; an operation that makes a level pin deliver into a pending vector is left out',
    reason: "ours reports a message that merges with a vector already in IRR as coalesced (0) and sets remote IRR only when a LAPIC took the interrupt anew (x86-controllers.md §2.7 Recommendation), so the EOI of the pending vector re-delivers a line still high; KVM's LAPIC answers 1 whatever IRR held (lapic.c __apic_accept_irq), so KVM sets remote IRR for the merged message",
  },
  {
    rule: 'unaccepted-level-remote-irr',
    handling: 'an operation that makes a level pin send a message no LAPIC matches, where KVM would answer -1, is left out',
    reason: "82093AA §3.2.4, x86-controllers.md §2.7 Recommendation: remote IRR is set when a LAPIC accepts the level interrupt, and only its EOI clears it; KVM sets it whenever the delivery result is non-zero, -1 included (ioapic.c ioapic_service: `if (ret && trig_mode == IOAPIC_LEVEL_TRIG)`), so a level interrupt nobody took leaves the pin waiting for an EOI that never comes",
  },
  {
    rule: 'illegal-vector',
    handling: 'an operation that makes our IOAPIC deliver a vector below 16 is left out (the LAPIC oracle compares such vectors on their own)',
    reason: "not the IOAPIC's: SDM vol. 3 §11.5.2 and §11.5.3 make vectors 0–15 illegal, so our LAPIC does not take them (ESR \"receive illegal vector\") and the bus reports 0 (matched, none accepted); KVM's LAPIC puts them in IRR and answers 1 (LAPIC_DIFFERENCES illegal-vector)",
  },
  {
    rule: 'lowest-priority-empty-slot',
    handling: 'an operation that makes our IOAPIC send a lowest-priority message KVM would drop (kvmHashesToEmptySlot) is left out',
    reason: "not the IOAPIC's: KVM's lowest-priority arbitration hashes the vector over the logical destination's member bits, present or not, and drops the message on an empty one (LAPIC_DIFFERENCES lowest-priority-empty-slot); SDM §11.6.2.4 delivers it to one of the addressed processors",
  },
  {
    rule: 'undefined-dfr-model',
    handling: 'an operation that makes our IOAPIC send a logical-mode message while the LAPIC\'s DFR holds an undefined model is left out',
    reason: "not the IOAPIC's: KVM's APIC map treats any DFR model but flat as cluster and delivers; SDM §11.6.2.2 defines only the two (LAPIC_DIFFERENCES undefined-dfr-model)",
  },
  {
    rule: 'level-eoi-edge-pin',
    handling: 'an INTA (or EOI) whose level EOI would reach an unmasked edge pin with the same vector and its line high is left out',
    reason: "82093AA §3.2.4, x86-controllers.md §2.8: an EOI concerns level entries (it clears their remote IRR); KVM's EOI handler treats every entry with the vector alike and re-services an edge entry whose line is high (ioapic.c kvm_ioapic_update_eoi_one), delivering an edge that never happened",
  },
  {
    rule: 'rtc-pin',
    handling: 'pin 8 is never driven as a line',
    reason: "KVM_IRQ_LINE_STATUS on GSI 8 runs KVM's RTC EOI tracking for either trigger mode, and an assertion it reports coalesced is not recorded as the line's level (ioapic.c ioapic_set_irq returns before irr |= mask), so a later assertion without a deassertion is a new edge there; ours records the level and tracks RTC EOIs for edge deliveries only (rtcEoiTracking), so a line that never fell gives no new edge",
  },
] as const;

export type IoapicDifferenceRule = (typeof IOAPIC_DIFFERENCES)[number]['rule'];
/** Why an operation was left out: the rule of IOAPIC_DIFFERENCES that covers it. */
export type IoapicSkipReason = Extract<IoapicDifferenceRule, 'sub-dword-window' | 'ioregsel-word-access' | 'lapic-irr-merge' | 'unaccepted-level-remote-irr' | 'illegal-vector' | 'undefined-dfr-model' | 'lowest-priority-empty-slot' | 'level-eoi-edge-pin'>;

/** What one operation shows. */
export interface IoapicObservation {
  readonly ioapic: KvmIoapicState;
  /** The LAPIC's ISR, TMR and IRR registers (LAPIC_VECTOR_BANKS order). */
  readonly lapic: readonly number[];
  /** read: the value; line: the status; inta: the vector, or -1 when none was taken. */
  readonly result?: number;
}

export interface IoapicOraclePlan {
  readonly steps: readonly { readonly op: IoapicOracleOp; readonly expected: IoapicObservation }[];
  readonly skipped: Readonly<Partial<Record<IoapicSkipReason, number>>>;
  /** Operations compared under a normalisation rule (the counts the test reports beside the skips). */
  readonly normalised: Readonly<Partial<Record<IoapicDifferenceRule, number>>>;
  /** The messages our IOAPIC sent, in order, in the steps kept. */
  readonly deliveries: readonly IoapicDelivery[];
}

export type IoapicOracleDifference = OracleDifference<IoapicOracleOp, IoapicObservation>;

const DWORD = 4;
/** IOAPICID holds the ID in bits 27:24 (82093AA §3.2.1); kvm_ioapic_state holds it unshifted. */
const IOAPIC_ID_SHIFT = 24;
const WORD = 2;
/** IOREGSEL values that select no register below the redirection table (82093AA §3.2). */
const FIRST_RESERVED_SELECT = IoapicRegisterIndex.Arbitration + 1;

// ---------------------------------------------------------------------------------------------
// Our side: the IOAPIC, the LAPIC it delivers to, and KVM's view of the pin levels
// ---------------------------------------------------------------------------------------------

/** Our IOAPIC wired to our LAPIC as KVM's are, recording what passes between them. */
class ModelPair {
  /** Every message our IOAPIC sent, with the bus's answer. */
  readonly deliveries: IoapicDelivery[] = [];
  /** Every EOI our LAPIC broadcast to the IOAPIC (level vectors), in order. */
  readonly eois: number[] = [];
  readonly ioapic: Ioapic;
  readonly lapic: LocalApic;
  /** KVM's irr_delivered: edge pins whose current assertion was serviced (`irr-hides-delivered-edges`). */
  deliveredEdges = 0;

  constructor() {
    const clock = new VirtualClock();
    const bus = ApicBus.create();
    const lapic = LocalApic.create({ busIndex: 0, bsp: true, clock });
    bus.addMember(lapic);
    const sink = {
      deliver: (message: InterruptMessage): number => {
        const coalescedBefore = lapic.counter('coalescedInterrupts');
        const result = bus.deliver(message);
        this.deliveries.push({ message: { ...message }, result, mergedInIrr: lapic.counter('coalescedInterrupts') !== coalescedBefore });
        return result;
      },
    };
    const ioapic = Ioapic.create({ version: IoapicVersion.V11, sink, clock, rtcEoiTracking: true });
    lapic.setEoiListener({
      endOfInterrupt: (vector, triggerMode) => {
        this.eois.push(vector);
        ioapic.endOfInterrupt(vector, triggerMode);
      },
    });
    this.ioapic = ioapic;
    this.lapic = lapic;
  }

  snapshot(): ModelSnapshot {
    return {
      ioapic: this.ioapic.snapshot(),
      lapic: this.lapic.snapshot(),
      deliveredEdges: this.deliveredEdges,
      deliveries: this.deliveries.length,
      eois: this.eois.length,
      illegalVectors: this.lapic.counter('illegalVectors'),
    };
  }

  restore(snapshot: ModelSnapshot): void {
    this.ioapic.restore(snapshot.ioapic);
    this.lapic.restore(snapshot.lapic);
    this.deliveredEdges = snapshot.deliveredEdges;
    this.deliveries.length = snapshot.deliveries;
    this.eois.length = snapshot.eois;
  }

  entryLow(pin: number): number {
    return this.ioapic.redirectionEntry(pin).low;
  }

  /** The vectors of the unmasked edge entries whose line is high (`level-eoi-edge-pin`). */
  highEdgeVectors(): Set<number> {
    const vectors = new Set<number>();
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      const low = this.entryLow(pin);
      if (this.ioapic.lineLevel(pin) && !rteIsLevelTriggered(low) && (low & RTE_MASKED) === 0) vectors.add(rteVector(low));
    }
    return vectors;
  }

  /** Our registers in kvm_ioapic_state's terms. */
  ioapicState(): KvmIoapicState {
    let levels = 0;
    const redirectionTable = [];
    for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
      if (this.ioapic.lineLevel(pin)) levels |= 1 << pin;
      redirectionTable.push(this.ioapic.redirectionEntry(pin));
    }
    return { ioregsel: this.registerSelect(), id: this.ioapicId(), irr: (levels & ~this.deliveredEdges) >>> 0, redirectionTable };
  }

  registerSelect(): number {
    return this.ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, DWORD);
  }

  /** The dword IOWIN read now gives, without the read leaving a trace (counters). */
  windowDword(): number {
    const before = this.ioapic.snapshot();
    const value = this.ioapic.mmioRead(IoapicMmioOffset.Window, DWORD);
    this.ioapic.restore(before);
    return value;
  }

  /** The 4-bit ID, read through IOWIN with IOREGSEL restored (neither access leaves a trace). */
  private ioapicId(): number {
    const select = this.registerSelect();
    this.ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, DWORD, IoapicRegisterIndex.Id);
    const id = this.ioapic.mmioRead(IoapicMmioOffset.Window, DWORD) >>> IOAPIC_ID_SHIFT;
    this.ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, DWORD, select);
    return id;
  }
}

interface ModelSnapshot {
  readonly ioapic: Uint8Array;
  readonly lapic: Uint8Array;
  readonly deliveredEdges: number;
  readonly deliveries: number;
  readonly eois: number;
  readonly illegalVectors: number;
}

/** A message our IOAPIC sent and the bus's answer (KVM convention: -1 no APIC matched, 0 none took it anew, > 0 taken). */
export interface IoapicDelivery {
  readonly message: InterruptMessage;
  readonly result: number;
  /** The LAPIC already had the vector in IRR (`lapic-irr-merge`). */
  readonly mergedInIrr: boolean;
}

// ---------------------------------------------------------------------------------------------
// Planning on our model
// ---------------------------------------------------------------------------------------------

/** Runs `ops` (after the SVR prologue) on our models, leaving out and normalising as IOAPIC_DIFFERENCES says. */
export function planIoapicOracleRun(ops: readonly IoapicOracleOp[], host: KvmLapicHost): IoapicOraclePlan {
  const model = new ModelPair();
  const steps: { op: IoapicOracleOp; expected: IoapicObservation }[] = [];
  const skipped: Partial<Record<IoapicSkipReason, number>> = {};
  const normalised: Partial<Record<IoapicDifferenceRule, number>> = {};
  const prologue: IoapicOracleOp = { kind: 'lapic-write', register: ApicRegister.SpuriousVector, value: SVR_ENABLED };
  for (const op of [prologue, ...ops]) {
    const before = model.snapshot();
    const highEdgeVectors = model.highEdgeVectors();
    const outcome = perform(model, op, host);
    const skip = 'skip' in outcome ? outcome.skip : leftOutBy(model, before, highEdgeVectors);
    if (skip !== undefined || 'skip' in outcome) {
      model.restore(before);
      if (skip !== undefined) skipped[skip] = (skipped[skip] ?? 0) + 1;
      continue;
    }
    if (outcome.normalisedBy !== undefined) normalised[outcome.normalisedBy] = (normalised[outcome.normalisedBy] ?? 0) + 1;
    const observation = { ioapic: model.ioapicState(), lapic: ourLapicRegisters(model.lapic, LAPIC_VECTOR_BANKS) };
    steps.push({ op, expected: outcome.result === undefined ? observation : { ...observation, result: outcome.result } });
  }
  return { steps, skipped, normalised, deliveries: [...model.deliveries] };
}

type Outcome = { readonly skip: IoapicSkipReason } | { readonly result: number | undefined; readonly normalisedBy?: IoapicDifferenceRule };

/** Why what `op` set in motion (deliveries, EOIs) is outside what KVM and ours share, if it is. */
function leftOutBy(model: ModelPair, before: ModelSnapshot, highEdgeVectors: ReadonlySet<number>): IoapicSkipReason | undefined {
  if (model.lapic.counter('illegalVectors') !== before.illegalVectors) return 'illegal-vector';
  const sent = model.deliveries.slice(before.deliveries);
  if (sent.some(({ message, mergedInIrr }) => mergedInIrr && message.triggerMode === TriggerMode.Level)) return 'lapic-irr-merge';
  if (sent.some(({ message, result }) => result < 0 && message.triggerMode === TriggerMode.Level && kvmNoDestinationStatus(model.lapic, message) < 0)) return 'unaccepted-level-remote-irr';
  if (sent.some(({ message }) => underUndefinedDfrModel(model.lapic, message))) return 'undefined-dfr-model';
  if (sent.some(({ message }) => kvmHashesToEmptySlot(model.lapic, message))) return 'lowest-priority-empty-slot';
  if (model.eois.slice(before.eois).some((vector) => highEdgeVectors.has(vector))) return 'level-eoi-edge-pin';
  return undefined;
}

function perform(model: ModelPair, op: IoapicOracleOp, host: KvmLapicHost): Outcome {
  switch (op.kind) {
    case 'write':
      return writeIoapic(model, op);
    case 'read':
      return readIoapic(model, op);
    case 'line':
      if (op.pin === IOAPIC_RTC_PIN) throw new RangeError(`pin ${IOAPIC_RTC_PIN} is never driven (IOAPIC_DIFFERENCES rtc-pin)`);
      return driveLine(model, op.pin, op.level);
    case 'lapic-write':
      model.lapic.mmioWrite(op.register * XAPIC_REGISTER_STRIDE, DWORD, op.value);
      return { result: undefined };
    case 'inta':
      return intaOutcome(model.lapic, host);
  }
}

function writeIoapic(model: ModelPair, op: Extract<IoapicOracleOp, { kind: 'write' }>): Outcome {
  if (op.size === WORD && op.offset === IoapicMmioOffset.RegisterSelect) return { skip: 'ioregsel-word-access' };
  if (op.size !== DWORD && op.offset === IoapicMmioOffset.Window) return { skip: 'sub-dword-window' };
  model.ioapic.mmioWrite(op.offset, op.size, op.value);
  return { result: undefined };
}

function readIoapic(model: ModelPair, op: Extract<IoapicOracleOp, { kind: 'read' }>): Outcome {
  const select = model.registerSelect();
  const value = model.ioapic.mmioRead(op.offset, op.size);
  if (op.offset === IoapicMmioOffset.RegisterSelect && op.size === WORD) return { result: select, normalisedBy: 'ioregsel-word-access' };
  if (op.offset !== IoapicMmioOffset.Window) return { result: value };
  const reserved = select >= FIRST_RESERVED_SELECT && select < IoapicRegisterIndex.RedirectionTable;
  const dword = reserved ? allOnes(DWORD) : model.windowDword();
  if (op.size !== DWORD) return { result: (dword & allOnes(op.size)) >>> 0, normalisedBy: 'sub-dword-window' };
  return reserved ? { result: dword, normalisedBy: 'reserved-register-read' } : { result: value };
}

/** A line change, with KVM_IRQ_LINE_STATUS's expected answer and KVM's irr_delivered kept up to date. */
function driveLine(model: ModelPair, pin: number, level: boolean): Outcome {
  const low = model.entryLow(pin);
  const wasHigh = model.ioapic.lineLevel(pin);
  const deliveriesBefore = model.deliveries.length;
  const status = model.ioapic.setIrq(pin, level);
  if (!level) return { result: status };
  if (!rteIsLevelTriggered(low)) {
    // KVM clears irr_delivered at every edge assertion and sets it when it services the pin.
    const bit = 1 << pin;
    model.deliveredEdges &= ~bit;
    if (!wasHigh && (low & RTE_MASKED) === 0) model.deliveredEdges |= bit;
  }
  const delivery = model.deliveries[deliveriesBefore];
  if (delivery?.mergedInIrr === true) return { result: 1, normalisedBy: 'lapic-irr-merge' };
  if (delivery !== undefined && delivery.result < 0) return { result: kvmNoDestinationStatus(model.lapic, delivery.message), normalisedBy: 'no-destination-status' };
  const awaitingEoi = rteIsLevelTriggered(low) && (low & (RTE_MASKED | RTE_REMOTE_IRR)) === RTE_REMOTE_IRR;
  return awaitingEoi && status === 0 ? { result: -1, normalisedBy: 'level-assert-awaiting-eoi' } : { result: status };
}

// ---------------------------------------------------------------------------------------------
// The guest and the replay on KVM
// ---------------------------------------------------------------------------------------------

function guestCode(op: IoapicOracleOp): number[] {
  switch (op.kind) {
    case 'write':
      return storeImmediate(IOAPIC_DEFAULT_BASE_ADDRESS + op.offset, op.size, op.value);
    case 'read':
      return [...loadEax(IOAPIC_DEFAULT_BASE_ADDRESS + op.offset, op.size), ...outEax(OraclePort.Read)];
    case 'line':
      return []; // done by us at the SYNC exit
    case 'lapic-write':
      return storeImmediate(LAPIC_MMIO_BASE + op.register * XAPIC_REGISTER_STRIDE, DWORD, op.value);
    case 'inta':
      return interruptWindow();
  }
}

/** GSI p reaches IOAPIC pin p and nothing else. */
function ioapicOnlyRoutes(): ReturnType<typeof ioapicIrqRoute>[] {
  return Array.from({ length: IOAPIC_PIN_COUNT }, (_, pin) => ioapicIrqRoute(pin));
}

/** Replays `plan` on KVM's IOAPIC; returns the first step where KVM and ours differ, or undefined. */
export function replayIoapicOnKvm(plan: IoapicOraclePlan): IoapicOracleDifference | undefined {
  return replayOracleSteps(flat32OracleMachine(plan.steps.map(({ op }) => guestCode(op)), ioapicOnlyRoutes()), plan.steps, {
    drive: ({ chip }, op) => (op.kind === 'line' ? chip.serviceIrq(op.pin, op.level) : undefined),
    observe: ({ vm, vcpu }, result) => ({
      ioapic: readKvmIoapicState(vm),
      lapic: kvmLapicRegisters(KvmLapicState.read(vcpu), LAPIC_VECTOR_BANKS),
      ...(result === undefined ? {} : { result }),
    }),
    same: sameObservation,
  });
}

function sameObservation(kvm: IoapicObservation, ours: IoapicObservation): boolean {
  const a = kvm.ioapic;
  const b = ours.ioapic;
  return (
    kvm.result === ours.result &&
    a.ioregsel === b.ioregsel &&
    a.id === b.id &&
    a.irr === b.irr &&
    a.redirectionTable.every((entry, pin) => {
      const other = b.redirectionTable[pin];
      return other !== undefined && entry.low === other.low && entry.high === other.high;
    }) &&
    kvm.lapic.every((word, index) => word === ours.lapic[index])
  );
}
