/**
 * What the local APIC refuses from its callers (docs/architecture.md, decision 5): options,
 * wiring, descriptors, arguments of the guest-interface methods, and snapshots of impossible
 * states. Each check throws `IrqChipError('EINVAL')` before anything changes. (What the *guest*
 * does wrong is not checked here: it gets the hardware's behaviour in local-apic.ts.)
 *
 * The checks on the per-interrupt path (`checkMessage`, `checkMmioAccess`) build no message
 * string unless they fail.
 */

import { ErrorCode, IrqChipError, check, checkRange } from '../../base/errors.ts';
import { isU64 } from '../../base/integers.ts';
import { LOCK_WORDS } from '../../base/shared-state.ts';
import { DeliveryMode, type InterruptMessage } from '../interrupt-message.ts';
import {
  ApicMode,
  ApicRegister,
  DFR_RESERVED_ONES,
  ESR_DEFINED_BITS,
  ICR_WRITABLE,
  LVT_REGISTERS,
  LVT_REMOTE_IRR,
  MAX_PHYSICAL_ADDRESS_BITS,
  MIN_PHYSICAL_ADDRESS_BITS,
  MSR_IA32_APIC_BASE,
  MSR_IA32_TSC_DEADLINE,
  MSR_X2APIC_FIRST,
  MSR_X2APIC_LAST,
  TDCR_WRITABLE,
  TPR_MASK,
  TimerMode,
  VECTOR_MASK,
  XAPIC_HIGH_BYTE_MASK,
  XAPIC_PAGE_BYTES,
  apicModeOf,
  isValidApicBase,
  lvtReadOnlyMask,
  lvtTimerMode,
  lvtWritableMask,
  svrWritableMask,
  x2apicLogicalId,
} from './apic-registers.ts';
import { CONFIG_PHYSICAL_ADDRESS_BITS_SHIFT, ConfigFlag, configPhysicalAddressBits, DOORBELL_WORDS, MpState, PENDING_EVENT_BITS, STATE_WORDS, Word, float64Slot, float64View } from './local-apic-state.ts';
import type { LocalApicOptions, LocalApicWiring, LocalInterruptSource } from './local-apic.ts';

/** KVM's default minimum periodic timer period, `min_timer_period_us` = 200 µs. */
export const DEFAULT_MIN_PERIODIC_TIMER_NS = 200_000;
const MAX_TSC_HZ = 1e12;
const MAX_APIC_BUS_CYCLE_NS = 1_000_000;
const MAX_MIN_PERIODIC_TIMER_NS = 1_000_000_000;
/** The largest valid x2APIC ID: 0xFFFFFFFF is the broadcast destination. */
const MAX_X2APIC_ID = 0xfffffffe;
/** A bus index is kept in a signed 32-bit state word (the `ApicBus` admits only up to its `MAX_BUS_INDEX`). */
const MAX_STORED_BUS_INDEX = 0x7fffffff;
const LINT_LEVEL_BITS = 0x3;

/** The options of a new local APIC, validated and packed for its configuration words. */
export interface LocalApicConfig {
  readonly busIndex: number;
  readonly x2apicId: number;
  readonly flags: number;
  readonly tscHz: number;
  readonly apicBusCycleNs: number;
  readonly minPeriodicTimerNs: number;
}

export function validateOptions(options: LocalApicOptions): LocalApicConfig {
  checkRange(options.busIndex, 0, MAX_STORED_BUS_INDEX, 'busIndex');
  check(typeof options.bsp === 'boolean', ErrorCode.EINVAL, 'bsp must be a boolean');
  const x2apicId = options.x2apicId ?? options.busIndex;
  checkRange(x2apicId, 0, MAX_X2APIC_ID, 'x2apicId');
  if (options.tscHz !== undefined) checkRange(options.tscHz, 1, MAX_TSC_HZ, 'tscHz');
  const directedEoi = options.directedEoi ?? false;
  check(typeof directedEoi === 'boolean', ErrorCode.EINVAL, 'directedEoi must be a boolean');
  const apicBusCycleNs = options.apicBusCycleNs ?? 1;
  checkRange(apicBusCycleNs, 1, MAX_APIC_BUS_CYCLE_NS, 'apicBusCycleNs');
  const minPeriodicTimerNs = options.minPeriodicTimerNs ?? DEFAULT_MIN_PERIODIC_TIMER_NS;
  checkRange(minPeriodicTimerNs, 0, MAX_MIN_PERIODIC_TIMER_NS, 'minPeriodicTimerNs');
  const physicalAddressBits = options.physicalAddressBits ?? MAX_PHYSICAL_ADDRESS_BITS;
  checkRange(physicalAddressBits, MIN_PHYSICAL_ADDRESS_BITS, MAX_PHYSICAL_ADDRESS_BITS, 'physicalAddressBits');
  const flags =
    (options.bsp ? ConfigFlag.Bsp : 0) |
    (directedEoi ? ConfigFlag.DirectedEoi : 0) |
    (options.tscHz !== undefined ? ConfigFlag.TscDeadline : 0) |
    (physicalAddressBits << CONFIG_PHYSICAL_ADDRESS_BITS_SHIFT);
  return { busIndex: options.busIndex, x2apicId, flags, tscHz: options.tscHz ?? 0, apicBusCycleNs, minPeriodicTimerNs };
}

