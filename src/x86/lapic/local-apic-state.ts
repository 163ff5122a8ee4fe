/**
 * The local APIC's state words (docs/architecture.md, decision 1): the layout, and the small
 * helpers that read and write it. `LocalApic` and `ApicTimer` are views over these words.
 *
 * Layout of the Int32Array (word index → meaning). Words 0–1 are the lock (`LOCK_WORDS`). Words
 * 2..STATE_WORDS−1 are the model and are what a snapshot holds; the two doorbell words after them
 * share the buffer but are synchronisation, like the lock, and are never snapshotted or restored
 * (a restore must not overwrite the count of threads sleeping on the doorbell).
 *
 *   0–1   lock (shared-state.ts)
 *   -- configuration, fixed at construction, checked on restore --
 *   2     bus index (vCPU index)
 *   3     x2APIC ID (u32)
 *   4     flags: bit 0 bootstrap processor, bit 1 directed EOI (Version bit 24), bit 2 TSC-deadline mode;
 *         bits 13:8 MAXPHYADDR (the physical-address width that bounds IA32_APIC_BASE)
 *   5     APIC bus cycle in ns (timer ticks before the divider)
 *   6     minimum periodic timer period in ns (0 = none)
 *   7     MP state (MpState below; SipiReceived is never stored)
 *   8–9   float64: TSC frequency in Hz (0 when TSC-deadline mode is absent)
 *   -- timer --
 *   10–11 float64: next timer expiry, ns on the clock (in a snapshot: ns relative to the snapshot)
 *   12    timer armed (0/1)
 *   13    timer initial count (TMICT, u32)
 *   14    timer divide configuration (TDCR)
 *   15–16 IA32_TSC_DEADLINE, low and high halves (u64; 0 = disarmed)
 *   -- registers --
 *   17–18 IA32_APIC_BASE, low and high halves
 *   19    ID register (xAPIC: ID in bits 31:24; x2APIC: the 32-bit x2APIC ID)
 *   20    TPR
 *   21    LDR
 *   22    DFR
 *   23    SVR
 *   24    ESR as the guest reads it (latched by the last ESR write)
 *   25    errors detected since the last ESR write (SDM §11.5.3)
 *   26    ICR low (delivery status always 0)
 *   27    ICR high (xAPIC: destination in bits 31:24; x2APIC: 32-bit destination)
 *   28–33 LVT timer, thermal, performance counter, LINT0, LINT1, error
 *   34–41 ISR, vectors 32k..32k+31 in word 34+k
 *   42–49 TMR
 *   50–57 IRR
 *   -- processor-side events --
 *   58    pending events: bit 0 NMI, 1 SMI, 2 INIT, 3 SIPI, 4 ExtINT message
 *   59    latched SIPI vector
 *   60    LINT input levels: bit 0 LINT0, bit 1 LINT1 (logically asserted)
 *   61..  counters (COUNTER_NAMES order), u32 each, wrapping
 *   -- not snapshotted --
 *   STATE_WORDS     doorbell generation: bumped whenever an interrupt/NMI/SMI/INIT/SIPI may have become deliverable
 *   STATE_WORDS+1   doorbell waiters: threads sleeping in Atomics.wait on the generation
 *   STATE_WORDS+2   running thread: the kernel thread id of the vCPU thread while it runs guest
 *                   code (KVM_RUN) and cannot see the doorbell; 0 otherwise. A ring wakes it.
 */

import { LOCK_WORDS } from '../../base/shared-state.ts';

export const Word = {
  BusIndex: 2,
  X2apicId: 3,
  ConfigFlags: 4,
  ApicBusCycleNs: 5,
  MinPeriodicNs: 6,
  MpState: 7,
  /** Float64 slot (words 8–9). */
  TscHz: 8,
  /** Float64 slot (words 10–11). */
  TimerExpiryNs: 10,
  TimerArmed: 12,
  TimerInitialCount: 13,
  TimerDivide: 14,
  TscDeadlineLow: 15,
  TscDeadlineHigh: 16,
  ApicBaseLow: 17,
  ApicBaseHigh: 18,
  Id: 19,
  TaskPriority: 20,
  LogicalDestination: 21,
  DestinationFormat: 22,
  SpuriousVector: 23,
  ErrorStatus: 24,
  ErrorsDetected: 25,
  InterruptCommandLow: 26,
  InterruptCommandHigh: 27,
  /** LVT entries in register order (ApicRegister.LvtTimer .. LvtError). */
  LvtFirst: 28,
  InService: 34,
  TriggerMode: 42,
  InterruptRequest: 50,
  PendingEvents: 58,
  SipiVector: 59,
  LintLevels: 60,
  CountersFirst: 61,
} as const;

/** vCPU MP states (word `MpState`), numbered as KVM's `kvm_mp_state` (x86-controllers.md §3.15). */
export const MpState = { Runnable: 0, Uninitialized: 1, InitReceived: 2, Halted: 3, SipiReceived: 4 } as const;
export type MpState = (typeof MpState)[keyof typeof MpState];

/** Config flag bits (word `ConfigFlags`). */
export const ConfigFlag = { Bsp: 1 << 0, DirectedEoi: 1 << 1, TscDeadline: 1 << 2 } as const;
/** Where word `ConfigFlags` keeps MAXPHYADDR: bits 13:8. */
export const CONFIG_PHYSICAL_ADDRESS_BITS_SHIFT = 8;
export const CONFIG_PHYSICAL_ADDRESS_BITS_MASK = 0x3f;

/** MAXPHYADDR as word `ConfigFlags` holds it. */
export function configPhysicalAddressBits(configFlags: number): number {
  return (configFlags >>> CONFIG_PHYSICAL_ADDRESS_BITS_SHIFT) & CONFIG_PHYSICAL_ADDRESS_BITS_MASK;
}

