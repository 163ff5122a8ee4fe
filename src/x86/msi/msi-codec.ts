/**
 * MSI address/data encode and decode (Intel SDM vol. 3, §11.11 "Message Signalled Interrupts";
 * x86-controllers.md §4).
 *
 * An MSI is a 32-bit memory write of `data` to `address` in the interrupt window 0xFEExxxxx.
 * The address carries the destination, the data carries the vector and the delivery fields:
 *
 *   address low   31:20  0xFEE (the interrupt window)
 *                 19:12  destination ID bits 7:0
 *                 11:5   reserved; destination ID bits 14:8 with the extended-destination-ID scheme
 *                  4     reserved (interrupt-remapping "remappable format" flag; 0 here)
 *                  3     RH, redirection hint: lowest-priority arbitration among the destinations
 *                  2     DM, destination mode: 0 physical, 1 logical
 *                 1:0    don't care
 *   address high  31:8   destination ID bits 31:8 with KVM's 32-bit destination IDs
 *                        (KVM_X2APIC_API_USE_32BIT_IDS); bits 7:0 must then be 0
 *   data           7:0   vector
 *                 10:8   delivery mode (011 and 110 reserved for MSIs)
 *                 13:11  reserved
 *                  14    level: 1 assert, 0 de-assert (meaningful for level trigger only)
 *                  15    trigger mode: 0 edge, 1 level
 *                 31:16  reserved
 *
 * The codec is pure: it keeps no state and never looks at bits 31:20 of the address when decoding.
 * Whether a write is an interrupt at all (`isInterruptAddress`) is the deliverer's question: the
 * `ApicBus` drops writes outside the window and counts them.
 */

import { check, ErrorCode, IrqChipError } from '../../base/errors.ts';
import { isU32, U32_MAX } from '../../base/integers.ts';
import {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  interruptMessage,
  TriggerMode,
  type InterruptMessage,
} from '../interrupt-message.ts';

// ---- Address fields ---------------------------------------------------------------------------

/** Bits 31:20 of every MSI address: the local APIC interrupt window (SDM §11.11.1). */
export const MSI_ADDRESS_WINDOW = 0xfee00000;
const ADDRESS_WINDOW_MASK = 0xfff00000;
const ADDRESS_DESTINATION_SHIFT = 12;
const ADDRESS_DESTINATION_MASK = 0xff;
/** Bits 11:5: destination ID bits 14:8 under the extended-destination-ID scheme (§4.3). */
const ADDRESS_EXTENDED_DESTINATION_SHIFT = 5;
const ADDRESS_EXTENDED_DESTINATION_MASK = 0x7f;
/** Bit 4: interrupt-remapping format flag. Reserved (0) without an IOMMU. */
const ADDRESS_REMAPPABLE_FORMAT = 1 << 4;
const ADDRESS_REDIRECTION_HINT = 1 << 3;
const ADDRESS_DESTINATION_MODE_SHIFT = 2;
/** Address bits that no enabled scheme gives a meaning: 11:4 (the ext-dest bits only when off). */
const ADDRESS_RESERVED_BITS = 0x00000ff0;
/** With 32-bit destination IDs, address_hi bits 7:0 must be zero (KVM rejects the route). */
const ADDRESS_HIGH_RESERVED_BITS = 0x000000ff;
const ADDRESS_HIGH_DESTINATION_MASK = 0xffffff00;

// ---- Data fields ------------------------------------------------------------------------------

const DATA_VECTOR_MASK = 0xff;
const DATA_DELIVERY_MODE_SHIFT = 8;
const DATA_DELIVERY_MODE_MASK = 0x7;
const DATA_LEVEL_ASSERT = 1 << 14;
const DATA_TRIGGER_MODE_SHIFT = 15;
/** Data bits 13:11 and 31:16 are reserved (SDM §11.11.2). */
const DATA_RESERVED_BITS = 0xffff3800;

const MAX_XAPIC_DESTINATION = 0xff;
/** 8 bits from address 19:12 plus 7 from address 11:5. */
const MAX_EXTENDED_DESTINATION = 0x7fff;

