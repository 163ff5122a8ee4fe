/**
 * `MsiCapability`: the MSI capability of a PCI function (PCI Local Bus 3.0 §6.8.1), 64-bit address
 * capable with per-vector masking, over a `MessageVectorGroup` (pci-capability.ts): an emulated
 * device's MSI `ChipInterruptGroup`, or a passed-through function's `VfioVectorGroup`. Guest
 * writes become group operations, one batch per access:
 *
 * - Message Control: MSI Enable 0→1 enables the group, 1→0 disables it; Multiple Message Enable
 *   (MME) says how many vectors the function may use: 2^MME, at most the Multiple Message Capable
 *   count (MMC) the function offers (the group's size).
 * - Message Address, Upper Address, Data: every vector's message follows. Vector v sends the Data
 *   with its low MME bits replaced by v (§6.8.1.6, Message Data).
 * - Mask Bits: bit v masks vector v. A vector is deliverable when MSI is enabled, v < 2^MME and
 *   its mask bit is clear. A masked vector's interrupt is held (its Pending Bit) and sent once when
 *   the vector becomes deliverable again (§6.8.3.4, per-vector masking).
 * - Pending Bits (read-only): `getPendingState` of each vector.
 *
 * Layout (byte offsets): 0 Capability ID 0x05, 1 next pointer, 2 Message Control, 4 Message
 * Address, 8 Message Upper Address, 12 Message Data, 16 Mask Bits, 20 Pending Bits.
 *
 * Guest accesses never throw: accesses other than naturally aligned 1, 2 or 4 bytes inside the
 * structure are dropped (reads return all ones), `ignoredAccesses`; reserved bits (Message Control
 * 15:9, Address 1:0, Data 31:16, Mask Bits past MMC) and an MME above MMC (taken as MMC, as the
 * spec forbids it) are `reservedBitWrites`; Pending Bits writes, `readOnlyWrites`. Writes to the
 * read-only fields are ignored. A vector the group cannot give a GSI (a `ChipInterruptGroup`
 * whose budget is spent) stays masked for delivery, its interrupts held in its Pending Bit, and is
 * retried the next time the guest's writes make it deliverable: `gsiExhausted`.
 *
 * Used where its group is: on the chip owner's thread.
 */

import { check, checkRange, ErrorCode } from '../base/errors.ts';
import { U32_MAX, allOnes } from '../base/integers.ts';
import { msiConfig } from './chip-interrupt-group.ts';
import { InterruptSourceType, type MsiIrqSourceConfig } from './interrupt-source.ts';
import {
  GUEST_ACCESS_COUNTER_NAMES,
  capabilityHeader,
  messageControlOf,
  nextCapabilityPointer,
  pendingBits,
  unmaskForDelivery,
  type MessageVectorGroup,
} from './pci-capability.ts';
import { isConfigAccess, readLanes, writeLanes } from './register-lanes.ts';

export const MSI_CAPABILITY_ID = 0x05;
/** Bytes of the 64-bit, per-vector-masking layout. */
export const MSI_CAPABILITY_BYTES = 24;
/** The most vectors MSI offers: MMC encodes 1 to 32 (PCI 3.0 §6.8.1.3). */
export const MSI_MAX_VECTORS = 32;

/** Message Control bits (PCI 3.0 §6.8.1.3). */
export const MSI_ENABLE = 1 << 0;
const MMC_SHIFT = 1;
export const MSI_MME_SHIFT = 4;
const MME_FIELD = 0x7 << MSI_MME_SHIFT;
const ADDRESS_64_CAPABLE = 1 << 7;
const PER_VECTOR_MASK_CAPABLE = 1 << 8;
const MESSAGE_CONTROL_RESERVED = 0xfe00;
const ADDRESS_LOW_RESERVED = 0x3;
const DATA_RESERVED = 0xffff0000;

/** DWORD registers of the structure. */
const Register = { Header: 0, Address: 1, UpperAddress: 2, Data: 3, MaskBits: 4, PendingBits: 5 } as const;

