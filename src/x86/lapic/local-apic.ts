/**
 * The local APIC of one vCPU: xAPIC register page, x2APIC MSRs, timer, LINT pins, and the
 * INIT/SIPI state machine (Intel SDM vol. 3 ch. 11; x86-controllers.md §3).
 *
 * State: the words laid out in local-apic-state.ts, in a SharedArrayBuffer; this class is a view
 * over them (`descriptor()` / `LocalApic.fromState`), so a device thread can `accept` into the
 * IRR while the vCPU thread reads registers. Multi-word updates hold the state's lock; single-word
 * observations (mode, IDs, SVR, LVT LINT0) are atomic loads.
 *
 * The per-interrupt paths (accept, hasInterrupt, acknowledge, register writes such as EOI) take
 * the lock with `acquireLock`/`releaseLock` in try/finally, which is `withLock` without its
 * closure: the closure's allocation cost about 15% of an accept + acknowledge + EOI cycle
 * (bench/x86-lapic).
 *
 * Lock order PIC → IOAPIC → LAPIC: this class never calls out (the bus, the IOAPIC's EOI, the
 * PIC's INTA) while it holds its own lock. A locked section leaves the call it wants made in the
 * view's outbox, and the public method makes it after unlocking.
 *
 * Bad input (docs/architecture.md, decision 5): what the guest does through `mmioRead`,
 * `mmioWrite`, `readMsr` and `writeMsr` never throws; it gets the hardware's answer (ignored,
 * masked, ESR bit, #GP result) and a counter. What a caller passes wrongly throws
 * `IrqChipError('EINVAL')` before anything changes (the checks are in local-apic-checks.ts).
 * Register layouts and masks are in apic-registers.ts, the timer's arithmetic in apic-timer.ts.
 */

import type { Clock } from '../../base/clock.ts';
import { waitAsyncKeepingAlive } from '../../base/wait-async.ts';
import { wakeRunningThread } from '../../base/thread-waker.ts';
import { ErrorCode, check, checkRange } from '../../base/errors.ts';
import { allOnes, highHalf, joinHalves, lowHalf } from '../../base/integers.ts';
import { LOCK_WORDS, acquireLock, allocateStateWords, encodeSnapshot, releaseLock, restoreSnapshot, withLock } from '../../base/shared-state.ts';
import {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  interruptMessage,
  TriggerMode,
  type EoiBroadcastListener,
  type ExtIntController,
  type InterruptMessage,
  type InterruptMessageSink,
} from '../interrupt-message.ts';
import type { ApicBusMember } from './apic-bus-member.ts';
import {
  APIC_BASE_BSP,
  APIC_BASE_DEFAULT_ADDRESS,
  APIC_BASE_ENABLE,
  APIC_MAX_LVT_ENTRY,
  APIC_VERSION,
  apicBaseAddress,
  ApicMode,
  apicModeOf,
  ApicRegister,
  DFR_CLUSTER_MODEL,
  DFR_MODEL_MASK,
  DFR_RESERVED_ONES,
  DFR_RESET,
  ESR_ILLEGAL_REGISTER_ADDRESS,
  ESR_RECEIVE_ILLEGAL_VECTOR,
  ESR_SEND_ILLEGAL_VECTOR,
  FIRST_LEGAL_VECTOR,
  ICR_DELIVERY_MODE_MASK,
  ICR_DELIVERY_MODE_SHIFT,
  ICR_DESTINATION_LOGICAL,
  ICR_LEVEL_ASSERT,
  ICR_RESERVED,
  ICR_SHORTHAND_MASK,
  ICR_SHORTHAND_SHIFT,
  ICR_TRIGGER_LEVEL,
  ICR_WRITABLE,
  isLvtMasked,
  isValidApicBase,
  LVT_LINT0_BSP_RESET,
  LVT_MASKED,
  LVT_REGISTERS,
  LVT_REMOTE_IRR,
  LVT_RESET,
  LVT_TIMER_MODE_MASK,
  LVT_TIMER_MODE_SHIFT,
  LVT_TRIGGER_LEVEL,
  lvtDeliveryMode,
  lvtReadOnlyMask,
  lvtTimerMode,
  lvtVector,
  lvtWritableMask,
  MSR_IA32_APIC_BASE,
  MSR_IA32_TSC_DEADLINE,
  MSR_X2APIC_FIRST,
  PRIORITY_CLASS_MASK,
  RegisterAccess,
  SVR_APIC_ENABLED,
  SVR_RESET,
  SVR_SUPPRESS_EOI_BROADCAST,
  SVR_VECTOR_MASK,
  svrWritableMask,
  TDCR_WRITABLE,
  TimerMode,
  TPR_MASK,
  VECTOR_MASK,
  VERSION_DIRECTED_EOI,
  X2APIC_ACCESS,
  x2apicLogicalId,
  XAPIC_ACCESS,
  XAPIC_ACCESS_BYTES,
  XAPIC_HIGH_BYTE_MASK,
  XAPIC_ID_SHIFT,
  XAPIC_PAGE_BYTES,
  XAPIC_REGISTER_STRIDE,
} from './apic-registers.ts';
import { ApicTimer } from './apic-timer.ts';
import {
  checkDescriptor,
  checkLocalInterruptSource,
  checkMessage,
  checkMmioAccess,
  checkMsrIndex,
  checkU64,
  checkVector,
  checkWiring,
  validateOptions,
  validateSnapshotPayload,
} from './local-apic-checks.ts';
import {
  clearBank,
  clearVector,
  ConfigFlag,
  configPhysicalAddressBits,
  count,
  Counter,
  COUNTER_NAMES,
  DOORBELL_GENERATION,
  DOORBELL_RUNNING_THREAD,
  DOORBELL_WAITERS,
  DOORBELL_WORDS,
  float64Slot,
  highestVector,
  MODEL_WORDS,
  MpState,
  PendingEvent,
  setVector,
  shiftTime,
  STATE_WORDS,
  testVector,
  Word,
  type CounterName,
} from './local-apic-state.ts';

/** What `acknowledgeInterrupt` returns when there is nothing to take. */
export const NO_INTERRUPT = -1;

export { MpState } from './local-apic-state.ts';
export { DEFAULT_MIN_PERIODIC_TIMER_NS } from './local-apic-checks.ts';

/** Snapshot kind and layout version (shared-state.ts). */
const SNAPSHOT_KIND = 'LAPC';
const SNAPSHOT_VERSION = 1;

/** A SIPI's start address: CS selector = vector << 8, CS base = vector << 12, IP = 0 (SDM §8.4.4.1; x86-controllers.md §3.15). */
const SIPI_SELECTOR_SHIFT = 8;
const SIPI_BASE_SHIFT = 12;

/**
 * Guest-initiated mode transitions allowed through IA32_APIC_BASE (SDM §11.12.5, "x2APIC State Transitions"):
 * [from][to]. x2APIC → xAPIC and disabled → x2APIC must pass through another state; the invalid
 * state (EN = 0, EXTD = 1) is never reachable.
 */
const GUEST_TRANSITION_ALLOWED: readonly (readonly boolean[])[] = [
  /* from Disabled */ [true, true, false, false],
  /* from xAPIC    */ [true, true, true, false],
  /* from x2APIC   */ [true, false, true, false],
];

/** LVT delivery modes (bits 10:8) that are valid (SDM Figure 11-8). */
const LvtDeliveryMode = { Fixed: 0, Smi: 2, Nmi: 4, Init: 5, ExtInt: 7 } as const;

export interface LocalApicWiring {
  /** Drives the timer: the model never starts a real timer (docs/architecture.md, decision 4). */
  readonly clock: Clock;
  /** Where ICR writes go: the APIC bus. */
  readonly ipiSink?: InterruptMessageSink | undefined;
  /** Who hears EOI broadcasts of level-triggered vectors: the IOAPIC. */
  readonly eoiListener?: EoiBroadcastListener | undefined;
  /** The 8259A pair behind LINT0 and ExtINT messages. */
  readonly extInt?: ExtIntController | undefined;
}

export interface LocalApicOptions extends LocalApicWiring {
  /** Position on the APIC bus: the vCPU index. */
  readonly busIndex: number;
  /** Bootstrap processor: IA32_APIC_BASE bit 8 at RESET, runnable at RESET, LINT0 = ExtINT at RESET. */
  readonly bsp: boolean;
  /** The x2APIC ID (and, in its low 8 bits, the xAPIC ID at RESET). Default: `busIndex`. */
  readonly x2apicId?: number;
  /** Guest TSC frequency. Given: TSC-deadline timer mode exists (CPUID.1:ECX[24]). Absent: it does not. */
  readonly tscHz?: number;
  /** Advertise EOI-broadcast suppression (Version bit 24). Only with an IOAPIC that has an EOI register (v0x20; §6.9). */
  readonly directedEoi?: boolean;
  /** Timer ticks before the divider, in ns (KVM_CAP_X86_APIC_BUS_CYCLES_NS). Default 1. */
  readonly apicBusCycleNs?: number;
  /** Shortest periodic timer period, in ns (KVM `min_timer_period_us`). Default 200 000; 0 = none. */
  readonly minPeriodicTimerNs?: number;
  /**
   * MAXPHYADDR of the guest's CPU (CPUID.80000008H:EAX[7:0]; 32–52): IA32_APIC_BASE bits from
   * here up are reserved, so a WRMSR that sets one #GPs (SDM Figure 11-5; KVM's kvm_apic_set_base
   * checks the guest's CPUID the same way). Default 52, the architectural maximum.
   */
  readonly physicalAddressBits?: number;
}

