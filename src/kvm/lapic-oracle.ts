/**
 * KVM's in-kernel local APIC as an oracle for our `LocalApic` (issue 7, the differential test),
 * and the LAPIC pieces the IOAPIC oracle shares. Test support, not part of the package's API.
 *
 * One run takes a sequence of operations (guest writes and reads of the xAPIC page at
 * 0xFEE00000, MSIs, INTA windows), plans it on our `LocalApic` (on an `ApicBus`, as vCPU 0, the
 * BSP) and replays it on KVM, comparing after every operation the registers KVM_GET_LAPIC
 * returns (LAPIC_COMPARED_REGISTERS) against ours as the guest reads them, and the operation's
 * result (the value read, KVM_SIGNAL_MSI's status against `ApicBus.deliverMsi`, the vector
 * taken).
 *
 * KVM is driven by a flat 32-bit guest (flat32-guest.ts) following oracle-guest.ts's report
 * protocol. Interrupts come from MSIs (KVM_SIGNAL_MSI at the SYNC exit; ours `deliverMsi`) and
 * from the guest's own ICR writes (self IPIs); the guest takes them only in INTA windows, one
 * per window, and its handler reports the vector. Operations that would stop or reset the vCPU
 * are not generated: INIT, SIPI, NMI and SMI go only to destinations that match no APIC.
 *
 * Time: both timers count TMICT × divisor × 1 ns (KVM's default APIC bus cycle; ours
 * `apicBusCycleNs` 1), but ours runs on a virtual clock that stands still here, so the oracle
 * never lets a timer expire: TMICT values are at least 2^31 (over two seconds, longer than any
 * run) and the current count (TMCCT), the one register that moves with time, is not compared.
 *
 * Where KVM differs, the plan leaves the operation out (`LapicSkipReason`, counted) or compares
 * under a named normalisation (counted); LAPIC_DIFFERENCES lists each with its reason.
 */

import { VirtualClock } from '../base/clock.ts';
import { DeliveryMode, DestinationMode, DestinationShorthand, XAPIC_BROADCAST, type InterruptMessage } from '../x86/interrupt-message.ts';
import { ApicBus } from '../x86/lapic/apic-bus.ts';
import { decodeMsi } from '../x86/msi/msi-codec.ts';
import {
  ApicRegister,
  DFR_MODEL_SHIFT,
  DFR_RESET,
  DfrModel,
  ICR_RESERVED,
  LVT_REGISTERS,
  XAPIC_CLUSTER_MEMBERS_MASK,
  XAPIC_CLUSTER_SHIFT,
  XAPIC_ID_SHIFT,
  XAPIC_REGISTER_STRIDE,
  isLvtMasked,
  lvtReadOnlyMask,
} from '../x86/lapic/apic-registers.ts';
import { LocalApic } from '../x86/lapic/local-apic.ts';
import type { IrqRoute } from '../routing/irq-route.ts';
import { FLAT32_GUEST_MEMORY_BYTES, enterFlat32Guest, flat32OracleProgram, interruptWindow, loadEax, loadFlat32Guest, outEax, storeImmediate } from './flat32-guest.ts';
import { KvmIoctl } from './kvm-abi.ts';
import { KvmLapicState } from './kvm-lapic-state.ts';
import { KvmMsiSender } from './kvm-msi-sender.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';
import { NO_VECTOR, OraclePort, replayOracleSteps, runOracleGuest, withOracleMachine, type OracleDifference, type OracleMachineOptions } from './oracle-guest.ts';

/** The xAPIC page's guest-physical base (SDM vol. 3 §11.4.1). */
export const LAPIC_MMIO_BASE = 0xfee00000;
const XAPIC_ACCESS_BYTES = 4;

export type LapicOracleOp =
  /** A guest write of the xAPIC register `register` (an `ApicRegister`), as a dword. */
  | { readonly kind: 'write'; readonly register: number; readonly value: number }
  | { readonly kind: 'read'; readonly register: number }
  /** An MSI write (KVM_SIGNAL_MSI; ours `ApicBus.deliverMsi`), address_hi 0. */
  | { readonly kind: 'msi'; readonly addressLow: number; readonly data: number }
  | { readonly kind: 'inta' };