export const MSI_COUNTER_NAMES = [...GUEST_ACCESS_COUNTER_NAMES, 'gsiExhausted'] as const;
export type MsiCounterName = (typeof MSI_COUNTER_NAMES)[number];

export interface MsiCapabilityOptions {
  /**
   * A new (disabled) MSI group of 1, 2, 4, 8, 16 or 32 vectors: an `InterruptManager`'s
   * `ChipInterruptGroup`, or `VfioPciInterrupts.msi`.
   */
  readonly group: MessageVectorGroup;
  /** Configuration-space offset of the next capability (0: this is the last). */
  readonly nextCapability?: number;
}

export class MsiCapability {
  private readonly group: MessageVectorGroup;
  private readonly capableLog2: number;
  private readonly nextCapability: number;
  /** Enable and MME, as written (MME clamped to MMC). */
  private control = 0;
  private addressLow = 0;
  private addressHigh = 0;
  private data = 0;
  private maskBits = 0;
  private readonly counts: Record<MsiCounterName, number> = { ignoredAccesses: 0, reservedBitWrites: 0, readOnlyWrites: 0, gsiExhausted: 0 };

  constructor(options: MsiCapabilityOptions) {
    const { group } = options;
    check(group.interruptType() === InterruptSourceType.Msi, ErrorCode.EINVAL, 'MSI vectors are an MSI group');
    check(!group.enabled && group.destroyed !== true, ErrorCode.EINVAL, 'the MSI group must be new: disabled, not destroyed');
    checkRange(group.len(), 1, MSI_MAX_VECTORS, 'MSI vector count');
    this.capableLog2 = Math.log2(group.len());
    check(Number.isInteger(this.capableLog2), ErrorCode.EINVAL, 'MSI offers 1, 2, 4, 8, 16 or 32 vectors');
    this.group = group;
    this.nextCapability = nextCapabilityPointer(options.nextCapability);
  }

  /** Message Control as the guest reads it. */
  messageControl(): number {
    return this.control | (this.capableLog2 << MMC_SHIFT) | ADDRESS_64_CAPABLE | PER_VECTOR_MASK_CAPABLE;
  }

  /** MSI Enable: the function sends messages, and may not use its INTx pin (§6.8.1.3). */
  get enabled(): boolean {
    return (this.control & MSI_ENABLE) !== 0;
  }

  /** Vectors the guest enabled the function to use: 2^MME. */
  enabledVectorCount(): number {
    return 1 << ((this.control & MME_FIELD) >> MSI_MME_SHIFT);
  }

