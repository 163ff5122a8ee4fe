/**
 * The APIC bus: routes an `InterruptMessage` (an IOAPIC redirection, a decoded MSI, a LAPIC's IPI)
 * to the local APICs it addresses (x86-controllers.md §3.8–§3.10, §4.4; Intel SDM vol. 3 §11.6).
 *
 * For every message the bus matches the destination against each hardware-enabled member and has
 * each match `accept` it, or, for lowest-priority delivery, arbitrates one winner. The result
 * follows KVM's convention (§0): -1 no destination, 0 matched but nothing new was accepted
 * (coalesced, or dropped by a software-disabled target), > 0 how many LAPICs accepted it.
 *
 * The bus holds no lock across member calls (lock order PIC → IOAPIC → LAPIC: a PIC or IOAPIC may
 * call `deliver` with its own lock held, and a member takes only its own lock inside `accept`).
 *
 * Shared state: an `Int32Array` over a SharedArrayBuffer, so every thread's view of the bus sees
 * the same options and counters. The member list is not shared: it holds objects, and each thread
 * registers its own views of the local APICs (`addMember`).
 *
 *   word 0–1  lock (src/base/shared-state.ts); taken only by `restore`
 *   word 2    options: bit 0 x2APIC broadcast quirk, bit 1 32-bit MSI destination IDs,
 *             bit 2 MSI extended destination ID (bits 1 and 2 never both set)
 *   word 3    counter noDestination: messages that matched no (eligible) local APIC
 *   word 4    counter lowestPriorityBroadcasts: physical broadcasts in lowest-priority mode,
 *             delivered as fixed to every APIC (§3.9)
 *   word 5    counter nonInterruptAddresses: MSI writes outside 0xFEExxxxx, dropped
 *   word 6    counter reservedDeliveryModes: MSIs with delivery mode 011 or 110, dropped
 *   word 7    counter reservedBitMessages: MSIs with reserved address/data bits set, delivered
 *
 * Counters are single words bumped with `Atomics.add` (no lock) and read as unsigned.
 */

import { check, checkRange, ErrorCode } from '../../base/errors.ts';
import { allocateStateWords, encodeSnapshot, LOCK_WORDS, restoreSnapshot } from '../../base/shared-state.ts';
import {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  interruptMessage,
  X2APIC_BROADCAST,
  XAPIC_BROADCAST,
  type InterruptMessage,
  type InterruptMessageSink,
} from '../interrupt-message.ts';
import {
  checkMsiDestinationFormat,
  checkMsiWords,
  decodeMsiInto,
  hasReservedBits,
  isInterruptAddress,
  isMsiDeliveryMode,
  type MsiDestinationFormat,
  type MutableInterruptMessage,
} from '../msi/msi-codec.ts';
import type { ApicBusMember } from './apic-bus-member.ts';
import {
  DFR_MODEL_SHIFT,
  DfrModel,
  X2APIC_LDR_CLUSTER_SHIFT,
  X2APIC_LDR_MEMBERS_MASK,
  XAPIC_CLUSTER_MEMBERS_MASK,
  XAPIC_CLUSTER_SHIFT,
  XAPIC_ID_SHIFT,
} from './apic-registers.ts';

// ---- State layout -----------------------------------------------------------------------------

const OPTIONS_WORD = LOCK_WORDS;
const COUNTER_NAMES = [
  'noDestination',
  'lowestPriorityBroadcasts',
  'nonInterruptAddresses',
  'reservedDeliveryModes',
  'reservedBitMessages',
] as const;
type CounterName = (typeof COUNTER_NAMES)[number];
const FIRST_COUNTER_WORD = OPTIONS_WORD + 1;
const MODEL_WORDS = 1 + COUNTER_NAMES.length;

function counterWord(name: CounterName): number {
  return FIRST_COUNTER_WORD + COUNTER_NAMES.indexOf(name);
}
const NO_DESTINATION_WORD = counterWord('noDestination');
const LOWEST_PRIORITY_BROADCASTS_WORD = counterWord('lowestPriorityBroadcasts');
const NON_INTERRUPT_ADDRESSES_WORD = counterWord('nonInterruptAddresses');
const RESERVED_DELIVERY_MODES_WORD = counterWord('reservedDeliveryModes');
const RESERVED_BIT_MESSAGES_WORD = counterWord('reservedBitMessages');