/**
 * How destination IDs wider than 8 bits are carried (x86-controllers.md §4.3). At most one scheme
 * may be on: they are alternative encodings of the same bits.
 */
export interface MsiDestinationFormat {
  /**
   * KVM_X2APIC_API_USE_32BIT_IDS: address_hi bits 31:8 are destination bits 31:8, and an
   * address_hi with bits 7:0 set is invalid (EINVAL). Off: address_hi is ignored, as KVM does.
   */
  readonly x2apicDestinationIds?: boolean;
  /**
   * The 15-bit extended destination ID (KVM_FEATURE_MSI_EXT_DEST_ID): address bits 11:5 are
   * destination bits 14:8, unless bit 4 (remappable format) is set.
   */
  readonly extendedDestinationId?: boolean;
}

/** The fields an MSI carries. `level` must be `true` for edge trigger (see `encodeMsi`). */
export interface MsiFields {
  readonly destination: number;
  readonly destinationMode: DestinationMode;
  readonly redirectionHint: boolean;
  readonly deliveryMode: DeliveryMode;
  readonly triggerMode: TriggerMode;
  readonly level: boolean;
  readonly vector: number;
}

/** An MSI as a device would write it: the 64-bit address as two 32-bit halves, and the data. */
export interface EncodedMsi {
  readonly addressLow: number;
  readonly addressHigh: number;
  readonly data: number;
}

/** An `InterruptMessage` whose fields can be overwritten, so a hot path can reuse one object. */
export type MutableInterruptMessage = { -readonly [Field in keyof InterruptMessage]: InterruptMessage[Field] };

/** Whether `addressLow` lies in the interrupt window; a write elsewhere is a plain memory write. */
export function isInterruptAddress(addressLow: number): boolean {
  return (addressLow & ADDRESS_WINDOW_MASK) >>> 0 === MSI_ADDRESS_WINDOW;
}

/** Whether `deliveryMode` is one an MSI may carry (SDM §11.11.2: 011 and 110 are reserved). */
export function isMsiDeliveryMode(deliveryMode: number): boolean {
  return deliveryMode !== DeliveryMode.RemoteRead && deliveryMode !== DeliveryMode.StartUp;
}

/**
 * Whether the MSI sets reserved bits: address bits 11:4 (only bit 4 when the extended destination
 * ID gives 11:5 a meaning) or data bits 13:11 and 31:16. Hardware ignores them; the bus counts
 * such messages so a misprogrammed device is visible.
 */
export function hasReservedBits(addressLow: number, data: number, extendedDestinationId: boolean): boolean {
  const reservedAddressBits = extendedDestinationId ? ADDRESS_REMAPPABLE_FORMAT : ADDRESS_RESERVED_BITS;
  return (addressLow & reservedAddressBits) !== 0 || (data & DATA_RESERVED_BITS) !== 0;
}

/**
 * Throws EINVAL unless `value` is an unsigned 32-bit integer (a JS number in [0, 2^32)). On the
 * delivery path: the message is built only on failure.
 */
function checkUint32(value: number, what: string): void {
  if (!isU32(value)) {
    throw new IrqChipError(ErrorCode.EINVAL, `${what} must be an unsigned 32-bit integer, got ${String(value)}`);
  }
}

/** Throws EINVAL unless the three words are unsigned 32-bit integers (for callers that decode in place). */
export function checkMsiWords(addressLow: number, addressHigh: number, data: number): void {
  checkUint32(addressLow, 'MSI address_lo');
  checkUint32(addressHigh, 'MSI address_hi');
  checkUint32(data, 'MSI data');
}

/** Throws EINVAL when `format` enables both wide-destination schemes. */
export function checkMsiDestinationFormat(format: MsiDestinationFormat): void {
  check(
    !(format.x2apicDestinationIds === true && format.extendedDestinationId === true),
    ErrorCode.EINVAL,
    'MSI destination format: 32-bit destination IDs and the extended destination ID are alternatives; enable at most one',
  );
}