/**
 * The differences between KVM's local APIC and ours, each with why ours is right (Intel SDM
 * vol. 3 chapter 11) and how the differential test handles it. The test prints this table.
 */
export const LAPIC_DIFFERENCES = [
  {
    rule: 'eoi-at-delivery',
    handling: 'kvmLapicHost() finds it by running a guest; where it holds, our LAPIC EOIs each interrupt right after acknowledging it (takeInterrupt), so ISR stays empty in both and EOI writes find nothing in service; lapic-oracle.test.ts proves the mechanism on its own',
    reason: "host (PVM): KVM ends every interrupt as it injects it: the vector moves from IRR to ISR and is EOIed at once (ISR cleared, PPR recomputed, a level vector's EOI broadcast to the IOAPIC, which re-delivers a line still asserted), before the handler's first instruction; so ISR and PPR read 0 in the handler, and a lower-priority request is taken at the next window with no EOI. SDM §11.8.4: the vector stays in ISR until the handler's EOI write (§11.8.5), and while it is there PPR holds its class (§11.8.3.1) and blocks equal and lower classes",
  },
  {
    rule: 'error-status',
    handling: 'ESR is compared with KVM expected to read 0; an operation after which ours raised an LVT Error interrupt is left out',
    reason: 'SDM §11.5.3: the APIC logs illegal register addresses and illegal vectors sent or received, a write to ESR makes them readable, and each error raises the LVT Error interrupt; KVM never logs an error (ESR reads 0) and ignores xAPIC ESR writes (x86-controllers.md §3.17)',
  },
  {
    rule: 'unreadable-register-read',
    handling: 'a read of a register KVM does not decode for reading (reserved offsets, EOI, remote read) is left out',
    reason: 'SDM §11.4.1, Table 11-1: reserved and write-only offsets have no value; ours reads 0 and logs "illegal register address" for a reserved one (§11.5.3); KVM never fills in the read (lapic.c kvm_lapic_reg_read returns before copying for a register outside its readable mask, and apic_mmio_read ignores that), so the guest reads whatever its instruction emulator last held',
  },
  {
    rule: 'illegal-vector',
    handling: 'an operation that sends or delivers a fixed or lowest-priority vector below 16 is left out',
    reason: "SDM §11.5.2: vectors 0–15 are reserved; an APIC neither accepts one (\"receive illegal vector\") nor sends one (\"send illegal vector\"), so ours leaves IRR alone and logs the error; KVM puts the vector in IRR (lapic.c __apic_accept_irq does not check it)",
  },
  {
    rule: 'disabled-apic-holds-irr',
    handling: 'an INTA window while our APIC is software-disabled with a vector pending in IRR is left out',
    reason: 'SDM §11.4.7.2: while the APIC is software-disabled, pending interrupts in IRR and ISR are held, so none is dispatched (x86-controllers.md §3.6 requires SVR bit 8 for delivery; QEMU apic_get_interrupt and crosvm agree); KVM dispatches them (lapic.c kvm_apic_has_interrupt checks only that the APIC is hardware-enabled)',
  },
  {
    rule: 'lvt-read-only-bits',
    handling: 'each LVT entry is compared with KVM expected to keep the delivery-status bit 12 (and on LINT0/LINT1 the remote-IRR bit 14) as last written',
    reason: "SDM §11.5.1, Figure 11-8: delivery status and remote IRR are read-only, set by the APIC itself; ours keeps them (x86-controllers.md §3.3); KVM's write masks let the guest's bits through (lapic.c apic_lvt_mask: LVT_MASK includes APIC_SEND_PENDING, LINT_MASK APIC_LVT_REMOTE_IRR)",
  },
  {
    rule: 'icr-reserved-bits',
    handling: 'ICR low is compared with KVM expected to keep the reserved bits (13, 17:16, 31:20) as last written',
    reason: 'SDM §11.6.1, Figure 11-12: those bits are reserved; ours stores the defined fields (ICR_WRITABLE); KVM stores the written value with only the busy bit cleared',
  },
  {
    rule: 'lowest-priority-empty-slot',
    handling: "a lowest-priority message to a logical destination for which KVM's vector hashing picks a member slot with no APIC (kvmHashesToEmptySlot) is left out",
    reason: "SDM §11.6.2.4: lowest-priority delivery goes to one of the processors the destination addresses (ours: the lowest PPR among them, ties by vector hashing over those processors, x86-controllers.md §3.9); KVM hashes the vector over the destination's member bits, addressed APICs or not, and drops the message when the bit it picks has no APIC behind it (lapic.c kvm_apic_map_get_dest_lapic: kvm_vector_to_index, then kvm_apic_disabled_lapic_found)",
  },
  {
    rule: 'undefined-dfr-model',
    handling: 'a logical-mode message (not a broadcast) while DFR holds a model other than flat (1111b) or cluster (0000b) is left out',
    reason: "SDM §11.6.2.2 defines only the flat and cluster models; ours matches no logical destination under another model, as KVM's own slow path does (lapic.c kvm_apic_match_logical_addr); KVM's APIC map takes any DFR but 0xFFFFFFFF for the cluster model (kvm_recalculate_logical_map) and delivers through it",
  },
  {
    rule: 'irr-merge-status',
    handling: "KVM_SIGNAL_MSI is expected to answer 1 where ours answers 0 because the vector was already pending in IRR",
    reason: "x86-controllers.md §0: an interrupt that merges with one already pending is coalesced (0), which is what tells a device model its edge was absorbed; KVM's LAPIC answers 1 whatever IRR held (lapic.c __apic_accept_irq)",
  },
  {
    rule: 'no-destination-status',
    handling: "where ours answers -1 because no APIC matched, KVM_SIGNAL_MSI is expected to answer 0, or -1 where the LAPIC's logical ID disables KVM's logical map (kvmNoDestinationStatus)",
    reason: "x86-controllers.md §0: a message nobody is addressed by is ignored (-1), as KVM's own slow path answers; KVM's fast path, which resolves destinations through its APIC map, answers 0 when the map holds no match (lapic.c kvm_irq_delivery_to_apic_fast)",
  },
] as const;

