/**
 * The IOAPIC redirection-table entry (RTE): its bit layout and the interrupt message it describes.
 *
 * An RTE is 64 bits, read and written by the guest as two 32-bit halves (82093AA datasheet §3.2.4;
 * x86-controllers.md §2.3).
 *
 *   low half   7:0    vector
 *              10:8   delivery mode (011 and 110 reserved)
 *              11     destination mode: 0 physical, 1 logical
 *              12     delivery status (read-only)
 *              13     polarity (stored, ignored)
 *              14     remote IRR (read-only)
 *              15     trigger mode: 0 edge, 1 level
 *              16     mask
 *              31:17  reserved
 *   high half  23:0   RTE 55:32, reserved; RTE 55:49 carry destination bits 14:8 under the
 *                     extended-destination-ID scheme (x86-controllers.md §4.3); RTE 48 is the
 *                     remappable-format flag of interrupt remapping (not modelled)
 *              31:24  RTE 63:56, destination
 *
 * Everything here is pure: the `Ioapic` owns the words, this file only interprets them.
 */

import { DeliveryMode, DestinationMode, interruptMessage, TriggerMode, type InterruptMessage } from '../interrupt-message.ts';

const RTE_VECTOR_MASK = 0xff;
export const RTE_DELIVERY_MODE_SHIFT = 8;
const RTE_DELIVERY_MODE_MASK = 0x7;
export const RTE_DESTINATION_MODE_LOGICAL = 1 << 11;
/** Delivery status: "send pending". Read-only; our delivery is synchronous, so it always reads 0. */
export const RTE_DELIVERY_STATUS = 1 << 12;
/** Polarity (1 = active low). Stored for the guest, ignored for input (x86-controllers.md §2.6, §6.6). */
export const RTE_POLARITY_ACTIVE_LOW = 1 << 13;
/** Remote IRR: a level interrupt was accepted and its EOI has not come back. Read-only. */
export const RTE_REMOTE_IRR = 1 << 14;
export const RTE_TRIGGER_LEVEL = 1 << 15;
export const RTE_MASKED = 1 << 16;
/** Bits 31:17 of the low half are reserved. */
export const RTE_LOW_RESERVED = 0xfffe0000;
/** Bits the guest cannot change through IOWIN (x86-controllers.md §2.5 step 2, §6.3). */
export const RTE_LOW_READ_ONLY = RTE_DELIVERY_STATUS | RTE_REMOTE_IRR;

/** Destination field: high half bits 31:24 (RTE 63:56). */
export const RTE_DESTINATION_SHIFT = 24;
/** Extended destination ID: high half bits 23:17 (RTE 55:49) hold destination bits 14:8. */
const RTE_EXTENDED_DESTINATION_SHIFT = 17;
const RTE_EXTENDED_DESTINATION_MASK = 0x7f;
/** Reserved bits of the high half (RTE 55:32) without the extended-destination-ID scheme. */
const RTE_HIGH_RESERVED = 0x00ffffff;
/** Reserved bits of the high half (RTE 48:32) when bits 55:49 carry the extended destination. */
const RTE_HIGH_RESERVED_WITH_EXTENDED_DESTINATION = 0x0001ffff;

/** Value of the low half after RESET: masked, everything else 0 (x86-controllers.md §2.3). */
export const RTE_LOW_AT_RESET = RTE_MASKED;

/** Bits of the low half that shape the message sent for the entry. */
const RTE_LOW_MESSAGE_BITS =
  RTE_VECTOR_MASK | (RTE_DELIVERY_MODE_MASK << RTE_DELIVERY_MODE_SHIFT) | RTE_DESTINATION_MODE_LOGICAL | RTE_TRIGGER_LEVEL;

export function rteVector(low: number): number {
  return low & RTE_VECTOR_MASK;
}

export function rteDeliveryMode(low: number): number {
  return (low >>> RTE_DELIVERY_MODE_SHIFT) & RTE_DELIVERY_MODE_MASK;
}

export function rteIsMasked(low: number): boolean {
  return (low & RTE_MASKED) !== 0;
}

export function rteRemoteIrr(low: number): boolean {
  return (low & RTE_REMOTE_IRR) !== 0;
}

/** Encodings 011 and 110 of the delivery-mode field are reserved in an RTE (82093AA §3.2.4). */
export function isReservedDeliveryMode(mode: number): boolean {
  return mode === DeliveryMode.RemoteRead || mode === DeliveryMode.StartUp;
}

/**
 * Whether the entry behaves as level-triggered: trigger bit set and delivery mode Fixed or
 * Lowest-priority. The datasheets treat SMI, NMI, INIT and ExtINT as edge whatever the trigger
 * bit says (ICH2 datasheet, RTE bits 10:8: "NMI is treated as an edge triggered interrupt even if
 * it is programmed as level triggered ... does not set the RIRR bit"; the same for INIT; SMI and
 * ExtINT "require an edge trigger mode"; SDM vol. 3 §11.11.2 likewise). x86-controllers.md does
 * not make this distinction (KVM sets remote IRR for any level entry); we follow the datasheet,
 * because an ExtINT or NMI entry with remote IRR set would never see a matching EOI and stay stuck.
 */
export function rteIsLevelTriggered(low: number): boolean {
  if ((low & RTE_TRIGGER_LEVEL) === 0) return false;
  const mode = rteDeliveryMode(low);
  return mode === DeliveryMode.Fixed || mode === DeliveryMode.LowestPriority;
}

/**
 * Destination of the entry: RTE 63:56, plus RTE 55:49 as destination bits 14:8 when the VMM
 * advertises the extended-destination-ID scheme (x86-controllers.md §2.3, §4.3).
 */
function rteDestination(high: number, extendedDestination: boolean): number {
  const destination = high >>> RTE_DESTINATION_SHIFT;
  if (!extendedDestination) return destination;
  return destination | (((high >>> RTE_EXTENDED_DESTINATION_SHIFT) & RTE_EXTENDED_DESTINATION_MASK) << 8);
}

/** The reserved bits of the high half for this IOAPIC's destination format. */
export function rteHighReservedBits(extendedDestination: boolean): number {
  return extendedDestination ? RTE_HIGH_RESERVED_WITH_EXTENDED_DESTINATION : RTE_HIGH_RESERVED;
}

/**
 * The bits of an entry that determine its message, as one key per half: two entries with equal
 * keys send equal messages, so a message built for one key can be reused until the key changes.
 */
export function rteMessageKeyLow(low: number): number {
  return low & RTE_LOW_MESSAGE_BITS;
}

/**
 * Builds the message an entry sends on the APIC bus (82093AA §3.2.4; x86-controllers.md §2.7):
 * always an assert, no shorthand, no redirection hint. ExtINT entries send an ExtINT message whose
 * vector the LAPIC ignores (it takes the vector from the PIC's INTA cycle).
 */
export function rteMessage(low: number, high: number, extendedDestination: boolean): InterruptMessage {
  return Object.freeze(
    interruptMessage({
      destination: rteDestination(high, extendedDestination),
      destinationMode: (low & RTE_DESTINATION_MODE_LOGICAL) === 0 ? DestinationMode.Physical : DestinationMode.Logical,
      deliveryMode: rteDeliveryMode(low) as DeliveryMode,
      vector: rteVector(low),
      triggerMode: rteIsLevelTriggered(low) ? TriggerMode.Level : TriggerMode.Edge,
    }),
  );
}