  readConfig(offset: number, size: number): number {
    if (!isConfigAccess(offset, size, MSI_CAPABILITY_BYTES)) {
      this.counts.ignoredAccesses++;
      return allOnes(size);
    }
    return readLanes(this.register(offset >> 2), offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    if (!isConfigAccess(offset, size, MSI_CAPABILITY_BYTES)) {
      this.counts.ignoredAccesses++;
      return;
    }
    const register = offset >> 2;
    const written = writeLanes(this.register(register), offset, size, value);
    const touched = writeLanes(0, offset, size, value); // only the bits this access wrote
    this.group.batch(() => {
      this.writeRegister(register, written, touched);
    });
  }

  counters(): Readonly<Record<MsiCounterName, number>> {
    return { ...this.counts };
  }

  // ---- Internals ------------------------------------------------------------------------------

  private register(register: number): number {
    switch (register) {
      case Register.Header:
        return capabilityHeader(MSI_CAPABILITY_ID, this.nextCapability, this.messageControl());
      case Register.Address:
        return this.addressLow;
      case Register.UpperAddress:
        return this.addressHigh;
      case Register.Data:
        return this.data;
      case Register.MaskBits:
        return this.maskBits;
      default:
        return pendingBits(this.group, 0, this.group.len());
    }
  }

  private writeRegister(register: number, value: number, touched: number): void {
    switch (register) {
      case Register.Header:
        this.writeMessageControl(messageControlOf(value), messageControlOf(touched));
        return;
      case Register.Address:
        this.setMessage(this.stored(value, touched, ADDRESS_LOW_RESERVED), this.addressHigh, this.data);
        return;
      case Register.UpperAddress:
        this.setMessage(this.addressLow, value, this.data);
        return;
      case Register.Data:
        this.setMessage(this.addressLow, this.addressHigh, this.stored(value, touched, DATA_RESERVED));
        return;
      case Register.MaskBits:
        this.setMaskBits(this.stored(value, touched, ~this.allVectorBits()));
        return;
      default:
        if (touched !== 0) this.counts.readOnlyWrites++;
    }
  }

  /** `value` without its reserved bits, counting a write that set any. */
  private stored(value: number, touched: number, reserved: number): number {
    if ((touched & reserved) !== 0) this.counts.reservedBitWrites++;
    return (value & ~reserved) >>> 0;
  }

  private writeMessageControl(value: number, touched: number): void {
    if ((touched & MESSAGE_CONTROL_RESERVED) !== 0) this.counts.reservedBitWrites++;
    let enableLog2 = (value & MME_FIELD) >> MSI_MME_SHIFT;
    if (enableLog2 > this.capableLog2) {
      this.counts.reservedBitWrites++;
      enableLog2 = this.capableLog2;
    }
    const next = (value & MSI_ENABLE) | (enableLog2 << MSI_MME_SHIFT);
    if (next === this.control) return;
    const wasEnabled = this.enabled;
    this.control = next;
    if (!this.enabled) {
      this.group.disable();
      return;
    }
    if (wasEnabled) this.updateMessages(); // MME changed: the low data bits of each vector
    else this.enableGroup();
    this.syncVectors();
  }

  /**
   * MSI Enable 0→1: the group starts with every vector masked, so enabling needs no GSI and cannot
   * fail; `syncVectors` then unmasks each deliverable vector on its own (a spent budget then holds
   * back only the vectors it could not serve).
   */
  private enableGroup(): void {
    for (let vector = 0; vector < this.group.len(); vector++) this.group.mask(vector);
    this.group.enable(Array.from({ length: this.group.len() }, (_, vector) => this.messageOf(vector)));
  }

  private setMessage(addressLow: number, addressHigh: number, data: number): void {
    if (addressLow === this.addressLow && addressHigh === this.addressHigh && data === this.data) return;
    this.addressLow = addressLow;
    this.addressHigh = addressHigh;
    this.data = data;
    if (this.enabled) this.updateMessages();
  }

  private setMaskBits(bits: number): void {
    if (bits === this.maskBits) return;
    this.maskBits = bits;
    if (this.enabled) this.syncVectors();
  }

  private updateMessages(): void {
    for (let vector = 0; vector < this.enabledVectorCount(); vector++) this.group.update(vector, this.messageOf(vector));
  }

  /** Each vector's delivery mask: past 2^MME, or its mask bit set. */
  private syncVectors(): void {
    const usable = this.enabledVectorCount();
    for (let vector = 0; vector < this.group.len(); vector++) {
      if (vector >= usable || (this.maskBits & (1 << vector)) !== 0) this.group.mask(vector);
      else if (!unmaskForDelivery(this.group, vector)) this.counts.gsiExhausted++;
    }
  }

  /** Vector v's message: the Data with its low MME bits replaced by v. */
  private messageOf(vector: number): MsiIrqSourceConfig {
    const vectorBits = this.enabledVectorCount() - 1;
    return msiConfig(this.addressLow, this.addressHigh, (this.data & ~vectorBits) | (vector & vectorBits));
  }

  private allVectorBits(): number {
    return this.group.len() >= MSI_MAX_VECTORS ? U32_MAX : (1 << this.group.len()) - 1;
  }
}