const OPTION_X2APIC_BROADCAST_QUIRK = 1 << 0;
const OPTION_X2APIC_DESTINATION_IDS = 1 << 1;
const OPTION_EXTENDED_DESTINATION_ID = 1 << 2;
const KNOWN_OPTIONS = OPTION_X2APIC_BROADCAST_QUIRK | OPTION_X2APIC_DESTINATION_IDS | OPTION_EXTENDED_DESTINATION_ID;

const SNAPSHOT_KIND = 'ABUS';
const SNAPSHOT_LAYOUT_VERSION = 1;

// ---- Bus constants ----------------------------------------------------------------------------

/** Bus indexes are vCPU indexes; KVM allows at most 4096 vCPUs on x86 (KVM_MAX_VCPUS). */
export const MAX_BUS_INDEX = 4095;

/** xAPIC LDR bits 31:24 hold the 8-bit logical APIC ID (at `XAPIC_ID_SHIFT`). */
const XAPIC_LOGICAL_ID_MASK = 0xff;

// ---- Public types -----------------------------------------------------------------------------

export interface ApicBusOptions extends MsiDestinationFormat {
  /**
   * KVM's x2APIC broadcast quirk (§3.8, §6 item 12), on by default: a destination of 0xFF in a
   * message not sent by a LAPIC (IOAPIC, MSI) means "all" to an x2APIC-mode target, because
   * those sources cannot express the 32-bit broadcast. Turn it off (as
   * KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK does) when 0xFF must stay a plain ID (M7).
   */
  readonly x2apicBroadcastQuirk?: boolean;
}

/** Serialisable form of a bus (for `postMessage`): the shared options and counters. */
export interface ApicBusDescriptor {
  readonly kind: 'apic-bus';
  readonly buffer: SharedArrayBuffer;
}

export type ApicBusCounters = Readonly<Record<CounterName, number>>;

function encodeOptions(options: ApicBusOptions): number {
  return (
    (options.x2apicBroadcastQuirk === false ? 0 : OPTION_X2APIC_BROADCAST_QUIRK) |
    (options.x2apicDestinationIds === true ? OPTION_X2APIC_DESTINATION_IDS : 0) |
    (options.extendedDestinationId === true ? OPTION_EXTENDED_DESTINATION_ID : 0)
  );
}

/** Whether the message asks for lowest-priority arbitration: delivery mode 001 or the MSI RH bit (§3.9, §4.4). */
function isLowestPriority(message: InterruptMessage): boolean {
  return message.deliveryMode === DeliveryMode.LowestPriority || message.redirectionHint;
}

/** A member's answer from `accept` folded into the bus result (KVM sums only positive answers). */
function addAccepted(result: number, accepted: number): number {
  return (result < 0 ? 0 : result) + (accepted > 0 ? accepted : 0);
}

/**
 * Physical destination match (§3.8). `destination` is already the message destination as this
 * target sees it (broadcast quirk applied), and is not a broadcast.
 */
function physicalMatches(member: ApicBusMember, destination: number, x2apicMode: boolean): boolean {
  if (!x2apicMode && destination > XAPIC_BROADCAST) {
    // KVM's hotplug rule: an xAPIC-mode APIC whose x2APIC ID (its vCPU id) cannot be written as
    // an 8-bit xAPIC ID also answers to that wider ID, so hotplugged vCPUs above 255 are
    // reachable before they switch to x2APIC mode. Only for IDs > 0xFF, so a guest that rewrote
    // its (writable) xAPIC ID gets no spurious match on its vCPU id. (An 8-bit xAPIC ID cannot
    // equal a destination above 0xFF, so that is the only way such a destination matches.)
    return destination === member.x2apicId() >>> 0;
  }
  return destination === member.apicId() >>> 0;
}