export type LapicDifferenceRule = (typeof LAPIC_DIFFERENCES)[number]['rule'];
/** Why an operation was left out: the rule of LAPIC_DIFFERENCES that covers it. */
export type LapicSkipReason = Extract<
  LapicDifferenceRule,
  'error-status' | 'unreadable-register-read' | 'illegal-vector' | 'lowest-priority-empty-slot' | 'undefined-dfr-model' | 'disabled-apic-holds-irr'
>;

/** What one operation shows. */
export interface LapicObservation {
  /** LAPIC_COMPARED_REGISTERS, in order. */
  readonly registers: readonly number[];
  /** read: the value; msi: the status; inta: the vector, or -1 when none was taken. */
  readonly result?: number;
}

export interface LapicOraclePlan {
  readonly steps: readonly { readonly op: LapicOracleOp; readonly expected: LapicObservation }[];
  readonly skipped: Readonly<Partial<Record<LapicSkipReason, number>>>;
  readonly normalised: Readonly<Partial<Record<LapicDifferenceRule, number>>>;
}

export type LapicOracleDifference = OracleDifference<LapicOracleOp, LapicObservation>;

/** The ISR, TMR and IRR banks, in register order: what a delivery and an acknowledge change. */
export const LAPIC_VECTOR_BANKS: readonly number[] = Array.from(
  { length: ApicRegister.InterruptRequestLast - ApicRegister.InServiceFirst + 1 },
  (_, index) => ApicRegister.InServiceFirst + index,
);

/**
 * How KVM's local APIC takes an interrupt on this host. `eoisAtDelivery`: KVM ends the interrupt
 * at the moment it injects it (LAPIC_DIFFERENCES, `eoi-at-delivery`), so our model is compared
 * as if its acknowledge were followed at once by an EOI.
 */
export interface KvmLapicHost {
  readonly eoisAtDelivery: boolean;
}

/**
 * The registers compared after every operation: every readable one but the timer's current count
 * (time; see the file comment).
 */