export function checkWiring(wiring: LocalApicWiring): void {
  check(typeof wiring.clock.nowNs === 'function', ErrorCode.EINVAL, 'clock must have nowNs()');
  check(wiring.ipiSink === undefined || typeof wiring.ipiSink.deliver === 'function', ErrorCode.EINVAL, 'ipiSink must have deliver()');
  check(
    wiring.eoiListener === undefined || typeof wiring.eoiListener.endOfInterrupt === 'function',
    ErrorCode.EINVAL,
    'eoiListener must have endOfInterrupt()',
  );
  check(
    wiring.extInt === undefined || (typeof wiring.extInt.outputLevel === 'function' && typeof wiring.extInt.acknowledge === 'function'),
    ErrorCode.EINVAL,
    'extInt must have outputLevel() and acknowledge()',
  );
}

/** A descriptor that may have come through `postMessage`. */
export function checkDescriptor(descriptor: unknown): void {
  const { kind, buffer } = (typeof descriptor === 'object' && descriptor !== null ? descriptor : {}) as { kind?: unknown; buffer?: unknown };
  check(
    kind === 'local-apic' &&
      buffer instanceof SharedArrayBuffer &&
      buffer.byteLength === (STATE_WORDS + DOORBELL_WORDS) * Int32Array.BYTES_PER_ELEMENT,
    ErrorCode.EINVAL,
    'not a local APIC state descriptor',
  );
}

const LOCAL_INTERRUPT_SOURCES: ReadonlySet<unknown> = new Set<LocalInterruptSource>(['thermal', 'performance-counter']);

export function checkLocalInterruptSource(source: unknown): void {
  check(LOCAL_INTERRUPT_SOURCES.has(source), ErrorCode.EINVAL, 'unknown local interrupt source');
}

export function checkVector(vector: number): void {
  if (!Number.isInteger(vector) || vector < 0 || vector > VECTOR_MASK) {
    throw new IrqChipError(ErrorCode.EINVAL, `vector must be an integer in [0, 255], got ${String(vector)}`);
  }
}

/** A message from the bus is the caller's: a malformed one throws. */
export function checkMessage(message: InterruptMessage): void {
  checkVector(message.vector);
  if (!Number.isInteger(message.deliveryMode) || message.deliveryMode < DeliveryMode.Fixed || message.deliveryMode > DeliveryMode.ExtInt) {
    throw new IrqChipError(ErrorCode.EINVAL, `delivery mode must be 0–7, got ${String(message.deliveryMode)}`);
  }
}

/** Largest value an MMIO access of each size carries (an 8-byte one as far as a number is exact); 0 = no such size. */
const MMIO_VALUE_LIMIT: readonly number[] = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, Number.MAX_SAFE_INTEGER];