/** Logical destination match against the target's LDR and DFR (§3.8, SDM §11.6.2.2, §11.12.10.2). */
function logicalMatches(member: ApicBusMember, destination: number, x2apicMode: boolean): boolean {
  const ldr = member.logicalDestination();
  if (x2apicMode) {
    return (
      ldr >>> X2APIC_LDR_CLUSTER_SHIFT === destination >>> X2APIC_LDR_CLUSTER_SHIFT &&
      (ldr & destination & X2APIC_LDR_MEMBERS_MASK) !== 0
    );
  }
  // An xAPIC decodes 8 destination bits; the spec's rules use dest[7:0] for both models. (KVM
  // compares the full value in cluster mode, so a wider destination from an x2APIC sender never
  // matches a cluster-mode xAPIC there; mixed modes are outside what hardware allows.)
  const logicalId = (ldr >>> XAPIC_ID_SHIFT) & XAPIC_LOGICAL_ID_MASK;
  const destinationByte = destination & XAPIC_LOGICAL_ID_MASK;
  switch (member.destinationFormat() >>> DFR_MODEL_SHIFT) {
    case DfrModel.Flat:
      return (logicalId & destinationByte) !== 0;
    case DfrModel.Cluster:
      return (
        logicalId >>> XAPIC_CLUSTER_SHIFT === destinationByte >>> XAPIC_CLUSTER_SHIFT &&
        (logicalId & destinationByte & XAPIC_CLUSTER_MEMBERS_MASK) !== 0
      );
    default:
      // An undefined DFR model matches nothing (KVM).
      return false;
  }
}

/**
 * Destination (no shorthand) match for one hardware-enabled target (§3.8).
 * `promoteBroadcast`: the x2APIC broadcast quirk applies to this message.
 */
function destinationMatches(
  member: ApicBusMember,
  destination: number,
  destinationMode: DestinationMode,
  promoteBroadcast: boolean,
): boolean {
  const x2apicMode = member.isX2apicMode();
  if (x2apicMode) {
    if (destination === X2APIC_BROADCAST || (promoteBroadcast && destination === XAPIC_BROADCAST)) return true;
  } else if (destination === XAPIC_BROADCAST) {
    return true;
  }
  return destinationMode === DestinationMode.Physical
    ? physicalMatches(member, destination, x2apicMode)
    : logicalMatches(member, destination, x2apicMode);
}

/** Whether `member` is addressed by `message` (§3.8); hardware-disabled APICs are off the bus. */
function matches(member: ApicBusMember, message: InterruptMessage, destination: number, promoteBroadcast: boolean): boolean {
  if (!member.isHardwareEnabled()) return false;
  switch (message.shorthand) {
    case DestinationShorthand.None:
      return destinationMatches(member, destination, message.destinationMode, promoteBroadcast);
    case DestinationShorthand.Self:
      return member.busIndex === message.sourceApic;
    case DestinationShorthand.AllIncludingSelf:
      return true;
    case DestinationShorthand.AllExcludingSelf:
      return member.busIndex !== message.sourceApic;
  }
}

export class ApicBus implements InterruptMessageSink {
  /** Members in ascending bus-index order (the order vector hashing counts in). Replaced, never mutated, on add/remove. */
  private members: readonly ApicBusMember[] = [];
  /** Arbitration scratch: positions in `members` of the tied lowest-PPR candidates. */
  private lowestPriorityCandidates = new Int32Array(0);
  /** Reused for each MSI so `deliverMsi` does not allocate; a nested `deliverMsi` gets its own. */
  private readonly msiMessage: MutableInterruptMessage = interruptMessage();
  private msiMessageInUse = false;

  private constructor(private readonly words: Int32Array) {}

  /** A new bus with no members. Throws EINVAL if both wide-destination MSI formats are enabled. */
  static create(options: ApicBusOptions = {}): ApicBus {
    checkMsiDestinationFormat(options);
    const words = allocateStateWords(MODEL_WORDS);
    words[OPTIONS_WORD] = encodeOptions(options);
    return new ApicBus(words);
  }

  /**
   * Another view of the same bus (e.g. in a worker): shares options and counters, starts with no
   * members; register this thread's views of the local APICs with `addMember`.
   */
  static fromState(descriptor: ApicBusDescriptor): ApicBus {
    check(
      descriptor.buffer instanceof SharedArrayBuffer && descriptor.buffer.byteLength === (LOCK_WORDS + MODEL_WORDS) * Int32Array.BYTES_PER_ELEMENT,
      ErrorCode.EINVAL,
      'not an APIC bus state descriptor',
    );
    return new ApicBus(new Int32Array(descriptor.buffer));
  }