/** Serialisable handle on a local APIC's state, for `postMessage` to another worker. */
export interface LocalApicDescriptor {
  readonly kind: 'local-apic';
  readonly buffer: SharedArrayBuffer;
}

/** An RDMSR's outcome: the value, or a #GP the vCPU must inject. */
export type MsrReadResult = { readonly ok: true; readonly value: bigint } | { readonly ok: false };

/** Where a SIPI starts the processor (real mode). */
export interface SipiStart {
  readonly vector: number;
  readonly csSelector: number;
  readonly csBase: number;
  readonly ip: number;
}

/**
 * What `processInitSipi` asks the vCPU to do: `initReset` — reset its registers to their INIT
 * state (the APIC already did its part); `startup` — then start at this address.
 */
export interface InitSipiOutcome {
  readonly initReset: boolean;
  readonly startup: SipiStart | undefined;
}

/** Local interrupt sources with an LVT entry that no pin drives. */
export type LocalInterruptSource = 'thermal' | 'performance-counter';

/** Outcome of `waitForDoorbell`, as `Atomics.wait` reports it. */
export type DoorbellWaitResult = 'ok' | 'not-equal' | 'timed-out';

const NOTHING_TO_DO: InitSipiOutcome = Object.freeze({ initReset: false, startup: undefined });
const GENERAL_PROTECTION: MsrReadResult = Object.freeze({ ok: false });
const NO_VECTOR = -1;
/** `decodedOffset`'s answer for an address the xAPIC page does not decode. */
const NOT_DECODED = -1;
/** Internal result of a locked acknowledge: an ExtINT message is pending, the vector comes from the PIC's INTA. */
const ASK_THE_PIC = -2;

export class LocalApic implements ApicBusMember {
  readonly busIndex: number;
  /** The whole buffer: the state words and, after them, the doorbell. */
  private readonly all: Int32Array;
  /** The locked, snapshotted state words. */
  private readonly words: Int32Array;
  private readonly times: Float64Array;
  private readonly timer: ApicTimer;
  private readonly clock: Clock;
  private ipiSink: InterruptMessageSink | undefined;
  private eoiListener: EoiBroadcastListener | undefined;
  private extInt: ExtIntController | undefined;
  /** Outbox: an IPI a locked section decided to send. */
  private outgoingIpi: InterruptMessage | undefined = undefined;
  /** Outbox: a vector a locked section decided to EOI-broadcast. */
  private outgoingEoi = NO_VECTOR;

  private constructor(buffer: SharedArrayBuffer, wiring: LocalApicWiring) {
    this.all = new Int32Array(buffer);
    this.words = this.all.subarray(0, STATE_WORDS);
    this.times = new Float64Array(buffer, 0, buffer.byteLength >>> 3);
    this.timer = new ApicTimer(this.words, this.times);
    this.busIndex = this.read(Word.BusIndex);
    this.clock = wiring.clock;
    this.ipiSink = wiring.ipiSink;
    this.eoiListener = wiring.eoiListener;
    this.extInt = wiring.extInt;
  }

  /** A new local APIC in its RESET state. */
  static create(options: LocalApicOptions): LocalApic {
    const config = validateOptions(options);
    checkWiring(options);
    const all = allocateStateWords(MODEL_WORDS + DOORBELL_WORDS);
    all[Word.BusIndex] = config.busIndex;
    all[Word.X2apicId] = config.x2apicId | 0;
    all[Word.ConfigFlags] = config.flags;
    all[Word.ApicBusCycleNs] = config.apicBusCycleNs;
    all[Word.MinPeriodicNs] = config.minPeriodicTimerNs;
    new Float64Array(all.buffer, 0, all.buffer.byteLength >>> 3)[float64Slot(Word.TscHz)] = config.tscHz;
    const apic = new LocalApic(all.buffer as SharedArrayBuffer, options);
    apic.reset();
    return apic;
  }

  /** Another view over the same local APIC, e.g. in the worker that runs its vCPU. */
  static fromState(descriptor: LocalApicDescriptor, wiring: LocalApicWiring): LocalApic {
    checkDescriptor(descriptor);
    checkWiring(wiring);
    return new LocalApic(descriptor.buffer, wiring);
  }

  descriptor(): LocalApicDescriptor {
    return { kind: 'local-apic', buffer: this.all.buffer as SharedArrayBuffer };
  }

  setIpiSink(sink: InterruptMessageSink): void {
    check(typeof sink.deliver === 'function', ErrorCode.EINVAL, 'ipiSink must have deliver()');
    this.ipiSink = sink;
  }

  setEoiListener(listener: EoiBroadcastListener): void {
    check(typeof listener.endOfInterrupt === 'function', ErrorCode.EINVAL, 'eoiListener must have endOfInterrupt()');
    this.eoiListener = listener;
  }

  setExtIntController(controller: ExtIntController): void {
    check(
      typeof controller.outputLevel === 'function' && typeof controller.acknowledge === 'function',
      ErrorCode.EINVAL,
      'extInt must have outputLevel() and acknowledge()',
    );
    this.extInt = controller;
  }

  // -------------------------------------------------------------------------------------------
  // ApicBusMember: what the bus reads to route a message, and accept()
  // -------------------------------------------------------------------------------------------

  isHardwareEnabled(): boolean {
    return (Atomics.load(this.words, Word.ApicBaseLow) & APIC_BASE_ENABLE) !== 0;
  }

  isSoftwareEnabled(): boolean {
    return (Atomics.load(this.words, Word.SpuriousVector) & SVR_APIC_ENABLED) !== 0;
  }

  isX2apicMode(): boolean {
    return this.mode() === ApicMode.X2apic;
  }

  apicId(): number {
    const id = Atomics.load(this.words, Word.Id);
    return this.isX2apicMode() ? id >>> 0 : id >>> XAPIC_ID_SHIFT;
  }

  x2apicId(): number {
    return Atomics.load(this.words, Word.X2apicId) >>> 0;
  }

  logicalDestination(): number {
    return Atomics.load(this.words, Word.LogicalDestination) >>> 0;
  }

  destinationFormat(): number {
    return this.isX2apicMode() ? DFR_CLUSTER_MODEL : Atomics.load(this.words, Word.DestinationFormat) >>> 0;
  }

  processorPriority(): number {
    return withLock(this.words, () => this.computeProcessorPriority());
  }