export const LAPIC_COMPARED_REGISTERS: readonly number[] = [
  ApicRegister.Id,
  ApicRegister.Version,
  ApicRegister.TaskPriority,
  ApicRegister.ArbitrationPriority,
  ApicRegister.ProcessorPriority,
  ApicRegister.LogicalDestination,
  ApicRegister.DestinationFormat,
  ApicRegister.SpuriousVector,
  ...LAPIC_VECTOR_BANKS,
  ApicRegister.ErrorStatus,
  ApicRegister.InterruptCommand,
  ApicRegister.InterruptCommandHigh,
  ...LVT_REGISTERS,
  ApicRegister.TimerInitialCount,
  ApicRegister.TimerDivideConfiguration,
];

/** `registers` (ApicRegister numbers) of our APIC, as the guest reads them. */
export function ourLapicRegisters(apic: LocalApic, registers: readonly number[]): number[] {
  return registers.map((register) => apic.mmioRead(register * XAPIC_REGISTER_STRIDE, XAPIC_ACCESS_BYTES));
}

/** `registers` of KVM's APIC, from KVM_GET_LAPIC. */
export function kvmLapicRegisters(state: KvmLapicState, registers: readonly number[]): number[] {
  return registers.map((register) => state.register(register));
}

/**
 * What an INTA window does to our APIC: the CPU takes the highest deliverable interrupt, if any
 * (SDM §11.8.4), and, where the host EOIs at delivery, that interrupt is ended at once with an
 * EOI (which broadcasts a level vector to the IOAPIC, as KVM's does). Returns the vector, or
 * NO_VECTOR.
 */
export function takeInterrupt(apic: LocalApic, host: KvmLapicHost): number {
  if (!apic.hasInterrupt()) return NO_VECTOR;
  const vector = apic.acknowledgeInterrupt();
  if (host.eoisAtDelivery && vector !== NO_VECTOR && apic.isr(vector)) {
    apic.mmioWrite(ApicRegister.EndOfInterrupt * XAPIC_REGISTER_STRIDE, XAPIC_ACCESS_BYTES, 0);
  }
  return vector;
}

/** An INTA operation's outcome in both oracles: the vector `takeInterrupt` gave, compared under `eoi-at-delivery` when the host ended it at once. */
export function intaOutcome(apic: LocalApic, host: KvmLapicHost): { readonly result: number; readonly normalisedBy?: 'eoi-at-delivery' } {
  const vector = takeInterrupt(apic, host);
  return host.eoisAtDelivery && vector !== NO_VECTOR ? { result: vector, normalisedBy: 'eoi-at-delivery' } : { result: vector };
}

/** struct kvm_cpuid2: nent u32, padding u32, then kvm_cpuid_entry2 entries of 40 bytes (function, index, flags, eax, ebx, ecx, edx, padding[3]). */
const KVM_CPUID2_HEADER_BYTES = 8;
const KVM_CPUID_ENTRY2_BYTES = 40;
const CPUID_ENTRY_EDX = 24;
/** CPUID.1:EDX[9]: the CPU has an on-chip APIC (SDM vol. 2A, CPUID, Table 3-11). */
const CPUID_1_EDX_APIC = 1 << 9;
/** CPUID leaf 0's EAX: the highest basic leaf, here 1. */
const CPUID_MAX_BASIC_LEAF = 1;

/**
 * Points the oracle's vCPU at its flat 32-bit guest, as a CPU whose CPUID has leaves 0 and 1 and
 * reports an APIC and nothing more: no x2APIC (CPUID.1:ECX[21]), no TSC-deadline timer (ECX[24]).
 * KVM derives its LAPIC's writable timer modes from leaf 1 (cpuid.c kvm_vcpu_after_set_cpuid:
 * one-shot and periodic, TSC-deadline only with ECX[24]; without a leaf 1 not even periodic), so
 * this is the CPU our `LocalApic` without `tscHz` models.
 */