  descriptor(): ApicBusDescriptor {
    return { kind: 'apic-bus', buffer: this.words.buffer as SharedArrayBuffer };
  }

  options(): Required<ApicBusOptions> {
    const options = Atomics.load(this.words, OPTIONS_WORD);
    return {
      x2apicBroadcastQuirk: (options & OPTION_X2APIC_BROADCAST_QUIRK) !== 0,
      x2apicDestinationIds: (options & OPTION_X2APIC_DESTINATION_IDS) !== 0,
      extendedDestinationId: (options & OPTION_EXTENDED_DESTINATION_ID) !== 0,
    };
  }

  /** Puts a local APIC on the bus. EINVAL for a bus index outside [0, MAX_BUS_INDEX]; EEXIST if taken. */
  addMember(member: ApicBusMember): void {
    checkRange(member.busIndex, 0, MAX_BUS_INDEX, 'bus index');
    check(this.member(member.busIndex) === undefined, ErrorCode.EEXIST, `bus index ${member.busIndex} is already on the bus`);
    this.setMembers([...this.members, member].sort((left, right) => left.busIndex - right.busIndex));
  }

  /** Takes a local APIC off the bus. ENOENT if no member has that index. */
  removeMember(busIndex: number): void {
    check(this.member(busIndex) !== undefined, ErrorCode.ENOENT, `no member with bus index ${String(busIndex)}`);
    this.setMembers(this.members.filter((member) => member.busIndex !== busIndex));
  }

  member(busIndex: number): ApicBusMember | undefined {
    return this.members.find((member) => member.busIndex === busIndex);
  }

  /** Members in bus-index order. */
  memberList(): readonly ApicBusMember[] {
    return this.members;
  }

  private setMembers(members: readonly ApicBusMember[]): void {
    this.members = members;
    this.lowestPriorityCandidates = new Int32Array(members.length);
  }

  /**
   * Routes one message (§3.8–§3.10). Returns -1 when nothing matched, otherwise the number of
   * members that accepted it (0: all matches coalesced or dropped it). Throws EINVAL for a
   * self or all-excluding-self shorthand without a `sourceApic` (only a LAPIC sends those).
   */
  deliver(message: InterruptMessage): number {
    const shorthand = message.shorthand;
    check(
      message.sourceApic !== undefined ||
        (shorthand !== DestinationShorthand.Self && shorthand !== DestinationShorthand.AllExcludingSelf),
      ErrorCode.EINVAL,
      'a self or all-excluding-self shorthand needs the sending APIC (sourceApic)',
    );
    // Normalise: a sender may hand over a 32-bit destination read from an Int32Array (signed).
    const destination = message.destination >>> 0;
    const promoteBroadcast =
      message.sourceApic === undefined && ((this.words[OPTIONS_WORD] ?? 0) & OPTION_X2APIC_BROADCAST_QUIRK) !== 0;
    if (!isLowestPriority(message)) return this.deliverToEveryMatch(message, destination, promoteBroadcast);
    if (
      shorthand === DestinationShorthand.None &&
      message.destinationMode === DestinationMode.Physical &&
      (destination === XAPIC_BROADCAST || destination === X2APIC_BROADCAST)
    ) {
      // §3.9 / §6 item 13: lowest priority cannot arbitrate a physical broadcast; deliver it as
      // fixed to everyone (KVM). The members see the message unchanged: `accept` treats fixed
      // and lowest-priority alike (§3.5).
      Atomics.add(this.words, LOWEST_PRIORITY_BROADCASTS_WORD, 1);
      return this.deliverToEveryMatch(message, destination, promoteBroadcast);
    }
    return this.deliverToLowestPriority(message, destination, promoteBroadcast);
  }

  private deliverToEveryMatch(message: InterruptMessage, destination: number, promoteBroadcast: boolean): number {
    const members = this.members;
    let result = -1;
    for (let position = 0; position < members.length; position++) {
      const member = members[position];
      if (member === undefined || !matches(member, message, destination, promoteBroadcast)) continue;
      result = addAccepted(result, member.accept(message));
    }
    if (result < 0) Atomics.add(this.words, NO_DESTINATION_WORD, 1);
    return result;
  }