/** Pending-event bits (word `PendingEvents`). */
export const PendingEvent = { Nmi: 1 << 0, Smi: 1 << 1, Init: 1 << 2, Sipi: 1 << 3, ExtInt: 1 << 4 } as const;
export const PENDING_EVENT_BITS = 0x1f;

/**
 * What the counters count. Guest misbehaviour gets the hardware's answer and one of these
 * (docs/architecture.md, decision 5); coalesced and dropped interrupts are counted too (decision 6).
 */
export const COUNTER_NAMES = [
  /**
   * MMIO of a size or alignment the APIC does not decode, or to an address where its page is not
   * decoded (x2APIC mode, hardware-disabled, or the base moved elsewhere): the access went nowhere.
   */
  'ignoredAccesses',
  /** xAPIC accesses to offsets with no register (ESR bit 7). */
  'reservedRegisterAccesses',
  /** xAPIC writes to read-only registers, and writes the current timer mode ignores. */
  'ignoredWrites',
  /** xAPIC reads of the write-only EOI register (read as 0). */
  'writeOnlyReads',
  /** Writes with reserved bits set; the bits were dropped. */
  'reservedBitWrites',
  /** #GP results reported for MSR accesses. */
  'generalProtectionFaults',
  /** Fixed/lowest-priority/ExtINT messages dropped by a software- or hardware-disabled APIC. */
  'droppedWhileDisabled',
  /** Level-triggered de-assert messages (fixed or INIT), which deliver nothing. */
  'droppedDeasserts',
  /** Fixed/lowest-priority vectors 0–15, sent or received, not delivered (ESR bits 5/6). */
  'illegalVectors',
  /** Fixed interrupts whose vector was already in IRR. */
  'coalescedInterrupts',
  'coalescedNmis',
  'coalescedSmis',
  'coalescedInits',
  /** Periodic timer expiries merged with a later one because the clock was processed late. */
  'coalescedTimerTicks',
  /** Local sources (timer, LINT, thermal, performance counter, error) that fired while their LVT was masked. */
  'maskedLocalInterrupts',
  /** Interrupt acknowledges that returned the spurious vector (request masked by TPR before INTA). */
  'spuriousInterrupts',
  /** EOI writes with nothing in service. */
  'ignoredEois',
  /** SIPIs discarded: replaced by an INIT, arrived outside wait-for-SIPI, or INIT was blocked. */
  'discardedSipis',
  /** Messages the APIC does not act on (remote read, reserved LVT delivery modes, ExtINT without a PIC). */
  'unsupportedMessages',
  /** IPIs written to the ICR while no interrupt-message sink was wired. */
  'undeliverableIpis',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

export const Counter: Readonly<Record<CounterName, number>> = Object.fromEntries(
  COUNTER_NAMES.map((name, index) => [name, Word.CountersFirst + index]),
) as Record<CounterName, number>;

/** Words covered by the lock and the snapshot. */
export const STATE_WORDS = Word.CountersFirst + COUNTER_NAMES.length;
/** Model words, what `allocateStateWords` is asked for. */
export const MODEL_WORDS = STATE_WORDS - LOCK_WORDS;
export const DOORBELL_GENERATION = STATE_WORDS;
export const DOORBELL_WAITERS = STATE_WORDS + 1;
export const DOORBELL_RUNNING_THREAD = STATE_WORDS + 2;
export const DOORBELL_WORDS = 3;

/** Word `index` as a float64 slot index, for a Float64Array over the same buffer. */
export function float64Slot(index: number): number {
  return index >>> 1;
}

/** A Float64Array over the words of an Int32Array that starts at an 8-byte boundary. */
export function float64View(words: Int32Array): Float64Array {
  return new Float64Array(words.buffer, words.byteOffset, words.length >>> 1);
}

/** Adds `deltaNs` to the float64 time at word `index` of `words` (a snapshot copy or payload). */
export function shiftTime(words: Int32Array, index: number, deltaNs: number): void {
  const times = float64View(words);
  const slot = float64Slot(index);
  times[slot] = (times[slot] ?? 0) + deltaNs;
}

// ---------------------------------------------------------------------------------------------
// 256-bit vector registers (ISR, TMR, IRR): eight words, vector v in word v >> 5, bit v & 31.
// Callers hold the lock.
// ---------------------------------------------------------------------------------------------

const VECTOR_WORDS = 8;

export function testVector(words: Int32Array, bank: number, vector: number): boolean {
  return ((words[bank + (vector >>> 5)] ?? 0) & (1 << (vector & 31))) !== 0;
}

export function setVector(words: Int32Array, bank: number, vector: number): void {
  const index = bank + (vector >>> 5);
  words[index] = (words[index] ?? 0) | (1 << (vector & 31));
}

export function clearVector(words: Int32Array, bank: number, vector: number): void {
  const index = bank + (vector >>> 5);
  words[index] = (words[index] ?? 0) & ~(1 << (vector & 31));
}

/** The highest vector set in a bank, or -1 when it is empty. */
export function highestVector(words: Int32Array, bank: number): number {
  for (let word = VECTOR_WORDS - 1; word >= 0; word--) {
    const bits = words[bank + word] ?? 0;
    if (bits !== 0) return (word << 5) + 31 - Math.clz32(bits);
  }
  return -1;
}

export function clearBank(words: Int32Array, bank: number): void {
  words.fill(0, bank, bank + VECTOR_WORDS);
}

/** Adds one to a counter; safe without the lock. */
export function count(words: Int32Array, counter: number, amount = 1): void {
  Atomics.add(words, counter, amount);
}