/**
 * The destination ID of an MSI under `format` (§4.3). Throws EINVAL for an address_hi with bits 7:0
 * set when 32-bit destination IDs are on: KVM rejects such a route and KVM_SIGNAL_MSI fails (M5).
 */
function decodeDestination(
  addressLow: number,
  addressHigh: number,
  x2apicDestinationIds: boolean,
  extendedDestinationId: boolean,
): number {
  const lowBits = (addressLow >>> ADDRESS_DESTINATION_SHIFT) & ADDRESS_DESTINATION_MASK;
  if (x2apicDestinationIds) {
    if ((addressHigh & ADDRESS_HIGH_RESERVED_BITS) !== 0) {
      throw new IrqChipError(
        ErrorCode.EINVAL,
        `MSI address_hi 0x${addressHigh.toString(16)} has bits 7:0 set, invalid with 32-bit destination IDs`,
      );
    }
    return ((addressHigh & ADDRESS_HIGH_DESTINATION_MASK) | lowBits) >>> 0;
  }
  // §4.3 Recommendation: bits 11:5 are destination bits only when bit 4 says "compatibility format".
  if (extendedDestinationId && (addressLow & ADDRESS_REMAPPABLE_FORMAT) === 0) {
    const highBits = (addressLow >>> ADDRESS_EXTENDED_DESTINATION_SHIFT) & ADDRESS_EXTENDED_DESTINATION_MASK;
    return (highBits << 8) | lowBits;
  }
  return lowBits;
}

/**
 * Decodes an MSI into `target` (overwriting every field), so the bus can reuse one object per
 * message. Arguments are trusted to be unsigned 32-bit integers; `decodeMsi` checks them.
 *
 * Level: SDM §11.11.2 says an edge-triggered message is always an assert and the level bit
 * matters only for level trigger. KVM instead forces level = 1 for every MSI (§4.2/§4.4); we
 * follow the SDM, so a level-triggered MSI with bit 14 clear is a de-assert, which the target
 * LAPIC drops (§3.4). Linux writes edge MSIs with bit 14 clear, and those are asserts here too.
 * Destination mode is honoured even when RH = 0 (SDM says it is then ignored; KVM, QEMU and
 * crosvm all honour it, §4.4).
 */
export function decodeMsiInto(
  target: MutableInterruptMessage,
  addressLow: number,
  addressHigh: number,
  data: number,
  x2apicDestinationIds: boolean,
  extendedDestinationId: boolean,
): void {
  const triggerMode = ((data >>> DATA_TRIGGER_MODE_SHIFT) & 1) as TriggerMode;
  target.destination = decodeDestination(addressLow, addressHigh, x2apicDestinationIds, extendedDestinationId);
  target.destinationMode = ((addressLow >>> ADDRESS_DESTINATION_MODE_SHIFT) & 1) as DestinationMode;
  target.redirectionHint = (addressLow & ADDRESS_REDIRECTION_HINT) !== 0;
  target.deliveryMode = ((data >>> DATA_DELIVERY_MODE_SHIFT) & DATA_DELIVERY_MODE_MASK) as DeliveryMode;
  target.vector = data & DATA_VECTOR_MASK;
  target.triggerMode = triggerMode;
  target.level = triggerMode === TriggerMode.Edge || (data & DATA_LEVEL_ASSERT) !== 0;
  target.shorthand = DestinationShorthand.None;
  target.sourceApic = undefined;
}

/**
 * Decodes an MSI into a new `InterruptMessage` (shorthand none, no source APIC). Never throws for
 * any 32-bit `data` or `addressLow` (bits 31:20 are not examined; see `isInterruptAddress`).
 * Throws EINVAL when an argument is not an unsigned 32-bit integer, when `format` enables both
 * wide-destination schemes, or for the address_hi that 32-bit destination IDs forbid (M5).
 */