export function enterOracleVcpu(vcpu: KvmVcpu, entry: number): void {
  const cpuid = new DataView(new ArrayBuffer(KVM_CPUID2_HEADER_BYTES + 2 * KVM_CPUID_ENTRY2_BYTES));
  cpuid.setUint32(0, 2, true);
  const leaf0 = KVM_CPUID2_HEADER_BYTES;
  cpuid.setUint32(leaf0 + 12, CPUID_MAX_BASIC_LEAF, true); // eax
  const leaf1 = leaf0 + KVM_CPUID_ENTRY2_BYTES;
  cpuid.setUint32(leaf1, 1, true); // function
  cpuid.setUint32(leaf1 + CPUID_ENTRY_EDX, CPUID_1_EDX_APIC, true);
  vcpu.ioctl(KvmIoctl.SET_CPUID2, cpuid, 'KVM_SET_CPUID2');
  enterFlat32Guest(vcpu, entry);
}

/** The machine of a flat 32-bit oracle guest whose steps are `stepCodes`, on the oracle's vCPU (`enterOracleVcpu`). */
export function flat32OracleMachine(stepCodes: readonly (readonly number[])[], routes: readonly IrqRoute[]): OracleMachineOptions {
  const program = flat32OracleProgram(stepCodes);
  return { memoryBytes: FLAT32_GUEST_MEMORY_BYTES, routes, load: (memory) => loadFlat32Guest(memory, program), enter: enterOracleVcpu };
}

/** The MSI address of a fixed interrupt to APIC ID 0, physical mode (SDM §11.11.1). */
const MSI_TO_APIC_0 = LAPIC_MMIO_BASE;
const PROBE_VECTOR = 0x40;
/** SVR with the APIC software-enabled, spurious vector 0xFF (SDM §11.9). */
export const SVR_ENABLED = 0x1ff;

/**
 * How KVM's LAPIC behaves on this host, found by running it: a guest takes one fixed interrupt in
 * an INTA window, and KVM_GET_LAPIC then shows whether its ISR bit is set (the SDM, §11.8.4) or
 * the interrupt was already ended (`eoi-at-delivery`). The answer is cached.
 */
export function kvmLapicHost(): KvmLapicHost {
  probedHost ??= probeKvmLapicHost();
  return probedHost;
}

let probedHost: KvmLapicHost | undefined;

function probeKvmLapicHost(): KvmLapicHost {
  const steps = [storeImmediate(registerAddress(ApicRegister.SpuriousVector), XAPIC_ACCESS_BYTES, SVR_ENABLED), [], interruptWindow()];
  const host = withOracleMachine(flat32OracleMachine(steps, []), ({ vm, vcpu }) =>
    runOracleGuest<KvmLapicHost>(vcpu, steps.length, (step, reported) => {
      if (step === 1) new KvmMsiSender(vm).sendHalves(MSI_TO_APIC_0, 0, PROBE_VECTOR);
      if (step !== 2) return undefined;
      if (reported !== PROBE_VECTOR) throw new Error(`the LAPIC probe took vector ${String(reported)}, expected 0x${PROBE_VECTOR.toString(16)}`);
      return { eoisAtDelivery: !KvmLapicState.read(vcpu).isr(PROBE_VECTOR) };
    }),
  );
  if (host === undefined) throw new Error('the LAPIC probe did not reach its INTA window');
  return host;
}

/**
 * KVM's status for `message`, which matched no APIC (`no-destination-status`): -1 where KVM takes
 * its slow path, 0 where its APIC map resolves the destination. The map never takes a broadcast
 * (lapic.c kvm_apic_map_get_dest_lapic); with one APIC it resolves every other physical
 * destination, and every logical one unless the APIC's logical ID names more than one member
 * (flat: several bits of LDR[31:24]; cluster: of LDR[27:24]), which disables the map's logical
 * mode (kvm_recalculate_logical_map). DFR 0xFFFFFFFF is flat there, any other value cluster.
 */
export function kvmNoDestinationStatus(apic: LocalApic, message: InterruptMessage): number {
  if (message.destination >>> 0 === XAPIC_BROADCAST) return -1;
  if (message.destinationMode !== DestinationMode.Logical || !apic.isSoftwareEnabled()) return 0;
  const logicalId = apic.logicalDestination() >>> XAPIC_ID_SHIFT;
  const members = apic.destinationFormat() >>> 0 === DFR_FLAT ? logicalId : logicalId & XAPIC_CLUSTER_MEMBERS_MASK;
  return (members & (members - 1)) !== 0 ? -1 : 0;
}