  /**
   * Takes a message the bus matched to this APIC (SDM §11.6.1; x86-controllers.md §3.5).
   * Returns 1 taken, 0 coalesced with a pending one, -1 dropped.
   */
  accept(message: InterruptMessage): number {
    checkMessage(message);
    acquireLock(this.words);
    try {
      return this.acceptLocked(message);
    } finally {
      releaseLock(this.words);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Guest side: the xAPIC page
  // -------------------------------------------------------------------------------------------

  /**
   * The guest-physical address of the xAPIC page: IA32_APIC_BASE bits MAXPHYADDR−1:12 (SDM
   * §11.4.4). Each APIC has its own, which its software moves with WRMSR; whether the page is
   * decoded there is `decodesMmio`'s question.
   */
  mmioBase(): number {
    return apicBaseAddress(Atomics.load(this.words, Word.ApicBaseLow), Atomics.load(this.words, Word.ApicBaseHigh));
  }

  /**
   * Whether this APIC answers its own vCPU's access at guest-physical `address`: the address is in
   * the 4 KiB page at `mmioBase()`, and the page is decoded, which needs IA32_APIC_BASE EN = 1
   * (SDM §11.4.4: with EN = 0 the processor acts as one without an APIC) and xAPIC mode
   * (§11.12.1.2: in x2APIC mode the MMIO interface is not available). An access it does not
   * answer goes where it would on a machine without this APIC. The one rule of every MMIO path:
   * the vCPU's (chip-bus-devices.ts `readVcpuMmio`), the bus window at the default base, and
   * `mmioRead`/`mmioWrite`, whose page is the one at `mmioBase()`.
   */
  decodesMmio(address: number): boolean {
    return this.decodedOffset(address) !== NOT_DECODED;
  }

  /**
   * A guest read at guest-physical `address` by this APIC's vCPU: the register there when
   * `decodesMmio(address)`; otherwise the access is not the APIC's and, with nothing else there,
   * reads all ones (counted as `ignoredAccesses`). For a bus device that stands where the page
   * may or may not be (the default base).
   */
  mmioReadAt(address: number, size: number): number {
    const offset = this.decodedOffset(address);
    if (offset !== NOT_DECODED) return this.mmioRead(offset, size);
    checkMmioAccess(0, size, 0);
    count(this.words, Counter.ignoredAccesses);
    return allOnes(size);
  }

  /** A guest write at guest-physical `address`: as `mmioReadAt`; a write the page does not decode is dropped and counted. */
  mmioWriteAt(address: number, size: number, value: number): void {
    const offset = this.decodedOffset(address);
    if (offset !== NOT_DECODED) {
      this.mmioWrite(offset, size, value);
      return;
    }
    checkMmioAccess(0, size, value);
    count(this.words, Counter.ignoredAccesses);
  }

  /**
   * A guest read of the xAPIC page at `offset` (0–0xFFF) from its base. Only 4-byte reads at
   * 16-byte aligned offsets are decoded (SDM §11.4.1); others read 0 and are counted (L33). With
   * the page not decoded (x2APIC mode or hardware-disabled) the read sees all-ones, as on a bus
   * with nothing there (and as KVM's LAPIC_MMIO_HOLE quirk answers); an 8-byte read reports its
   * low 32 bits.
   */
  mmioRead(offset: number, size: number): number {
    checkMmioAccess(offset, size, 0);
    if (!decodesXapicPage(Atomics.load(this.words, Word.ApicBaseLow))) {
      count(this.words, Counter.ignoredAccesses);
      return allOnes(size);
    }
    if (!isDecodedXapicAccess(offset, size)) {
      count(this.words, Counter.ignoredAccesses);
      return 0;
    }
    const register = offset / XAPIC_REGISTER_STRIDE;
    const access = XAPIC_ACCESS[register] ?? RegisterAccess.None;
    if ((access & RegisterAccess.Read) !== 0) {
      return withLock(this.words, () => this.readRegister(register)) >>> 0;
    }
    if ((access & RegisterAccess.Write) !== 0) {
      count(this.words, Counter.writeOnlyReads);
      return 0;
    }
    this.reservedRegisterAccess();
    return 0;
  }

  /**
   * A guest write to the xAPIC page. Same decoding rules as `mmioRead`; writes to read-only
   * registers are dropped, to reserved offsets set ESR bit 7 (SDM §11.5.3).
   */
  mmioWrite(offset: number, size: number, value: number): void {
    checkMmioAccess(offset, size, value);
    if (!decodesXapicPage(Atomics.load(this.words, Word.ApicBaseLow)) || !isDecodedXapicAccess(offset, size)) {
      count(this.words, Counter.ignoredAccesses);
      return;
    }
    const register = offset / XAPIC_REGISTER_STRIDE;
    const access = XAPIC_ACCESS[register] ?? RegisterAccess.None;
    if ((access & RegisterAccess.Write) !== 0) {
      this.writeRegisterUnderLock(register, value | 0);
      this.flushOutbox();
    } else if ((access & RegisterAccess.Read) !== 0) {
      count(this.words, Counter.ignoredWrites);
    } else {
      this.reservedRegisterAccess();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Guest side: MSRs (IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC 0x800–0x8FF)
  // -------------------------------------------------------------------------------------------

  /** RDMSR of an MSR this APIC owns. A #GP the guest earned is `{ ok: false }`. */
  readMsr(index: number): MsrReadResult {
    checkMsrIndex(index);
    if (index === MSR_IA32_APIC_BASE) return { ok: true, value: this.apicBase() };
    if (index === MSR_IA32_TSC_DEADLINE) return this.readTscDeadline();
    const register = index - MSR_X2APIC_FIRST;
    if (!this.isX2apicMode() || ((X2APIC_ACCESS[register] ?? RegisterAccess.None) & RegisterAccess.Read) === 0) {
      return this.readFault();
    }
    const value = withLock(this.words, () =>
      register === ApicRegister.InterruptCommand
        ? joinHalves(this.read(Word.InterruptCommandLow), this.read(Word.InterruptCommandHigh))
        : BigInt(this.readRegister(register) >>> 0),
    );
    return { ok: true, value };
  }

  /** WRMSR of an MSR this APIC owns. Returns false for a #GP the vCPU must inject. */
  writeMsr(index: number, value: bigint): boolean {
    checkMsrIndex(index);
    checkU64(value, 'MSR value');
    if (index === MSR_IA32_APIC_BASE) return this.writeApicBase(value, false) || this.generalProtectionFault();
    if (index === MSR_IA32_TSC_DEADLINE) return this.writeTscDeadline(value);
    const register = index - MSR_X2APIC_FIRST;
    if (!this.isX2apicMode() || !isLegalX2apicWrite(register, value)) return this.generalProtectionFault();
    if (register === ApicRegister.InterruptCommand) {
      withLock(this.words, () => {
        this.writeInterruptCommand(lowHalf(value), highHalf(value));
      });
    } else {
      this.writeRegisterUnderLock(register, lowHalf(value));
    }
    this.flushOutbox();
    return true;
  }

  /** IA32_APIC_BASE as the guest reads it. */
  apicBase(): bigint {
    return withLock(this.words, () => joinHalves(this.read(Word.ApicBaseLow), this.read(Word.ApicBaseHigh)));
  }

  /**
   * A host-initiated IA32_APIC_BASE write (state set-up, KVM_SET_MSRS): like the guest's but
   * without the transition rules (SDM mode-transition #GPs are the guest's). Reserved bits or the
   * invalid mode EN = 0, EXTD = 1 throw EINVAL.
   */
  setApicBase(value: bigint): void {
    checkU64(value, 'APIC base');
    check(this.writeApicBase(value, true), ErrorCode.EINVAL, `APIC base 0x${value.toString(16)} has reserved bits or the invalid mode`);
  }

  // -------------------------------------------------------------------------------------------
  // Local interrupt inputs
  // -------------------------------------------------------------------------------------------

  /**
   * Drives a LINT pin: `level` is the logical level (asserted = true), as everywhere in this
   * package (x86-controllers.md §0), so the LVT polarity bit is not applied. The chip calls this
   * for LINT0 whenever the PIC's INT output changes, which also wakes a halted vCPU. With the
   * APIC hardware-disabled LINT0 is the CPU's INTR and LINT1 its NMI pin (SDM §11.4.3).
   */
  setLintLevel(pin: number, level: boolean): void {
    checkRange(pin, 0, 1, 'LINT pin');
    check(typeof level === 'boolean', ErrorCode.EINVAL, 'LINT level must be a boolean');
    withLock(this.words, () => {
      const bit = 1 << pin;
      const wasAsserted = (this.read(Word.LintLevels) & bit) !== 0;
      this.write(Word.LintLevels, level ? this.read(Word.LintLevels) | bit : this.read(Word.LintLevels) & ~bit);
      const rising = level && !wasAsserted;
      if (this.modeLocked() === ApicMode.Disabled) {
        if (rising && pin === 1) this.pendEvent(PendingEvent.Nmi, Counter.coalescedNmis);
        else if (rising) this.ringDoorbell();
        return;
      }
      const register = ApicRegister.LvtLint0 + pin;
      if (this.isLevelTriggeredLint(register)) {
        if (level) this.deliverLevelTriggeredLint();
      } else if (rising) {
        this.deliverLvt(register);
      }
    });
  }

  /** A thermal-sensor or performance-counter overflow event, delivered per its LVT entry. */
  signalLocalInterrupt(source: LocalInterruptSource): void {
    checkLocalInterruptSource(source);
    withLock(this.words, () => {
      if (source === 'thermal') {
        this.deliverLvt(ApicRegister.LvtThermal);
        return;
      }
      const lvtWord = this.lvtWord(ApicRegister.LvtPerformanceCounter);
      const wasMasked = isLvtMasked(this.read(lvtWord));
      this.deliverLvt(ApicRegister.LvtPerformanceCounter);
      // Intel processors set the LVTPC mask after delivering a PMI, so the handler must unmask it
      // (SDM §19.6.3 / §20.6.3 "Performance Monitoring Counter Interrupts"; x86-controllers.md §3.14).
      if (!wasMasked) this.write(lvtWord, this.read(lvtWord) | LVT_MASKED);
    });
  }

  // -------------------------------------------------------------------------------------------
  // vCPU side
  // -------------------------------------------------------------------------------------------

  /**
   * Whether the INTR line toward the vCPU is up: a PIC interrupt through LINT0/ExtINT or a fixed
   * interrupt whose class beats PPR (SDM §11.8.3). Inject only when the vCPU can take one (IF = 1,
   * interrupt window open), by `acknowledgeInterrupt`.
   */
  hasInterrupt(): boolean {
    if (this.picInterruptAvailable()) return true;
    acquireLock(this.words);
    try {
      return (this.read(Word.PendingEvents) & PendingEvent.ExtInt) !== 0 || this.deliverableVector() !== NO_VECTOR;
    } finally {
      releaseLock(this.words);
    }
  }

  /**
   * The INTA cycle. Returns, in priority order (x86-controllers.md §3.6, §6.31): the PIC's vector
   * when LINT0/ExtINT delivery is active and the PIC requests (the PIC's INTA; bypasses TPR, IRR
   * and ISR); else the highest deliverable fixed vector, moved from IRR to ISR; else the spurious
   * vector (SVR[7:0], ISR untouched, no EOI expected) when the highest request was masked by TPR
   * since INTR was raised (SDM §11.9); else NO_INTERRUPT. Wakes a halted vCPU.
   */
  acknowledgeInterrupt(): number {
    if (this.picInterruptAvailable()) return this.acknowledgePic();
    let vector: number;
    acquireLock(this.words);
    try {
      vector = (this.read(Word.PendingEvents) & PendingEvent.ExtInt) !== 0 ? ASK_THE_PIC : this.acknowledgeFixedLocked();
    } finally {
      releaseLock(this.words);
    }
    return vector === ASK_THE_PIC ? this.acknowledgePic() : vector;
  }

  /** Takes a pending NMI (true) for injection. Wakes a halted vCPU. */
  takeNmi(): boolean {
    return this.takeEvent(PendingEvent.Nmi);
  }

  /** Takes a pending SMI (true). Wakes a halted vCPU. */
  takeSmi(): boolean {
    return this.takeEvent(PendingEvent.Smi);
  }

  /** Whether a halted vCPU has something to wake for: an interrupt it may take, NMI, SMI, INIT or SIPI. */
  hasPendingEvents(interruptsEnabled: boolean): boolean {
    const processorEvents = PendingEvent.Nmi | PendingEvent.Smi | PendingEvent.Init | PendingEvent.Sipi;
    if (this.mayHavePendingEvent(processorEvents)) return true;
    return interruptsEnabled && this.hasInterrupt();
  }

  mpState(): MpState {
    return Atomics.load(this.words, Word.MpState) as MpState;
  }

  /**
   * Sets the MP state (KVM_SET_MP_STATE; the vCPU sets Halted on HLT). SipiReceived is stored as
   * InitReceived with the latched SIPI pending, as KVM does (x86-controllers.md §3.15).
   */
  setMpState(state: MpState): void {
    checkRange(state, MpState.Runnable, MpState.SipiReceived, 'MP state');
    withLock(this.words, () => {
      if (state === MpState.SipiReceived) {
        this.write(Word.MpState, MpState.InitReceived);
        this.write(Word.PendingEvents, this.read(Word.PendingEvents) | PendingEvent.Sipi);
      } else {
        this.write(Word.MpState, state);
      }
    });
    this.ringDoorbell();
  }

  /**
   * Applies a pending INIT and SIPI when the vCPU next checks for events (KVM
   * `kvm_apic_accept_events`; x86-controllers.md §3.15, §6.28). INIT: the APIC does its INIT
   * reset (§3.16) and the vCPU becomes runnable if it is the BSP (IA32_APIC_BASE.BSP), else waits
   * for SIPI. SIPI: starts a vCPU that waits for one, and is discarded in any other state. When
   * the vCPU cannot take INIT now (SMM, VMX root: `initBlocked`), INIT stays pending and a pending
   * SIPI is dropped.
   */
  processInitSipi(initBlocked = false): InitSipiOutcome {
    check(typeof initBlocked === 'boolean', ErrorCode.EINVAL, 'initBlocked must be a boolean');
    // Called on every injection; most of the time nothing is pending and the lock is not needed.
    if (!this.mayHavePendingEvent(PendingEvent.Init | PendingEvent.Sipi)) return NOTHING_TO_DO;
    return withLock(this.words, () => {
      if (initBlocked) {
        if (this.clearPendingEvent(PendingEvent.Sipi)) count(this.words, Counter.discardedSipis);
        return NOTHING_TO_DO;
      }
      const initReset = this.clearPendingEvent(PendingEvent.Init);
      if (initReset) this.initResetLocked();
      const startup = this.clearPendingEvent(PendingEvent.Sipi) ? this.startupLocked() : undefined;
      return initReset || startup !== undefined ? { initReset, startup } : NOTHING_TO_DO;
    });
  }

  /** RESET (power-on): every register to its RESET value, IA32_APIC_BASE and ID included (SDM §11.4.7.1; x86-controllers.md §3.16). */
  reset(): void {
    withLock(this.words, () => {
      const bsp = this.hasConfig(ConfigFlag.Bsp);
      this.write(Word.ApicBaseLow, APIC_BASE_DEFAULT_ADDRESS | APIC_BASE_ENABLE | (bsp ? APIC_BASE_BSP : 0));
      this.write(Word.ApicBaseHigh, 0);
      this.write(Word.Id, this.legacyXapicIdRegister());
      this.resetRegisters();
      this.write(Word.PendingEvents, 0);
      this.write(Word.SipiVector, 0);
      this.write(Word.MpState, bsp ? MpState.Runnable : MpState.Uninitialized);
    });
    this.ringDoorbell();
  }

  // -------------------------------------------------------------------------------------------
  // Timer driving
  // -------------------------------------------------------------------------------------------

  /**
   * When the caller should next call `processTimerExpiry` (a time on the clock), or undefined
   * when no expiry would deliver anything (stopped, or LVT timer masked: the count goes on and
   * is caught up when the LVT is next written).
   */
  nextTimerDeadlineNs(): number | undefined {
    return withLock(this.words, () =>
      isLvtMasked(this.read(this.lvtWord(ApicRegister.LvtTimer))) ? undefined : this.timer.expiryNs(),
    );
  }

  /** Delivers the timer expiries due at the clock's current time. */
  processTimerExpiry(): void {
    withLock(this.words, () => {
      this.collectTimerExpiries();
    });
  }

  /** The guest TSC now, as the TSC-deadline timer counts it (clock × tscHz; 0 without a TSC frequency). */
  guestTsc(): bigint {
    return this.timer.tscAt(this.clock.nowNs());
  }

  // -------------------------------------------------------------------------------------------
  // Doorbell: how a sleeping vCPU thread learns that something may be deliverable
  // -------------------------------------------------------------------------------------------

  /** The doorbell generation; it changes whenever an interrupt, NMI, SMI, INIT or SIPI may have become deliverable. */
  doorbellGeneration(): number {
    return Atomics.load(this.all, DOORBELL_GENERATION);
  }

  /**
   * Sleeps until the doorbell generation differs from `generation` or `timeoutMs` passes
   * (`Atomics.wait`; only where the thread may block). Registers as a waiter so that rings
   * notify only when someone sleeps.
   */
  waitForDoorbell(generation: number, timeoutMs: number): DoorbellWaitResult {
    check(Number.isInteger(generation), ErrorCode.EINVAL, 'generation must be an integer');
    check(timeoutMs >= 0, ErrorCode.EINVAL, 'timeoutMs must be non-negative');
    Atomics.add(this.all, DOORBELL_WAITERS, 1);
    try {
      return Atomics.wait(this.all, DOORBELL_GENERATION, generation, timeoutMs);
    } finally {
      Atomics.sub(this.all, DOORBELL_WAITERS, 1);
    }
  }

  /** `waitForDoorbell` without blocking the thread (Atomics.waitAsync); any thread may use it. */
  async waitForDoorbellAsync(generation: number, timeoutMs: number): Promise<DoorbellWaitResult> {
    check(Number.isInteger(generation), ErrorCode.EINVAL, 'generation must be an integer');
    check(timeoutMs >= 0, ErrorCode.EINVAL, 'timeoutMs must be non-negative');
    Atomics.add(this.all, DOORBELL_WAITERS, 1);
    try {
      return await waitAsyncKeepingAlive(this.all, DOORBELL_GENERATION, generation, timeoutMs);
    } finally {
      Atomics.sub(this.all, DOORBELL_WAITERS, 1);
    }
  }

  /**
   * Rings the doorbell and changes nothing else: a vCPU sleeping in `waitForDoorbell` wakes and
   * re-checks its events (a chip's kick, e.g. after it queued work for that vCPU). The MP state is
   * left to the vCPU.
   */
  wake(): void {
    this.ringDoorbell();
  }

  /**
   * The vCPU thread `threadId` is about to run guest code (KVM_RUN), where it cannot see the
   * doorbell: until `leaveGuest`, a ring also wakes that thread (`wakeRunningThread`). Returns
   * false, having published nothing, when the doorbell rang since `generation` (read before the
   * vCPU last looked at its events): then look again instead of running. Published first and
   * checked after, against a ring that bumps first and looks after: one of the two always sees
   * the other, so no wake-up falls between them.
   */
  enterGuest(threadId: number, generation: number): boolean {
    Atomics.store(this.all, DOORBELL_RUNNING_THREAD, threadId);
    if (Atomics.load(this.all, DOORBELL_GENERATION) === generation) return true;
    Atomics.store(this.all, DOORBELL_RUNNING_THREAD, 0);
    return false;
  }

  /** The vCPU thread is back from guest code: rings no longer wake it. */
  leaveGuest(): void {
    Atomics.store(this.all, DOORBELL_RUNNING_THREAD, 0);
  }

  // -------------------------------------------------------------------------------------------
  // Observability, snapshots
  // -------------------------------------------------------------------------------------------

  irr(vector: number): boolean {
    return this.testBank(Word.InterruptRequest, vector);
  }

  isr(vector: number): boolean {
    return this.testBank(Word.InService, vector);
  }

  tmr(vector: number): boolean {
    return this.testBank(Word.TriggerMode, vector);
  }

  counters(): Readonly<Record<CounterName, number>> {
    const result = {} as Record<CounterName, number>;
    for (const name of COUNTER_NAMES) result[name] = this.counter(name);
    return result;
  }

  /** One counter, without building the whole record (for observers that poll on hot paths). */
  counter(name: CounterName): number {
    return Atomics.load(this.words, Counter[name]) >>> 0;
  }

  /**
   * The state as versioned bytes. The timer expiry is saved relative to now, so a restore on
   * another clock resumes the count where it stood (as KVM restarts the timer from the saved
   * current count). The doorbell is not state and is not saved.
   */
  snapshot(): Uint8Array {
    return withLock(this.words, () => {
      const copy = this.words.slice();
      shiftTime(copy, Word.TimerExpiryNs, -this.clock.nowNs());
      return encodeSnapshot(SNAPSHOT_KIND, SNAPSHOT_VERSION, copy);
    });
  }

  /**
   * Restores `snapshot()` bytes of this same APIC (same bus index, IDs and options). A truncated,
   * foreign, corrupted or impossible snapshot throws EINVAL and changes nothing.
   */
  restore(bytes: Uint8Array): void {
    const nowNs = this.clock.nowNs();
    restoreSnapshot(this.words, bytes, SNAPSHOT_KIND, SNAPSHOT_VERSION, (payload) => {
      validateSnapshotPayload(payload, this.words);
      shiftTime(payload, Word.TimerExpiryNs - LOCK_WORDS, nowNs);
    });
    this.ringDoorbell();
  }

  // ===========================================================================================
  // Internals. Methods named *Locked, and everything they call, run with the lock held.
  // ===========================================================================================

  /**
   * `address`'s offset in the xAPIC page, or NOT_DECODED (`decodesMmio`). Two atomic loads without
   * the lock: only this vCPU's own WRMSR (on the thread asking) or a host set-up changes the base.
   */
  private decodedOffset(address: number): number {
    const low = Atomics.load(this.words, Word.ApicBaseLow);
    if (!decodesXapicPage(low)) return NOT_DECODED;
    const offset = address - apicBaseAddress(low, Atomics.load(this.words, Word.ApicBaseHigh));
    return offset >= 0 && offset < XAPIC_PAGE_BYTES ? offset : NOT_DECODED;
  }

  private read(index: number): number {
    return this.words[index] ?? 0;
  }

  private write(index: number, value: number): void {
    this.words[index] = value;
  }

  /** The mode, for callers without the lock. */
  private mode(): ApicMode {
    return apicModeOf(Atomics.load(this.words, Word.ApicBaseLow));
  }

  /** The mode, read plainly under the lock that every IA32_APIC_BASE writer holds. */
  private modeLocked(): ApicMode {
    return apicModeOf(this.read(Word.ApicBaseLow));
  }

  /** SVR bit 8, read under the lock that every SVR writer holds. */
  private isSoftwareEnabledLocked(): boolean {
    return (this.read(Word.SpuriousVector) & SVR_APIC_ENABLED) !== 0;
  }

  private lvtWord(register: number): number {
    return Word.LvtFirst + register - ApicRegister.LvtTimer;
  }

  private hasConfig(flag: number): boolean {
    return (this.read(Word.ConfigFlags) & flag) !== 0;
  }

  private testBank(bank: number, vector: number): boolean {
    checkVector(vector);
    return (Atomics.load(this.words, bank + (vector >>> 5)) & (1 << (vector & 31))) !== 0;
  }

  private ringDoorbell(): void {
    Atomics.add(this.all, DOORBELL_GENERATION, 1);
    if (Atomics.load(this.all, DOORBELL_WAITERS) !== 0) Atomics.notify(this.all, DOORBELL_GENERATION);
    const runningThread = Atomics.load(this.all, DOORBELL_RUNNING_THREAD);
    if (runningThread !== 0) wakeRunningThread(runningThread);
  }

  /** The vCPU takes an event: a halted one is running again. */
  private wakeFromHaltLocked(): void {
    if (this.read(Word.MpState) === MpState.Halted) this.write(Word.MpState, MpState.Runnable);
  }

  /** Counts a #GP given to the guest; returns WRMSR's way of reporting it. */
  private generalProtectionFault(): false {
    count(this.words, Counter.generalProtectionFaults);
    return false;
  }

  /** RDMSR's way of reporting a #GP. */
  private readFault(): MsrReadResult {
    this.generalProtectionFault();
    return GENERAL_PROTECTION;
  }

  private reservedRegisterAccess(): void {
    count(this.words, Counter.reservedRegisterAccesses);
    withLock(this.words, () => {
      this.detectError(ESR_ILLEGAL_REGISTER_ADDRESS);
    });
  }

  /** Makes the calls a locked section left in the outbox. Runs unlocked. */
  private flushOutbox(): void {
    const eoiVector = this.outgoingEoi;
    if (eoiVector !== NO_VECTOR) {
      this.outgoingEoi = NO_VECTOR;
      // Only vectors accepted level-triggered (TMR set) are broadcast.
      this.eoiListener?.endOfInterrupt(eoiVector, TriggerMode.Level);
    }
    const ipi = this.outgoingIpi;
    if (ipi !== undefined) {
      this.outgoingIpi = undefined;
      if (this.ipiSink === undefined) count(this.words, Counter.undeliverableIpis);
      else this.ipiSink.deliver(ipi);
    }
  }

  // --- accepting ------------------------------------------------------------------------------

  private acceptLocked(message: InterruptMessage): number {
    if (this.modeLocked() === ApicMode.Disabled) {
      // Off the bus: the bus should not have matched it (SDM §11.4.3).
      count(this.words, Counter.droppedWhileDisabled);
      return -1;
    }
    switch (message.deliveryMode) {
      case DeliveryMode.Fixed:
      case DeliveryMode.LowestPriority:
        if (isLevelDeassert(message)) return this.dropDeassert();
        return this.acceptFixed(message.vector, message.triggerMode === TriggerMode.Level);
      case DeliveryMode.Smi:
        return this.pendEvent(PendingEvent.Smi, Counter.coalescedSmis);
      case DeliveryMode.Nmi:
        return this.pendEvent(PendingEvent.Nmi, Counter.coalescedNmis);
      case DeliveryMode.Init:
        // INIT level de-assert (trigger level, level 0) only resynchronises arbitration IDs (L18).
        if (isLevelDeassert(message)) return this.dropDeassert();
        return this.acceptInit();
      case DeliveryMode.StartUp:
        return this.acceptSipi(message.vector);
      case DeliveryMode.ExtInt:
        return this.acceptExtIntMessage();
      default:
        // Remote read (obsolete since the 82489DX): nothing to do.
        count(this.words, Counter.unsupportedMessages);
        return -1;
    }
  }

  private dropDeassert(): number {
    count(this.words, Counter.droppedDeasserts);
    return -1;
  }

  /**
   * A fixed interrupt into IRR (SDM §11.5.2, §11.8.4; x86-controllers.md §3.5): dropped while
   * software-disabled (KVM; recommended); TMR follows the trigger mode on every accept, even when
   * IRR already holds the vector (§6.32).
   *
   * Vectors 0–15: the SDM says they are never set in IRR and raise "receive illegal vector"
   * (§11.5.3). The spec recommends accepting them as KVM/QEMU/crosvm do; we follow the datasheet.
   */
  private acceptFixed(vector: number, levelTriggered: boolean): number {
    if (!this.isSoftwareEnabledLocked()) {
      count(this.words, Counter.droppedWhileDisabled);
      return -1;
    }
    if (vector < FIRST_LEGAL_VECTOR) {
      count(this.words, Counter.illegalVectors);
      this.detectError(ESR_RECEIVE_ILLEGAL_VECTOR);
      return -1;
    }
    if (levelTriggered) setVector(this.words, Word.TriggerMode, vector);
    else clearVector(this.words, Word.TriggerMode, vector);
    if (testVector(this.words, Word.InterruptRequest, vector)) {
      count(this.words, Counter.coalescedInterrupts);
      return 0;
    }
    setVector(this.words, Word.InterruptRequest, vector);
    this.ringDoorbell();
    return 1;
  }

  /** Latches a processor event (NMI, SMI, INIT, ExtINT); a second one before it is taken coalesces. */
  private pendEvent(event: number, coalescedCounter: number): number {
    const pending = this.read(Word.PendingEvents);
    if ((pending & event) !== 0) {
      count(this.words, coalescedCounter);
      return 0;
    }
    this.write(Word.PendingEvents, pending | event);
    this.ringDoorbell();
    return 1;
  }

  private clearPendingEvent(event: number): boolean {
    const pending = this.read(Word.PendingEvents);
    this.write(Word.PendingEvents, pending & ~event);
    return (pending & event) !== 0;
  }

  /** INIT replaces a pending SIPI (KVM `__apic_accept_irq`; x86-controllers.md §6.28, L20). */
  private acceptInit(): number {
    if (this.clearPendingEvent(PendingEvent.Sipi)) count(this.words, Counter.discardedSipis);
    return this.pendEvent(PendingEvent.Init, Counter.coalescedInits);
  }

  /** SIPI: latch the vector; a later SIPI before processing replaces an earlier one, which counts as discarded. */
  private acceptSipi(vector: number): number {
    this.write(Word.SipiVector, vector);
    return this.pendEvent(PendingEvent.Sipi, Counter.discardedSipis);
  }

  /**
   * An ExtINT message (from an IOAPIC pin in virtual-wire mode): the vector will come from the
   * PIC's INTA (x86-controllers.md §3.5, I25). A maskable interrupt, so a software-disabled APIC
   * drops it like a fixed one (SDM §11.4.7.2 lists only INIT, NMI, SMI and SIPI as still taken).
   */
  private acceptExtIntMessage(): number {
    if (!this.isSoftwareEnabledLocked()) {
      count(this.words, Counter.droppedWhileDisabled);
      return -1;
    }
    if (this.extInt === undefined) {
      count(this.words, Counter.unsupportedMessages);
      return -1;
    }
    return this.pendEvent(PendingEvent.ExtInt, Counter.coalescedInterrupts);
  }

  // --- local vector table ---------------------------------------------------------------------

  /** Delivers one event of a local source per its LVT entry (SDM §11.5.1). */
  private deliverLvt(register: number): number {
    const lvt = this.read(this.lvtWord(register));
    if (isLvtMasked(lvt)) {
      count(this.words, Counter.maskedLocalInterrupts);
      return -1;
    }
    switch (lvtDeliveryMode(lvt)) {
      case LvtDeliveryMode.Fixed:
        return this.acceptFixed(lvtVector(lvt), this.isLevelTriggeredLint(register));
      case LvtDeliveryMode.Smi:
        return this.pendEvent(PendingEvent.Smi, Counter.coalescedSmis);
      case LvtDeliveryMode.Nmi:
        return this.pendEvent(PendingEvent.Nmi, Counter.coalescedNmis);
      case LvtDeliveryMode.Init:
        return this.acceptInit();
      case LvtDeliveryMode.ExtInt:
        // The vector comes from the PIC's INTA; hasInterrupt() looks at the PIC. ExtINT is not
        // supported on the thermal and performance-counter entries (SDM Figure 11-8).
        if (register === ApicRegister.LvtLint0 || register === ApicRegister.LvtLint1) {
          this.ringDoorbell();
          return 1;
        }
        count(this.words, Counter.unsupportedMessages);
        return -1;
      default:
        count(this.words, Counter.unsupportedMessages);
        return -1;
    }
  }

  /**
   * Only LINT0 can be level-triggered, and only in fixed mode: NMI, SMI and INIT are always edge,
   * ExtINT always level through the PIC, and LINT1 does not support level (SDM §11.5.1).
   */
  private isLevelTriggeredLint(register: number): boolean {
    if (register !== ApicRegister.LvtLint0) return false;
    const lvt = this.read(this.lvtWord(register));
    return (lvt & LVT_TRIGGER_LEVEL) !== 0 && lvtDeliveryMode(lvt) === LvtDeliveryMode.Fixed;
  }

  /**
   * A level-triggered fixed LINT0 that is asserted: delivers unless the previous one is still in
   * service (remote IRR, cleared by its EOI, SDM §11.5.1). The level is held, not lost.
   */
  private deliverLevelTriggeredLint(): void {
    const lvtWord = this.lvtWord(ApicRegister.LvtLint0);
    if ((this.read(lvtWord) & LVT_REMOTE_IRR) !== 0) return;
    if (this.deliverLvt(ApicRegister.LvtLint0) >= 0) this.write(lvtWord, this.read(lvtWord) | LVT_REMOTE_IRR);
  }

  /** An EOI of LINT0's vector ends its remote IRR; a line still asserted delivers again. */
  private completeLevelTriggeredLint(vector: number): void {
    const lvtWord = this.lvtWord(ApicRegister.LvtLint0);
    const lvt = this.read(lvtWord);
    if ((lvt & LVT_REMOTE_IRR) === 0 || lvtVector(lvt) !== vector) return;
    this.write(lvtWord, lvt & ~LVT_REMOTE_IRR);
    if ((this.read(Word.LintLevels) & 1) !== 0) this.deliverLevelTriggeredLint();
  }

  /**
   * Logs an error in the ESR accumulator and raises the LVT Error interrupt (SDM §11.5.3). An
   * error vector below 16 cannot be delivered either: it only adds "receive illegal vector".
   */
  private detectError(errorBit: number): void {
    this.write(Word.ErrorsDetected, this.read(Word.ErrorsDetected) | errorBit);
    const lvt = this.read(this.lvtWord(ApicRegister.LvtError));
    if (isLvtMasked(lvt)) {
      count(this.words, Counter.maskedLocalInterrupts);
    } else if (lvtVector(lvt) < FIRST_LEGAL_VECTOR) {
      count(this.words, Counter.illegalVectors);
      this.write(Word.ErrorsDetected, this.read(Word.ErrorsDetected) | ESR_RECEIVE_ILLEGAL_VECTOR);
    } else {
      this.acceptFixed(lvtVector(lvt), false);
    }
  }

  // --- priority and acknowledge ---------------------------------------------------------------

  /** PPR = TPR when TPR's class ≥ the in-service class, else the in-service class (SDM §11.8.3.1; TPR[3:0] variant). */
  private computeProcessorPriority(): number {
    const taskPriority = this.read(Word.TaskPriority);
    const inServiceClass = this.inServiceClass();
    return (taskPriority & PRIORITY_CLASS_MASK) >= inServiceClass ? taskPriority : inServiceClass;
  }

  private inServiceClass(): number {
    const inService = highestVector(this.words, Word.InService);
    return inService === NO_VECTOR ? 0 : inService & PRIORITY_CLASS_MASK;
  }

  /** The highest IRR vector if its class beats PPR and the APIC is software-enabled (SDM §11.8.3), else NO_VECTOR. */
  private deliverableVector(): number {
    if (!this.isSoftwareEnabledLocked()) return NO_VECTOR;
    const requested = highestVector(this.words, Word.InterruptRequest);
    if (requested === NO_VECTOR) return NO_VECTOR;
    return (requested & PRIORITY_CLASS_MASK) > (this.computeProcessorPriority() & PRIORITY_CLASS_MASK) ? requested : NO_VECTOR;
  }

  private acknowledgeFixedLocked(): number {
    const vector = this.deliverableVector();
    if (vector !== NO_VECTOR) {
      clearVector(this.words, Word.InterruptRequest, vector);
      setVector(this.words, Word.InService, vector);
      this.wakeFromHaltLocked();
      return vector;
    }
    if (this.isRequestMaskedByTaskPriority()) {
      count(this.words, Counter.spuriousInterrupts);
      this.wakeFromHaltLocked();
      return this.read(Word.SpuriousVector) & SVR_VECTOR_MASK;
    }
    return NO_INTERRUPT;
  }

  /** The highest request would beat the in-service class but not TPR: the INTA race that yields the spurious vector. */
  private isRequestMaskedByTaskPriority(): boolean {
    if (!this.isSoftwareEnabledLocked()) return false;
    const requested = highestVector(this.words, Word.InterruptRequest);
    return requested !== NO_VECTOR && (requested & PRIORITY_CLASS_MASK) > this.inServiceClass();
  }

  /** LINT0's virtual wire is up: EN = 0 (LINT0 is INTR) or LVT LINT0 unmasked in ExtINT mode (KVM `kvm_apic_accept_pic_intr`). */
  private acceptsPicInterrupts(): boolean {
    if (this.mode() === ApicMode.Disabled) return true;
    const lint0 = Atomics.load(this.words, this.lvtWord(ApicRegister.LvtLint0));
    return !isLvtMasked(lint0) && lvtDeliveryMode(lint0) === LvtDeliveryMode.ExtInt;
  }

  /** Runs unlocked: asks the PIC. */
  private picInterruptAvailable(): boolean {
    return this.extInt !== undefined && this.acceptsPicInterrupts() && this.extInt.outputLevel();
  }

  /** Runs unlocked: the PIC's INTA cycle (an ExtINT message pending is consumed with it). */
  private acknowledgePic(): number {
    if (this.extInt === undefined) return NO_INTERRUPT;
    withLock(this.words, () => {
      this.clearPendingEvent(PendingEvent.ExtInt);
      this.wakeFromHaltLocked();
    });
    return this.extInt.acknowledge();
  }

  private takeEvent(event: number): boolean {
    if (!this.mayHavePendingEvent(event)) return false;
    return withLock(this.words, () => {
      const taken = this.clearPendingEvent(event);
      if (taken) this.wakeFromHaltLocked();
      return taken;
    });
  }

  /**
   * A lock-free look at the pending-event word. A bit set by another thread just after the look is
   * not lost: setting it rings the doorbell, so the vCPU looks again.
   */
  private mayHavePendingEvent(events: number): boolean {
    return (Atomics.load(this.words, Word.PendingEvents) & events) !== 0;
  }

  // --- EOI ------------------------------------------------------------------------------------

  /**
   * EOI (SDM §11.8.5; x86-controllers.md §3.7): retire the highest in-service vector; if it was
   * accepted level-triggered (TMR) and EOI-broadcast suppression is off, broadcast its EOI to the
   * IOAPIC (after unlocking). With nothing in service the write is ignored (§6.23).
   */
  private endOfInterrupt(): void {
    const vector = highestVector(this.words, Word.InService);
    if (vector === NO_VECTOR) {
      count(this.words, Counter.ignoredEois);
      return;
    }
    clearVector(this.words, Word.InService, vector);
    this.completeLevelTriggeredLint(vector);
    const suppressed = (this.read(Word.SpuriousVector) & SVR_SUPPRESS_EOI_BROADCAST) !== 0;
    if (testVector(this.words, Word.TriggerMode, vector) && !suppressed) this.outgoingEoi = vector;
    // A request waiting behind the retired vector may now be deliverable.
    if (highestVector(this.words, Word.InterruptRequest) !== NO_VECTOR) this.ringDoorbell();
  }

  // --- register reads and writes --------------------------------------------------------------

  /** `writeRegister` with the lock taken and released here. */
  private writeRegisterUnderLock(register: number, value: number): void {
    acquireLock(this.words);
    try {
      this.writeRegister(register, value);
    } finally {
      releaseLock(this.words);
    }
  }

  /** The 32-bit value of a readable register (the access tables have been checked). */
  private readRegister(register: number): number {
    switch (register) {
      case ApicRegister.Id:
        return this.read(Word.Id);
      case ApicRegister.Version:
        return this.version();
      case ApicRegister.TaskPriority:
        return this.read(Word.TaskPriority);
      case ApicRegister.ArbitrationPriority:
      case ApicRegister.RemoteRead:
        // APR reads 0 as in KVM and QEMU; remote read is not implemented (x86-controllers.md §3.2).
        return 0;
      case ApicRegister.ProcessorPriority:
        return this.computeProcessorPriority();
      case ApicRegister.LogicalDestination:
        return this.read(Word.LogicalDestination);
      case ApicRegister.DestinationFormat:
        return this.read(Word.DestinationFormat);
      case ApicRegister.SpuriousVector:
        return this.read(Word.SpuriousVector);
      case ApicRegister.ErrorStatus:
        return this.read(Word.ErrorStatus);
      case ApicRegister.InterruptCommand:
        return this.read(Word.InterruptCommandLow);
      case ApicRegister.InterruptCommandHigh:
        return this.read(Word.InterruptCommandHigh);
      case ApicRegister.TimerInitialCount:
        return this.read(Word.TimerInitialCount);
      case ApicRegister.TimerCurrentCount:
        return this.timer.currentCount(this.clock.nowNs());
      case ApicRegister.TimerDivideConfiguration:
        return this.read(Word.TimerDivide);
      default:
        return register < ApicRegister.LvtTimer
          ? this.read(Word.InService + register - ApicRegister.InServiceFirst)
          : this.read(this.lvtWord(register));
    }
  }

  /** A write to a writable register (the access tables and x2APIC #GP rules have been checked). */
  private writeRegister(register: number, value: number): void {
    switch (register) {
      case ApicRegister.Id:
        // xAPIC only: KVM and QEMU let the guest change the ID (x86-controllers.md §3.2).
        this.writeMasked(Word.Id, value, XAPIC_HIGH_BYTE_MASK);
        return;
      case ApicRegister.TaskPriority:
        this.writeMasked(Word.TaskPriority, value, TPR_MASK);
        this.ringDoorbell();
        return;
      case ApicRegister.EndOfInterrupt:
        this.endOfInterrupt();
        return;
      case ApicRegister.LogicalDestination:
        this.writeMasked(Word.LogicalDestination, value, XAPIC_HIGH_BYTE_MASK);
        return;
      case ApicRegister.DestinationFormat:
        this.write(Word.DestinationFormat, (value & DFR_MODEL_MASK) | DFR_RESERVED_ONES);
        return;
      case ApicRegister.SpuriousVector:
        this.writeSpuriousVector(value);
        return;
      case ApicRegister.ErrorStatus:
        this.latchErrors();
        return;
      case ApicRegister.InterruptCommand:
        this.writeInterruptCommand(value, this.read(Word.InterruptCommandHigh));
        return;
      case ApicRegister.InterruptCommandHigh:
        this.writeMasked(Word.InterruptCommandHigh, value, XAPIC_HIGH_BYTE_MASK);
        return;
      case ApicRegister.TimerInitialCount:
        this.writeInitialCount(value);
        return;
      case ApicRegister.TimerDivideConfiguration:
        this.writeDivideConfiguration(value);
        return;
      case ApicRegister.SelfIpi:
        this.sendSelfIpi(value & VECTOR_MASK);
        return;
      default:
        this.writeLvt(register, value);
    }
  }

  private writeMasked(index: number, value: number, writable: number): void {
    if ((value & ~writable) !== 0) count(this.words, Counter.reservedBitWrites);
    this.write(index, value & writable);
  }

  /** Version: 0x14, six LVT entries, bit 24 iff directed EOI is offered (x86-controllers.md §3.7 Recommendation). */
  private version(): number {
    return APIC_VERSION | (APIC_MAX_LVT_ENTRY << 16) | (this.hasConfig(ConfigFlag.DirectedEoi) ? VERSION_DIRECTED_EOI : 0);
  }

  /**
   * SVR (SDM §11.9): bit 12 is writable only when Version bit 24 is set. Clearing bit 8
   * software-disables the APIC: every LVT entry gets masked, and stays masked until rewritten
   * (SDM §11.4.7.2; §6.24). Timer expiries already due are delivered first.
   */
  private writeSpuriousVector(value: number): void {
    const writable = svrWritableMask(this.hasConfig(ConfigFlag.DirectedEoi));
    const wasEnabled = this.isSoftwareEnabledLocked();
    const enabling = (value & SVR_APIC_ENABLED) !== 0;
    if (wasEnabled && !enabling) this.collectTimerExpiries();
    this.writeMasked(Word.SpuriousVector, value, writable);
    if (!enabling) this.maskAllLvts();
    else if (!wasEnabled) this.ringDoorbell();
  }

  private maskAllLvts(): void {
    for (const register of LVT_REGISTERS) {
      const lvtWord = this.lvtWord(register);
      this.write(lvtWord, this.read(lvtWord) | LVT_MASKED);
    }
  }

  /** ESR write: the errors detected since the previous write become readable, and the log restarts (SDM §11.5.3). */
  private latchErrors(): void {
    this.write(Word.ErrorStatus, this.read(Word.ErrorsDetected));
    this.write(Word.ErrorsDetected, 0);
  }

  /**
   * An LVT entry write (SDM §11.5.1): the writable fields of that entry; delivery status and
   * remote IRR stay read-only (x86-controllers.md §3.3); masked while software-disabled.
   */
  private writeLvt(register: number, value: number): void {
    const lvtWord = this.lvtWord(register);
    const writable = lvtWritableMask(register, this.hasConfig(ConfigFlag.TscDeadline));
    if ((value & ~(writable | lvtReadOnlyMask(register))) !== 0) count(this.words, Counter.reservedBitWrites);
    let entry = (value & writable) | (this.read(lvtWord) & LVT_REMOTE_IRR);
    if (!this.isSoftwareEnabledLocked()) entry |= LVT_MASKED;
    if (register === ApicRegister.LvtTimer) {
      this.writeLvtTimer(entry);
      return;
    }
    this.write(lvtWord, entry);
    if (register === ApicRegister.LvtLint0) this.reevaluateLint0();
  }

  /** A new LINT0 entry: an asserted level-triggered input delivers now; an ExtINT change may open the PIC's path. */
  private reevaluateLint0(): void {
    if (this.isLevelTriggeredLint(ApicRegister.LvtLint0) && (this.read(Word.LintLevels) & 1) !== 0) {
      this.deliverLevelTriggeredLint();
    }
    this.ringDoorbell();
  }

  /**
   * LVT timer: the reserved mode 11 keeps the previous mode (counted); entering or leaving
   * TSC-deadline mode stops the timer (apic-timer.ts `changeMode`). Expiries due under the old
   * entry are delivered (or counted masked) first, so an unmask delivers from the next expiry on
   * (L29).
   */
  private writeLvtTimer(entry: number): void {
    this.collectTimerExpiries();
    const oldMode = this.timer.mode();
    let newEntry = entry;
    if (lvtTimerMode(entry) === TimerMode.Reserved) {
      count(this.words, Counter.reservedBitWrites);
      newEntry = (entry & ~(LVT_TIMER_MODE_MASK << LVT_TIMER_MODE_SHIFT)) | (oldMode << LVT_TIMER_MODE_SHIFT);
    }
    this.write(this.lvtWord(ApicRegister.LvtTimer), newEntry);
    this.timer.changeMode(oldMode, lvtTimerMode(newEntry));
  }

  /** TMICT: (re)starts the count; ignored in TSC-deadline mode (SDM §11.5.4.1; §6.25). */
  private writeInitialCount(value: number): void {
    if (this.timer.mode() === TimerMode.TscDeadline) {
      count(this.words, Counter.ignoredWrites);
      return;
    }
    this.collectTimerExpiries();
    this.write(Word.TimerInitialCount, value);
    this.timer.restart(this.clock.nowNs());
  }

  /** TDCR: bits 0, 1, 3; a running count is rescaled to the new divisor (L31). */
  private writeDivideConfiguration(value: number): void {
    this.collectTimerExpiries();
    const oldDivide = this.read(Word.TimerDivide);
    this.writeMasked(Word.TimerDivide, value, TDCR_WRITABLE);
    this.timer.changeDivisor(this.clock.nowNs(), oldDivide);
  }

  /** Delivers the timer expiries due now: one interrupt however many expired (§6.26), the rest counted as coalesced. */
  private collectTimerExpiries(): void {
    const expiries = this.timer.collectExpiries(this.clock.nowNs());
    if (expiries === 0) return;
    if (expiries > 1) count(this.words, Counter.coalescedTimerTicks, expiries - 1);
    this.deliverLvt(ApicRegister.LvtTimer);
  }

  private readTscDeadline(): MsrReadResult {
    if (!this.hasConfig(ConfigFlag.TscDeadline)) return this.readFault();
    // Reads 0 outside TSC-deadline mode and after the deadline fired (SDM §11.5.4.1).
    const value = withLock(this.words, () => (this.timer.mode() === TimerMode.TscDeadline ? this.timer.tscDeadline() : 0n));
    return { ok: true, value };
  }

  /**
   * IA32_TSC_DEADLINE: #GP when the CPU has no TSC-deadline timer; ignored outside TSC-deadline
   * mode; otherwise arms (0 disarms), and a deadline already passed fires at once.
   */
  private writeTscDeadline(value: bigint): boolean {
    if (!this.hasConfig(ConfigFlag.TscDeadline)) return this.generalProtectionFault();
    withLock(this.words, () => {
      if (this.timer.mode() !== TimerMode.TscDeadline) {
        count(this.words, Counter.ignoredWrites);
        return;
      }
      this.timer.writeTscDeadline(value);
      this.collectTimerExpiries();
    });
    return true;
  }

  // --- IPIs -----------------------------------------------------------------------------------

  /**
   * An ICR write (SDM §11.6.1): stores it (delivery status always reads 0: delivery is
   * immediate) and leaves the IPI in the outbox. Fixed and lowest-priority vectors 0–15 are not
   * sent and set ESR "send illegal vector" (SDM §11.5.3).
   *
   * Delivery mode 111 is reserved in the SDM's ICR table; we send it as an ExtINT message, as
   * the issue asks, and a receiving APIC takes the vector from its PIC like an IOAPIC ExtINT.
   */
  private writeInterruptCommand(low: number, high: number): void {
    if ((low & ICR_RESERVED) !== 0) count(this.words, Counter.reservedBitWrites);
    const command = low & ICR_WRITABLE;
    this.write(Word.InterruptCommandLow, command);
    this.write(Word.InterruptCommandHigh, high);
    const deliveryMode = ((command >>> ICR_DELIVERY_MODE_SHIFT) & ICR_DELIVERY_MODE_MASK) as DeliveryMode;
    const vector = command & VECTOR_MASK;
    if (isFixedDelivery(deliveryMode) && vector < FIRST_LEGAL_VECTOR) {
      count(this.words, Counter.illegalVectors);
      this.detectError(ESR_SEND_ILLEGAL_VECTOR);
      return;
    }
    this.outgoingIpi = interruptMessage({
      destination: this.modeLocked() === ApicMode.X2apic ? high >>> 0 : high >>> XAPIC_ID_SHIFT,
      destinationMode: (command & ICR_DESTINATION_LOGICAL) !== 0 ? DestinationMode.Logical : DestinationMode.Physical,
      deliveryMode,
      vector,
      triggerMode: (command & ICR_TRIGGER_LEVEL) !== 0 ? TriggerMode.Level : TriggerMode.Edge,
      level: (command & ICR_LEVEL_ASSERT) !== 0,
      shorthand: ((command >>> ICR_SHORTHAND_SHIFT) & ICR_SHORTHAND_MASK) as DestinationShorthand,
      sourceApic: this.busIndex,
    });
  }

  /**
   * x2APIC SELF IPI (SDM §11.12.11): a fixed, edge interrupt to this APIC, the same as an ICR
   * self shorthand; it never leaves the APIC, so it needs no bus.
   */
  private sendSelfIpi(vector: number): void {
    if (vector < FIRST_LEGAL_VECTOR) {
      count(this.words, Counter.illegalVectors);
      this.detectError(ESR_SEND_ILLEGAL_VECTOR);
      return;
    }
    this.acceptFixed(vector, false);
  }

  // --- IA32_APIC_BASE and resets --------------------------------------------------------------

  /** Applies an IA32_APIC_BASE write, or returns false for one the SDM faults (reserved bits, invalid mode, forbidden transition). */
  private writeApicBase(value: bigint, hostInitiated: boolean): boolean {
    const low = lowHalf(value);
    const high = highHalf(value);
    if (!isValidApicBase(low, high, configPhysicalAddressBits(Atomics.load(this.words, Word.ConfigFlags)))) return false;
    const newMode = apicModeOf(low);
    const changed = withLock(this.words, () => {
      const oldMode = this.modeLocked();
      if (!hostInitiated && GUEST_TRANSITION_ALLOWED[oldMode]?.[newMode] !== true) return undefined;
      this.write(Word.ApicBaseLow, low);
      this.write(Word.ApicBaseHigh, high);
      this.changeMode(oldMode, newMode);
      return oldMode !== newMode;
    });
    if (changed === undefined) return false;
    if (changed) this.ringDoorbell();
    return true;
  }

  /**
   * Side effects of a mode transition (SDM §11.12.5):
   * - into x2APIC: ID becomes the 32-bit x2APIC ID and LDR its derived logical ID (§11.12.10.2);
   * - out of x2APIC: the ID register holds the legacy 8-bit xAPIC ID again, the derived LDR goes,
 *   and ICR high keeps only its xAPIC destination byte;
   * - into disabled: APIC register state is not preserved, except the ID (SDM §11.4.3,
   *   §11.12.5.1); we reset to the power-up values, so a re-enabled APIC starts clean. (KVM keeps
   *   the registers; x86-controllers.md §3.1 leaves this open.)
   */
  private changeMode(oldMode: ApicMode, newMode: ApicMode): void {
    if (oldMode === newMode) return;
    if (oldMode === ApicMode.X2apic) {
      this.write(Word.Id, this.legacyXapicIdRegister());
      this.write(Word.LogicalDestination, 0);
      this.write(Word.InterruptCommandHigh, this.read(Word.InterruptCommandHigh) & XAPIC_HIGH_BYTE_MASK);
    }
    if (newMode === ApicMode.Disabled) {
      this.resetRegisters();
      this.write(Word.PendingEvents, this.read(Word.PendingEvents) & ~PendingEvent.ExtInt);
    }
    if (newMode === ApicMode.X2apic) {
      this.write(Word.Id, this.read(Word.X2apicId));
      this.write(Word.LogicalDestination, x2apicLogicalId(this.read(Word.X2apicId)));
    }
  }

  /** The xAPIC ID register at RESET: the x2APIC ID's low 8 bits in bits 31:24 (SDM §11.12.5.1). */
  private legacyXapicIdRegister(): number {
    return (this.read(Word.X2apicId) & 0xff) << XAPIC_ID_SHIFT;
  }

  /**
   * Every APIC register except IA32_APIC_BASE and ID to its RESET/INIT value (SDM §11.4.7.1;
   * x86-controllers.md §3.16). The timer stops. The bootstrap processor's LINT0 comes back as
   * ExtINT, unmasked, so the PIC keeps working once the OS software-enables the APIC: a
   * deliberate departure from the SDM (all LVTs masked) that KVM (quirk LINT0_REENABLED, applied
   * at RESET and INIT) and QEMU make and the spec asks for (§3.14, §3.16, §6.30).
   */
  private resetRegisters(): void {
    this.write(Word.TaskPriority, 0);
    this.write(Word.LogicalDestination, 0);
    this.write(Word.DestinationFormat, DFR_RESET);
    this.write(Word.SpuriousVector, SVR_RESET);
    this.write(Word.ErrorStatus, 0);
    this.write(Word.ErrorsDetected, 0);
    this.write(Word.InterruptCommandLow, 0);
    this.write(Word.InterruptCommandHigh, 0);
    for (const register of LVT_REGISTERS) {
      this.write(this.lvtWord(register), LVT_RESET);
    }
    if (this.hasConfig(ConfigFlag.Bsp)) this.write(this.lvtWord(ApicRegister.LvtLint0), LVT_LINT0_BSP_RESET);
    this.write(Word.TimerInitialCount, 0);
    this.write(Word.TimerDivide, 0);
    this.write(Word.TscDeadlineLow, 0);
    this.write(Word.TscDeadlineHigh, 0);
    this.timer.disarm();
    clearBank(this.words, Word.InService);
    clearBank(this.words, Word.TriggerMode);
    clearBank(this.words, Word.InterruptRequest);
  }

  /**
   * INIT (SDM §11.4.7.3, §8.4.1): registers as at RESET except IA32_APIC_BASE and the ID, and in
   * x2APIC mode the LDR derived from it (§6.29). The vCPU's pending NMI, SMI and ExtINT go with
   * the processor reset (KVM `kvm_vcpu_reset`). BSP → runnable, AP → wait for SIPI.
   */
  private initResetLocked(): void {
    this.resetRegisters();
    if (this.modeLocked() === ApicMode.X2apic) this.write(Word.LogicalDestination, x2apicLogicalId(this.read(Word.X2apicId)));
    this.clearPendingEvent(PendingEvent.Nmi | PendingEvent.Smi | PendingEvent.ExtInt);
    const bsp = (this.read(Word.ApicBaseLow) & APIC_BASE_BSP) !== 0;
    this.write(Word.MpState, bsp ? MpState.Runnable : MpState.InitReceived);
  }

  /** A pending SIPI: starts a vCPU waiting for SIPI; otherwise discarded (the second SIPI of INIT-SIPI-SIPI; L16, L17). */
  private startupLocked(): SipiStart | undefined {
    if (this.read(Word.MpState) !== MpState.InitReceived) {
      count(this.words, Counter.discardedSipis);
      return undefined;
    }
    this.write(Word.MpState, MpState.Runnable);
    const vector = this.read(Word.SipiVector);
    return { vector, csSelector: vector << SIPI_SELECTOR_SHIFT, csBase: vector << SIPI_BASE_SHIFT, ip: 0 };
  }
}

// ---------------------------------------------------------------------------------------------
// Module helpers
// ---------------------------------------------------------------------------------------------

function isFixedDelivery(deliveryMode: number): boolean {
  return deliveryMode === DeliveryMode.Fixed || deliveryMode === DeliveryMode.LowestPriority;
}

/** A level-triggered message with level 0: the de-assert half of a level IPI (x86-controllers.md §3.4). */
function isLevelDeassert(message: InterruptMessage): boolean {
  return message.triggerMode === TriggerMode.Level && !message.level;
}

/** Whether an APIC whose IA32_APIC_BASE low word is `apicBaseLow` decodes its xAPIC page: EN = 1, EXTD = 0 (`decodesMmio`). */
function decodesXapicPage(apicBaseLow: number): boolean {
  return apicModeOf(apicBaseLow) === ApicMode.Xapic;
}

function isDecodedXapicAccess(offset: number, size: number): boolean {
  return size === XAPIC_ACCESS_BYTES && offset % XAPIC_REGISTER_STRIDE === 0;
}

/** Bits 63:32 of an x2APIC MSR other than the ICR are reserved. */
const X2APIC_HIGH_RESERVED = ~0xffffffffn;

/**
 * x2APIC WRMSR rules that raise #GP (SDM §11.12.1.2; x86-controllers.md §3.2, L22): not
 * writable (read-only or absent), bits 63:32 set (except ICR), non-zero EOI or ESR, SELF IPI
 * above bit 7, ICR reserved bits 31:20, 17:16, 13.
 */
function isLegalX2apicWrite(register: number, value: bigint): boolean {
  if (((X2APIC_ACCESS[register] ?? RegisterAccess.None) & RegisterAccess.Write) === 0) return false;
  if (register === ApicRegister.InterruptCommand) return (lowHalf(value) & ICR_RESERVED) === 0;
  if ((value & X2APIC_HIGH_RESERVED) !== 0n) return false;
  switch (register) {
    case ApicRegister.EndOfInterrupt:
    case ApicRegister.ErrorStatus:
      return value === 0n;
    case ApicRegister.SelfIpi:
      return value <= BigInt(VECTOR_MASK);
    default:
      return true;
  }
}