export function decodeMsi(
  addressLow: number,
  addressHigh: number,
  data: number,
  format: MsiDestinationFormat = {},
): InterruptMessage {
  checkMsiWords(addressLow, addressHigh, data);
  checkMsiDestinationFormat(format);
  const message: MutableInterruptMessage = interruptMessage();
  decodeMsiInto(
    message,
    addressLow,
    addressHigh,
    data,
    format.x2apicDestinationIds === true,
    format.extendedDestinationId === true,
  );
  return message;
}

function maxDestination(format: MsiDestinationFormat): number {
  if (format.x2apicDestinationIds === true) return U32_MAX;
  if (format.extendedDestinationId === true) return MAX_EXTENDED_DESTINATION;
  return MAX_XAPIC_DESTINATION;
}

/** For one-bit fields a JavaScript caller may still pass anything in. */
function isBit(value: number): boolean {
  return value === 0 || value === 1;
}

function checkFields(fields: MsiFields, format: MsiDestinationFormat): void {
  const widest = maxDestination(format);
  check(
    Number.isInteger(fields.destination) && fields.destination >= 0 && fields.destination <= widest,
    ErrorCode.EINVAL,
    `MSI destination must be an integer in [0, 0x${widest.toString(16)}] for this format, got ${String(fields.destination)}`,
  );
  check(Number.isInteger(fields.vector) && fields.vector >= 0 && fields.vector <= DATA_VECTOR_MASK, ErrorCode.EINVAL, `MSI vector must be an integer in [0, 255], got ${String(fields.vector)}`);
  check(
    Number.isInteger(fields.deliveryMode) && fields.deliveryMode >= 0 && fields.deliveryMode <= DATA_DELIVERY_MODE_MASK,
    ErrorCode.EINVAL,
    `MSI delivery mode must be an integer in [0, 7], got ${String(fields.deliveryMode)}`,
  );
  check(isBit(fields.destinationMode), ErrorCode.EINVAL, 'MSI destination mode must be 0 or 1');
  check(isBit(fields.triggerMode), ErrorCode.EINVAL, 'MSI trigger mode must be 0 or 1');
  check(
    fields.triggerMode === TriggerMode.Level || fields.level,
    ErrorCode.EINVAL,
    'an edge-triggered MSI is always an assert (SDM §11.11.2); level must be true',
  );
}

/**
 * Encodes MSI fields as a device would write them. The level bit is written only for level
 * trigger: edge messages are asserts whatever bit 14 says, and Linux leaves it clear for them.
 * Throws EINVAL when a field is out of range,
 * including a destination wider than `format` can carry (8 bits by default, 15 with the extended
 * destination ID, 32 with 32-bit destination IDs). `decodeMsi(encodeMsi(f, fmt), fmt)` gives `f` back.
 */
export function encodeMsi(fields: MsiFields, format: MsiDestinationFormat = {}): EncodedMsi {
  checkMsiDestinationFormat(format);
  checkFields(fields, format);
  const destination = fields.destination;
  const extendedBits =
    format.extendedDestinationId === true
      ? ((destination >>> 8) & ADDRESS_EXTENDED_DESTINATION_MASK) << ADDRESS_EXTENDED_DESTINATION_SHIFT
      : 0;
  const addressLow =
    (MSI_ADDRESS_WINDOW |
      ((destination & ADDRESS_DESTINATION_MASK) << ADDRESS_DESTINATION_SHIFT) |
      extendedBits |
      (fields.redirectionHint ? ADDRESS_REDIRECTION_HINT : 0) |
      (fields.destinationMode << ADDRESS_DESTINATION_MODE_SHIFT)) >>>
    0;
  const addressHigh = format.x2apicDestinationIds === true ? (destination & ADDRESS_HIGH_DESTINATION_MASK) >>> 0 : 0;
  const data =
    (fields.vector |
      (fields.deliveryMode << DATA_DELIVERY_MODE_SHIFT) |
      (fields.triggerMode === TriggerMode.Level && fields.level ? DATA_LEVEL_ASSERT : 0) |
      (fields.triggerMode << DATA_TRIGGER_MODE_SHIFT)) >>>
    0;
  return { addressLow, addressHigh, data };
}