/** DFR in the flat model, as KVM's map tests it (APIC_DFR_FLAT). */
const DFR_FLAT = DFR_RESET >>> 0;

/**
 * `lowest-priority-empty-slot`: whether KVM drops `message`, a lowest-priority message that
 * reaches `apic`, because its vector hashing picks another member slot of the logical
 * destination. KVM resolves a logical destination through its map (when the map is usable, see
 * `kvmNoDestinationStatus`): the member bits (flat: dest[7:0]; cluster: dest[3:0] of cluster
 * dest[7:4]) form a bitmap, and the message goes to the (vector mod popcount)-th set bit's APIC
 * (lapic.c kvm_apic_map_get_dest_lapic, kvm_vector_to_index), or nowhere if none is there.
 */
export function kvmHashesToEmptySlot(apic: LocalApic, message: InterruptMessage): boolean {
  const lowestPriority = message.deliveryMode === DeliveryMode.LowestPriority || message.redirectionHint;
  const destination = message.destination >>> 0;
  if (!lowestPriority || message.shorthand !== DestinationShorthand.None || message.destinationMode !== DestinationMode.Logical) return false;
  if (kvmNoDestinationStatus(apic, message) < 0 || !apic.isSoftwareEnabled()) return false;
  const logicalId = apic.logicalDestination() >>> XAPIC_ID_SHIFT;
  const flat = apic.destinationFormat() >>> 0 === DFR_FLAT;
  const members = flat ? destination & XAPIC_BROADCAST : destination & XAPIC_CLUSTER_MEMBERS_MASK;
  const ownSlot = flat ? logicalId : logicalId >>> XAPIC_CLUSTER_SHIFT === destination >>> XAPIC_CLUSTER_SHIFT ? logicalId & XAPIC_CLUSTER_MEMBERS_MASK : 0;
  if ((members & ownSlot) === 0) return false;
  let pick = message.vector % popCount(members);
  for (let bit = 1; ; bit <<= 1) {
    if ((members & bit) === 0) continue;
    if (pick === 0) return bit !== ownSlot;
    pick -= 1;
  }
}

/** `undefined-dfr-model`: `message` is a logical-mode message and DFR holds neither defined model. */
export function underUndefinedDfrModel(apic: LocalApic, message: InterruptMessage): boolean {
  if (message.shorthand !== DestinationShorthand.None || message.destinationMode !== DestinationMode.Logical || message.destination >>> 0 === XAPIC_BROADCAST) return false;
  const model = apic.destinationFormat() >>> DFR_MODEL_SHIFT;
  return model !== DfrModel.Flat && model !== DfrModel.Cluster;
}

function popCount(bits: number): number {
  let count = 0;
  for (let rest = bits; rest !== 0; rest &= rest - 1) count += 1;
  return count;
}

// ---------------------------------------------------------------------------------------------
// Planning on our model
// ---------------------------------------------------------------------------------------------

/** Our APIC as vCPU 0 on a bus of one, plus the bits KVM keeps that ours does not. */
class LapicModel {
  readonly bus = ApicBus.create();
  readonly apic = LocalApic.create({ busIndex: 0, bsp: true, clock: new VirtualClock() });
  /** Per register: bits KVM holds beyond ours (LVT bits 12/14, ICR reserved bits), as last written. */
  kvmOnlyBits = new Map<number, number>();
  /** The IPIs our APIC sent, in order. */
  readonly sentIpis: InterruptMessage[] = [];

  constructor() {
    this.bus.addMember(this.apic);
    this.apic.setIpiSink({
      deliver: (message) => {
        this.sentIpis.push({ ...message });
        return this.bus.deliver(message);
      },
    });
  }

  snapshot(): { readonly apic: Uint8Array; readonly kvmOnlyBits: Map<number, number> } {
    return { apic: this.apic.snapshot(), kvmOnlyBits: new Map(this.kvmOnlyBits) };
  }

  restore(snapshot: ReturnType<LapicModel['snapshot']>): void {
    this.apic.restore(snapshot.apic);
    this.kvmOnlyBits = new Map(snapshot.kvmOnlyBits);
  }

