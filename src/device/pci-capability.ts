/**
 * What the PCI message-interrupt capability models share: the vectors they drive, the capability
 * header, the guest-access counters and the pending bits (PCI Local Bus 3.0 §6.7, §6.8).
 *
 * A capability model (`MsixCapability`, `MsiCapability`) is the guest's side of a block
 * of message vectors: it keeps the registers the guest programs and turns guest accesses into
 * `MessageVectorGroup` calls. The block behind it is the device layer's `ChipInterruptGroup` (an
 * emulated device's vectors, delivered through the chip) or VFIO's `VfioVectorGroup` (a
 * passed-through function's vectors, bound on the host).
 */

import { checkRange } from '../base/errors.ts';
import { isOutOfGsis } from './chip-interrupt-group.ts';
import type { InterruptSourceType, MsiIrqSourceConfig } from './interrupt-source.ts';

/**
 * A block of MSI vectors as a capability model drives them: the `InterruptSourceGroup` operations
 * it needs, on MSI configs, plus `batch`.
 */
export interface MessageVectorGroup {
  /** 'msi' for message vectors; a capability refuses a group of any other kind. */
  interruptType(): InterruptSourceType;
  /** Number of vectors. */
  len(): number;
  /** The guest enabled the block (MSI Enable, MSI-X Enable). */
  readonly enabled: boolean;
  /** The group can no longer be used (a destroyed `ChipInterruptGroup`); a backend that cannot be destroyed leaves it out. */
  readonly destroyed?: boolean;
  /** The guest enables the block with one message per vector. */
  enable(configs: readonly MsiIrqSourceConfig[]): void;
  /** The guest disables the block: nothing is delivered, pending interrupts are kept. */
  disable(): void;
  /** The guest reprograms an enabled vector's message. */
  update(vector: number, config: MsiIrqSourceConfig): void;
  /** The vector is masked for delivery: its interrupts are held pending. */
  mask(vector: number): void;
  /**
   * The vector is unmasked for delivery: what it held is delivered once. May throw ENOSPC
   * (`isOutOfGsis`) when no GSI is left for it; it then stays masked for delivery. A backend that
   * holds such a vector back itself (`VfioVectorGroup`) does not throw.
   */
  unmask(vector: number): void;
  /** Whether the vector holds an interrupt the guest has not been given (the pending bit). */
  getPendingState(vector: number): boolean;
  /** Runs `body` as one guest access: the backend's work for the calls it makes (route pushes, host calls) is done once, at the end. */
  batch<T>(body: () => T): T;
}

/** What a capability model counts of the guest's accesses (guest accesses never throw). */
export const GUEST_ACCESS_COUNTER_NAMES = [
  /** Sizes, alignments or offsets the spec does not allow: dropped, reads return all ones. */
  'ignoredAccesses',
  /** Ones written to reserved bits: not stored. */
  'reservedBitWrites',
  /** Writes to read-only registers (Pending Bits, the PBA). */
  'readOnlyWrites',
] as const;
export type GuestAccessCounterName = (typeof GUEST_ACCESS_COUNTER_NAMES)[number];

const MAX_CAPABILITY_POINTER = 0xff;
const NEXT_POINTER_SHIFT = 8;
const MESSAGE_CONTROL_SHIFT = 16;

/** The next-capability pointer a caller gave (0, the default: this is the last), checked: EINVAL past 0xff. */
export function nextCapabilityPointer(nextCapability: number | undefined): number {
  const pointer = nextCapability ?? 0;
  checkRange(pointer, 0, MAX_CAPABILITY_POINTER, 'next capability pointer');
  return pointer;
}

/** A capability's first DWORD: Capability ID, Next Pointer, Message Control (PCI 3.0 §6.7, §6.8.1.1, §6.8.2.1). */
export function capabilityHeader(capabilityId: number, nextCapability: number, messageControl: number): number {
  return (capabilityId | (nextCapability << NEXT_POINTER_SHIFT) | (messageControl << MESSAGE_CONTROL_SHIFT)) >>> 0;
}

/** The Message Control half of a header DWORD. */
export function messageControlOf(header: number): number {
  return header >>> MESSAGE_CONTROL_SHIFT;
}

/** Pending bits of `count` vectors from `first` (bit 0 is `first`): an MSI-X PBA DWORD, or MSI's Pending Bits. */
export function pendingBits(vectors: MessageVectorGroup, first: number, count: number): number {
  let bits = 0;
  const last = Math.min(first + count, vectors.len());
  for (let vector = first; vector < last; vector++) if (vectors.getPendingState(vector)) bits |= 1 << (vector - first);
  return bits >>> 0;
}

/**
 * Makes `vector` deliverable (`group.unmask`). False when the group has no GSI left for it
 * (ENOSPC): the vector then stays masked for delivery, its interrupts held pending, and the
 * capability retries at the vector's next unmask. Any other refusal is a bug and is rethrown.
 */
export function unmaskForDelivery(group: MessageVectorGroup, vector: number): boolean {
  try {
    group.unmask(vector);
    return true;
  } catch (error) {
    if (!isOutOfGsis(error)) throw error;
    return false;
  }
}