  /**
   * Lowest-priority arbitration, per the §3.9 Recommendation: among the matching, software-enabled
   * members, those with the lowest PPR; of those, the (vector mod count)-th in bus-index order
   * (KVM's vector hashing, which spreads vectors and is deterministic). -1 when no member is
   * eligible, as in KVM (a software-disabled APIC is never a lowest-priority candidate).
   */
  private deliverToLowestPriority(message: InterruptMessage, destination: number, promoteBroadcast: boolean): number {
    const members = this.members;
    const candidates = this.lowestPriorityCandidates;
    let candidateCount = 0;
    let lowestPriority = Number.POSITIVE_INFINITY;
    for (let position = 0; position < members.length; position++) {
      const member = members[position];
      if (member === undefined || !matches(member, message, destination, promoteBroadcast) || !member.isSoftwareEnabled()) continue;
      const priority = member.processorPriority();
      if (priority < lowestPriority) {
        lowestPriority = priority;
        candidateCount = 0;
      }
      if (priority === lowestPriority) candidates[candidateCount++] = position;
    }
    const winner = candidateCount === 0 ? undefined : members[candidates[message.vector % candidateCount] ?? 0];
    if (winner === undefined) {
      Atomics.add(this.words, NO_DESTINATION_WORD, 1);
      return -1;
    }
    return addAccepted(-1, winner.accept(message));
  }

  /**
   * Delivers an MSI write (§4.4, KVM_SIGNAL_MSI): decodes it with the bus's destination format and
   * routes it. A write outside the interrupt window or with a reserved delivery mode (011, 110) is
   * not an interrupt: dropped, counted, -1. Reserved address/data bits are ignored (counted).
   * Throws EINVAL for arguments that are not unsigned 32-bit integers, and for an address_hi with
   * bits 7:0 set when 32-bit destination IDs are on (M5); nothing is counted then.
   */
  deliverMsi(addressLow: number, addressHigh: number, data: number): number {
    checkMsiWords(addressLow, addressHigh, data);
    const options = this.words[OPTIONS_WORD] ?? 0;
    const extendedDestinationId = (options & OPTION_EXTENDED_DESTINATION_ID) !== 0;
    const nested = this.msiMessageInUse;
    const message: MutableInterruptMessage = nested ? interruptMessage() : this.msiMessage;
    decodeMsiInto(message, addressLow, addressHigh, data, (options & OPTION_X2APIC_DESTINATION_IDS) !== 0, extendedDestinationId);
    if (!isInterruptAddress(addressLow)) {
      Atomics.add(this.words, NON_INTERRUPT_ADDRESSES_WORD, 1);
      return -1;
    }
    if (!isMsiDeliveryMode(message.deliveryMode)) {
      Atomics.add(this.words, RESERVED_DELIVERY_MODES_WORD, 1);
      return -1;
    }
    if (hasReservedBits(addressLow, data, extendedDestinationId)) Atomics.add(this.words, RESERVED_BIT_MESSAGES_WORD, 1);
    this.msiMessageInUse = true;
    try {
      return this.deliver(message);
    } finally {
      this.msiMessageInUse = nested;
    }
  }

  counters(): ApicBusCounters {
    const counters = {} as Record<CounterName, number>;
    for (const name of COUNTER_NAMES) counters[name] = Atomics.load(this.words, counterWord(name)) >>> 0;
    return counters;
  }

  /** Options and counters as snapshot bytes (members are wiring, not state). */
  snapshot(): Uint8Array {
    return encodeSnapshot(SNAPSHOT_KIND, SNAPSHOT_LAYOUT_VERSION, this.words);
  }

  /** Restores `snapshot()` bytes; EINVAL (nothing changed) for damaged, foreign or impossible ones. */
  restore(bytes: Uint8Array): void {
    restoreSnapshot(this.words, bytes, SNAPSHOT_KIND, SNAPSHOT_LAYOUT_VERSION, (payload) => {
      const options = payload[OPTIONS_WORD - LOCK_WORDS] ?? 0;
      check((options & ~KNOWN_OPTIONS) === 0, ErrorCode.EINVAL, `snapshot has unknown bus option bits 0x${options.toString(16)}`);
      checkMsiDestinationFormat({
        x2apicDestinationIds: (options & OPTION_X2APIC_DESTINATION_IDS) !== 0,
        extendedDestinationId: (options & OPTION_EXTENDED_DESTINATION_ID) !== 0,
      });
    });
  }
}