  /** A register of ours as KVM should show it: ESR 0 (`error-status`), KVM's extra bits added. */
  expectedKvmRegister(register: number, ours: number): number {
    return register === ApicRegister.ErrorStatus ? 0 : (ours | (this.kvmOnlyBits.get(register) ?? 0)) >>> 0;
  }

  expectedKvmRegisters(): number[] {
    const ours = ourLapicRegisters(this.apic, LAPIC_COMPARED_REGISTERS);
    return LAPIC_COMPARED_REGISTERS.map((register, index) => this.expectedKvmRegister(register, ours[index] ?? 0));
  }
}

const LAPIC_IRR_REGISTERS = LAPIC_VECTOR_BANKS.filter((register) => register >= ApicRegister.InterruptRequestFirst);
/** What KVM decodes for reading: the compared registers and the timer's current count (lapic.c kvm_lapic_readable_reg_mask). */
const KVM_READABLE_REGISTERS: ReadonlySet<number> = new Set([...LAPIC_COMPARED_REGISTERS, ApicRegister.TimerCurrentCount]);
const LVT_REGISTER_SET: ReadonlySet<number> = new Set(LVT_REGISTERS);

type LapicOutcome = { readonly result: number | undefined; readonly normalisedBy?: LapicDifferenceRule };

/** Runs `ops` (after the SVR prologue) on our model, leaving out and normalising as LAPIC_DIFFERENCES says. */
export function planLapicOracleRun(ops: readonly LapicOracleOp[], host: KvmLapicHost): LapicOraclePlan {
  const model = new LapicModel();
  const steps: { op: LapicOracleOp; expected: LapicObservation }[] = [];
  const skipped: Partial<Record<LapicSkipReason, number>> = {};
  const normalised: Partial<Record<LapicDifferenceRule, number>> = {};
  const count = (rule: LapicDifferenceRule): void => {
    normalised[rule] = (normalised[rule] ?? 0) + 1;
  };
  const prologue: LapicOracleOp = { kind: 'write', register: ApicRegister.SpuriousVector, value: SVR_ENABLED };
  for (const op of [prologue, ...ops]) {
    const before = model.snapshot();
    const illegalBefore = model.apic.counter('illegalVectors');
    const reservedBefore = model.apic.counter('reservedRegisterAccesses');
    const errorLvtUnmasked = !isLvtMasked(ourLapicRegisters(model.apic, [ApicRegister.LvtError])[0] ?? 0);
    const ipisBefore = model.sentIpis.length;
    const heldByDisabledApic = op.kind === 'inta' && !model.apic.isSoftwareEnabled() && LAPIC_IRR_REGISTERS.some((register) => model.apic.mmioRead(register * XAPIC_REGISTER_STRIDE, XAPIC_ACCESS_BYTES) !== 0);
    const messages = op.kind === 'msi' ? [decodeMsi(op.addressLow, 0, op.data)] : [];
    const outcome = performLapicOp(model, op, host);
    messages.push(...model.sentIpis.slice(ipisBefore));
    let skip: LapicSkipReason | undefined;
    if (op.kind === 'read' && !KVM_READABLE_REGISTERS.has(op.register)) skip = 'unreadable-register-read';
    else if (heldByDisabledApic) skip = 'disabled-apic-holds-irr';
    else if (messages.some((message) => underUndefinedDfrModel(model.apic, message))) skip = 'undefined-dfr-model';
    else if (messages.some((message) => kvmHashesToEmptySlot(model.apic, message))) skip = 'lowest-priority-empty-slot';
    else if (model.apic.counter('illegalVectors') !== illegalBefore) skip = 'illegal-vector';
    else if (model.apic.counter('reservedRegisterAccesses') !== reservedBefore && errorLvtUnmasked) skip = 'error-status';
    if (skip !== undefined) {
      model.restore(before);
      skipped[skip] = (skipped[skip] ?? 0) + 1;
      continue;
    }
    if (outcome.normalisedBy !== undefined) count(outcome.normalisedBy);
    if (ourLapicRegisters(model.apic, [ApicRegister.ErrorStatus])[0] !== 0) count('error-status');
    const registers = model.expectedKvmRegisters();
    steps.push({ op, expected: outcome.result === undefined ? { registers } : { registers, result: outcome.result } });
  }
  return { steps, skipped, normalised };
}