/** An MMIO access the bus hands over: a size the CPU can issue, inside the page, a value that fits. */
export function checkMmioAccess(offset: number, size: number, value: number): void {
  const limit = MMIO_VALUE_LIMIT[size] ?? 0;
  if (limit === 0 || !Number.isInteger(size)) {
    throw new IrqChipError(ErrorCode.EINVAL, `MMIO access size must be 1, 2, 4 or 8, got ${String(size)}`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + size > XAPIC_PAGE_BYTES) {
    throw new IrqChipError(ErrorCode.EINVAL, `MMIO offset ${String(offset)} (size ${size}) is outside the APIC page`);
  }
  if (!Number.isInteger(value) || value < 0 || value > limit) {
    throw new IrqChipError(ErrorCode.EINVAL, `MMIO value ${String(value)} does not fit ${size} bytes`);
  }
}

/** An MSR the local APIC owns: IA32_APIC_BASE, IA32_TSC_DEADLINE, 0x800–0x8FF. */
export function checkMsrIndex(index: number): void {
  const owned =
    index === MSR_IA32_APIC_BASE || index === MSR_IA32_TSC_DEADLINE || (Number.isInteger(index) && index >= MSR_X2APIC_FIRST && index <= MSR_X2APIC_LAST);
  if (!owned) throw new IrqChipError(ErrorCode.EINVAL, `MSR ${String(index)} is not a local APIC MSR`);
}

export function checkU64(value: bigint, what: string): void {
  check(isU64(value), ErrorCode.EINVAL, `${what} must be a u64 bigint`);
}

// ---------------------------------------------------------------------------------------------
// Snapshots: reject a payload that is not a state this APIC could be in
// ---------------------------------------------------------------------------------------------

/** A snapshot payload (the words after the lock) read by state-word index. */
type PayloadWord = (index: number) => number;

function reject(why: string): never {
  throw new IrqChipError(ErrorCode.EINVAL, `local APIC snapshot rejected: ${why}`);
}

/**
 * Validates snapshot payload words against the live APIC's state words `live` (its identity and
 * options must match) and against what the registers can hold.
 */
export function validateSnapshotPayload(payload: Int32Array, live: Int32Array): void {
  const word: PayloadWord = (index) => payload[index - LOCK_WORDS] ?? 0;
  checkIdentity(word, float64View(payload), live);
  const flags = live[Word.ConfigFlags] ?? 0;
  checkModeAndIds(word, live[Word.X2apicId] ?? 0, configPhysicalAddressBits(flags));
  checkRegisters(word, (flags & ConfigFlag.DirectedEoi) !== 0);
  checkLvtEntries(word, (flags & ConfigFlag.TscDeadline) !== 0);
  checkTimer(word, float64View(payload));
  checkProcessorEvents(word);
}

function checkIdentity(word: PayloadWord, payloadTimes: Float64Array, live: Int32Array): void {
  for (const index of [Word.BusIndex, Word.X2apicId, Word.ConfigFlags, Word.ApicBusCycleNs, Word.MinPeriodicNs]) {
    if (word(index) !== live[index]) reject('it is of another APIC or configuration');
  }
  const liveTscHz = float64View(live)[float64Slot(Word.TscHz)];
  if (payloadTimes[float64Slot(Word.TscHz - LOCK_WORDS)] !== liveTscHz) reject('TSC frequency differs');
}

function checkModeAndIds(word: PayloadWord, x2apicId: number, physicalAddressBits: number): void {
  const baseLow = word(Word.ApicBaseLow);
  if (!isValidApicBase(baseLow, word(Word.ApicBaseHigh), physicalAddressBits)) reject('APIC base reserved bits or invalid mode');
  if (apicModeOf(baseLow) === ApicMode.X2apic) {
    if (word(Word.Id) !== x2apicId || word(Word.LogicalDestination) !== (x2apicLogicalId(x2apicId) | 0)) reject('x2APIC ID or LDR');
  } else if (((word(Word.Id) | word(Word.LogicalDestination) | word(Word.InterruptCommandHigh)) & ~XAPIC_HIGH_BYTE_MASK) !== 0) {
    reject('xAPIC ID, LDR or ICR high reserved bits');
  }
}

function checkRegisters(word: PayloadWord, directedEoi: boolean): void {
  if ((word(Word.TaskPriority) & ~TPR_MASK) !== 0) reject('TPR');
  if ((word(Word.DestinationFormat) & DFR_RESERVED_ONES) !== DFR_RESERVED_ONES) reject('DFR');
  if ((word(Word.SpuriousVector) & ~svrWritableMask(directedEoi)) !== 0) reject('SVR');
  if (((word(Word.ErrorStatus) | word(Word.ErrorsDetected)) & ~ESR_DEFINED_BITS) !== 0) reject('ESR');
  if ((word(Word.InterruptCommandLow) & ~ICR_WRITABLE) !== 0) reject('ICR');
}

function checkLvtEntries(word: PayloadWord, tscDeadline: boolean): void {
  for (const register of LVT_REGISTERS) {
    const allowed = lvtWritableMask(register, tscDeadline) | (lvtReadOnlyMask(register) & LVT_REMOTE_IRR);
    if ((word(Word.LvtFirst + register - ApicRegister.LvtTimer) & ~allowed) !== 0) reject(`LVT entry 0x${register.toString(16)}`);
  }
  if (lvtTimerMode(word(Word.LvtFirst)) === TimerMode.Reserved) reject('reserved timer mode');
}

function checkTimer(word: PayloadWord, payloadTimes: Float64Array): void {
  const timerMode = lvtTimerMode(word(Word.LvtFirst));
  if ((word(Word.TimerDivide) & ~TDCR_WRITABLE) !== 0) reject('TDCR');
  const armed = word(Word.TimerArmed);
  if (armed !== 0 && armed !== 1) reject('timer armed flag');
  if (armed === 1 && timerMode !== TimerMode.TscDeadline && word(Word.TimerInitialCount) === 0) reject('timer armed with no count');
  if (!Number.isFinite(payloadTimes[float64Slot(Word.TimerExpiryNs - LOCK_WORDS)])) reject('timer expiry');
  const deadlineSet = (word(Word.TscDeadlineLow) | word(Word.TscDeadlineHigh)) !== 0;
  if (deadlineSet && timerMode !== TimerMode.TscDeadline) reject('TSC deadline outside TSC-deadline mode');
}

function checkProcessorEvents(word: PayloadWord): void {
  if ((word(Word.PendingEvents) & ~PENDING_EVENT_BITS) !== 0) reject('pending events');
  if ((word(Word.SipiVector) & ~VECTOR_MASK) !== 0) reject('SIPI vector');
  const mpState = word(Word.MpState);
  if (mpState < MpState.Runnable || mpState > MpState.Halted) reject(`MP state ${mpState}`);
  if ((word(Word.LintLevels) & ~LINT_LEVEL_BITS) !== 0) reject('LINT levels');
}