function performLapicOp(model: LapicModel, op: LapicOracleOp, host: KvmLapicHost): LapicOutcome {
  const { apic, bus } = model;
  switch (op.kind) {
    case 'write':
      return writeRegister(model, op.register, op.value);
    case 'read': {
      const ours = apic.mmioRead(op.register * XAPIC_REGISTER_STRIDE, XAPIC_ACCESS_BYTES);
      const kvm = model.expectedKvmRegister(op.register, ours);
      return kvm === ours ? { result: ours } : { result: kvm, normalisedBy: op.register === ApicRegister.ErrorStatus ? 'error-status' : 'lvt-read-only-bits' };
    }
    case 'msi': {
      const coalescedBefore = apic.counter('coalescedInterrupts');
      const noDestinationBefore = bus.counters().noDestination;
      const status = bus.deliverMsi(op.addressLow, 0, op.data);
      if (apic.counter('coalescedInterrupts') !== coalescedBefore) return { result: 1, normalisedBy: 'irr-merge-status' };
      if (bus.counters().noDestination !== noDestinationBefore) {
        return { result: kvmNoDestinationStatus(apic, decodeMsi(op.addressLow, 0, op.data)), normalisedBy: 'no-destination-status' };
      }
      return { result: status };
    }
    case 'inta':
      return intaOutcome(apic, host);
  }
}

/** A guest register write; records the bits KVM keeps beyond ours (`lvt-read-only-bits`, `icr-reserved-bits`). */
function writeRegister(model: LapicModel, register: number, value: number): LapicOutcome {
  let kvmOnly: number | undefined;
  let rule: LapicDifferenceRule | undefined;
  if (LVT_REGISTER_SET.has(register)) {
    // KVM's write masks let the read-only bits through (lapic.c apic_lvt_mask).
    kvmOnly = value & lvtReadOnlyMask(register);
    rule = 'lvt-read-only-bits';
  } else if (register === ApicRegister.InterruptCommand) {
    // KVM keeps the written value but for the busy bit.
    kvmOnly = value & ICR_RESERVED;
    rule = 'icr-reserved-bits';
  }
  model.apic.mmioWrite(register * XAPIC_REGISTER_STRIDE, XAPIC_ACCESS_BYTES, value);
  if (kvmOnly === undefined || rule === undefined) return { result: undefined };
  model.kvmOnlyBits.set(register, kvmOnly >>> 0);
  return kvmOnly === 0 ? { result: undefined } : { result: undefined, normalisedBy: rule };
}


// ---------------------------------------------------------------------------------------------
// The guest and the replay on KVM
// ---------------------------------------------------------------------------------------------

function registerAddress(register: number): number {
  return LAPIC_MMIO_BASE + register * XAPIC_REGISTER_STRIDE;
}

function guestCode(op: LapicOracleOp): number[] {
  switch (op.kind) {
    case 'write':
      return storeImmediate(registerAddress(op.register), XAPIC_ACCESS_BYTES, op.value);
    case 'read':
      return [...loadEax(registerAddress(op.register), XAPIC_ACCESS_BYTES), ...outEax(OraclePort.Read)];
    case 'msi':
      return []; // signalled by us at the SYNC exit
    case 'inta':
      return interruptWindow();
  }
}

/** Replays `plan` on KVM's LAPIC; returns the first step where KVM and ours differ, or undefined. */
export function replayLapicOnKvm(plan: LapicOraclePlan): LapicOracleDifference | undefined {
  return replayOracleSteps(flat32OracleMachine(plan.steps.map(({ op }) => guestCode(op)), []), plan.steps, {
    drive: ({ vm }, op) => (op.kind === 'msi' ? new KvmMsiSender(vm).sendHalves(op.addressLow, 0, op.data) : undefined),
    observe: ({ vcpu }, result) => {
      const registers = kvmLapicRegisters(KvmLapicState.read(vcpu), LAPIC_COMPARED_REGISTERS);
      return result === undefined ? { registers } : { registers, result };
    },
    same: (kvm, ours) => kvm.result === ours.result && kvm.registers.every((value, index) => value === ours.registers[index]),
  });
}
