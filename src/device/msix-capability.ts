/**
 * The MSI-X capability of a PCI function: the capability structure in configuration space, and
 * the vector table and pending bit array (PBA) behind a BAR (PCI Local Bus 3.0 §6.8.2; PCIe Base
 * §7.7.2, MSI-X Capability and Table Structure).
 *
 * The vectors are a `MessageVectorGroup` (pci-capability.ts): an emulated device's MSI
 * `ChipInterruptGroup` (interrupt-source.ts says why MSI-X is expressed that way), or a
 * passed-through function's `VfioVectorGroup` (the VMM traps the table: vfio-pci does not let the
 * guest reach the real one, and `VfioPciInterrupts` turns what the group needs into SET_IRQS
 * calls). This model is the guest's side of it. Guest writes become group calls:
 *
 * - message control: MSI-X Enable (bit 15) 0→1 enables the group with the table's messages, 1→0
 *   disables it; Function Mask (bit 14) masks every vector at once. A vector is masked for delivery
 *   when its own Mask bit OR the Function Mask is set, or MSI-X is disabled (seed-apis.md §6.5;
 *   openvmm ignores bit 14 and Dragonball's PBA ignores it: both fixed here).
 * - a table entry's message words → `group.update(i)`; its Mask bit → `group.mask(i)`/`unmask(i)`.
 * - a PBA read → `group.getPendingState(i)` for each vector it covers, which counts interrupts
 *   raised through the vector's notifier event that the VMM never saw (§6.3).
 *
 * The group delivers an interrupt held on a masked vector exactly once when the vector becomes
 * unmasked: a masked vector's interrupt sets its pending bit, and once the vector is unmasked with
 * the bit set the function sends the message and clears the bit (PCI Local Bus 3.0 §6.8.3, MSI
 * and MSI-X operation: per-vector masking and function masking). Every change a guest access
 * makes is one `group.batch`: its route updates are pushed once (a Function Mask clear over 32
 * vectors is one push, §6.12), and VFIO makes at most the host calls the access needs. Vectors the
 * guest never unmasks take no GSI and no route (§6.11). The "retried at its next unmask" below
 * means the next time the guest's writes make the vector deliverable again (a Mask bit 1→0, a
 * Function Mask clear, an MSI-X enable).
 *
 * Per PCIe §7.7.2 every entry resets masked (Dragonball starts them unmasked, §3.7), MSI-X Enable
 * and Function Mask reset clear. Guest accesses never throw; what the spec leaves undefined or
 * forbids gets a defined answer and a counter:
 * - table and PBA accesses must be aligned DWORDs or aligned QWORDs inside the structure; any
 *   other access is dropped (a read returns all ones): `ignoredAccesses`;
 * - reserved bits (address bits 1:0, Vector Control bits 31:1, Message Control bits 13:11) read 0
 *   and are not stored: `reservedBitWrites`;
 * - the PBA is read-only: `readOnlyWrites`; the capability ID, next pointer, table size and the
 *   Table/PBA location registers are read-only too, and writes to them are ignored, as hardware
 *   ignores them;
 * - an unmask the group refuses for want of a GSI (device or VM budget spent) leaves the vector
 *   masked for delivery, its interrupts held in the PBA, and is retried at its next unmask:
 *   `gsiExhausted`. (A `VfioVectorGroup` holds such a vector back itself and never refuses:
 *   `VfioPciInterrupts` counts it.)
 *
 * The capability is used where its group is: on the chip owner's thread (guest accesses to the
 * BAR and to configuration space are forwarded there).
 */

import { ErrorCode, check, checkRange } from '../base/errors.ts';
import { allOnes } from '../base/integers.ts';
import type { BusDevice } from '../chip/bus.ts';
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
import { DWORD_BYTES, QWORD_BYTES, isConfigAccess, isNaturalAccess, loadLe32, readLanes, storeLe32, writeLanes } from './register-lanes.ts';

/** PCI capability ID of MSI-X. */
export const MSIX_CAPABILITY_ID = 0x11;
/** Bytes of the capability structure in configuration space. */
export const MSIX_CAPABILITY_BYTES = 12;
export const MSIX_TABLE_ENTRY_BYTES = 16;
/** Message Control's Table Size is 11 bits, N - 1 encoded (PCI 3.0 §6.8.2.3). */
export const MSIX_MAX_VECTORS = 2048;

/** Message Control bits (PCIe §7.7.2, Message Control for MSI-X). */
export const MSIX_ENABLE = 1 << 15;
export const MSIX_FUNCTION_MASK = 1 << 14;
const MESSAGE_CONTROL_RESERVED = 0x3800;
const MESSAGE_CONTROL_WRITABLE = MSIX_ENABLE | MSIX_FUNCTION_MASK;

/** Table entry DWORDs: Message Address, Message Upper Address, Message Data, Vector Control (PCIe §7.7.2). */
export const MsixEntryField = { AddressLow: 0, AddressHigh: 1, Data: 2, VectorControl: 3 } as const;
const DWORDS_PER_ENTRY = 4;
/** Message Address bits 1:0: software must write zeros (DWORD alignment). */
const ADDRESS_LOW_RESERVED = 0x3;
/** Vector Control bit 0. Bits 31:1 are reserved here (PCIe 6 gives 31:16 to TPH steering tags, not modelled). */
export const VECTOR_CONTROL_MASK = 1;

/** Table Offset / PBA Offset registers: BIR in bits 2:0, the offset (QWORD aligned) above it. */
/** The offset field is bits 31:3 of a 32-bit register. */
const MAX_STRUCTURE_OFFSET = 0xfffffff8;
const MAX_BIR = 5;
/** Configuration-space DWORDs: the header (ID, next pointer, Message Control), then Table and PBA Offset/BIR. */
const HEADER_REGISTER = 0;
/** Table and PBA accesses: aligned DWORDs or QWORDs (PCIe §7.7.2). */
const MSIX_ACCESS_SIZES = [DWORD_BYTES, QWORD_BYTES] as const;
const VECTORS_PER_PBA_DWORD = 32;
const VECTORS_PER_PBA_QWORD = 64;
const ALL_ONES_BYTE = 0xff;

export const MSIX_COUNTER_NAMES = [...GUEST_ACCESS_COUNTER_NAMES, 'gsiExhausted'] as const;
export type MsixCounterName = (typeof MSIX_COUNTER_NAMES)[number];

/** Where a structure lives: BAR `bar` (0–5), at `offset` bytes (a multiple of 8). */
export interface MsixStructureLocation {
  readonly bar: number;
  readonly offset: number;
}

export interface MsixCapabilityOptions {
  /**
   * A disabled MSI group with one vector per table entry (1..2048): an `InterruptManager`'s
   * `ChipInterruptGroup`, or `VfioPciInterrupts.msix`.
   */
  readonly group: MessageVectorGroup;
  readonly table: MsixStructureLocation;
  readonly pba: MsixStructureLocation;
  /** Configuration-space offset of the next capability (0: this is the last). */
  readonly nextCapability?: number;
}

// State words (a plain Int32Array: the capability lives on one thread):
//   0                 message control bits 15:14 as written (table size is computed)
//   1 .. 4            counters, in the order of MSIX_COUNTER_NAMES
//   5 + 4v + f        table entry v, field f (MsixEntryField): stored as written, reserved bits clear
const MESSAGE_CONTROL = 0;
const FIRST_COUNTER = 1;
const TABLE = FIRST_COUNTER + MSIX_COUNTER_NAMES.length;

export class MsixCapability {
  readonly vectorCount: number;
  /** Bytes of the table: 16 per vector. */
  readonly tableBytes: number;
  /** Bytes of the PBA: one bit per vector, in whole QWORDs. */
  readonly pbaBytes: number;
  private readonly group: MessageVectorGroup;
  private readonly words: Int32Array;
  private readonly nextCapability: number;
  private readonly locations: readonly [table: number, pba: number];
  /** The bus adapters' data buffers (a QWORD, and a view of its low DWORD), so bus accesses do not allocate. */
  private readonly qwordScratch = new Uint8Array(QWORD_BYTES);
  private readonly dwordScratch = this.qwordScratch.subarray(0, DWORD_BYTES);

  constructor(options: MsixCapabilityOptions) {
    const { group, table, pba } = options;
    check(group.interruptType() === InterruptSourceType.Msi, ErrorCode.EINVAL, 'MSI-X vectors are an MSI group');
    check(!group.enabled && group.destroyed !== true, ErrorCode.EINVAL, 'the MSI-X group must be new: disabled, not destroyed');
    checkRange(group.len(), 1, MSIX_MAX_VECTORS, 'MSI-X vector count');
    this.nextCapability = nextCapabilityPointer(options.nextCapability);
    this.group = group;
    this.vectorCount = group.len();
    this.tableBytes = this.vectorCount * MSIX_TABLE_ENTRY_BYTES;
    this.pbaBytes = Math.ceil(this.vectorCount / VECTORS_PER_PBA_QWORD) * QWORD_BYTES;
    this.locations = [locationRegister(table, 'table'), locationRegister(pba, 'PBA')];
    this.words = new Int32Array(TABLE + this.vectorCount * DWORDS_PER_ENTRY);
    for (let vector = 0; vector < this.vectorCount; vector++) this.words[entryWord(vector, MsixEntryField.VectorControl)] = VECTOR_CONTROL_MASK;
  }

  // ---- Configuration space: the capability structure ----------------------------------------

  /** Message Control as the guest reads it: enable, function mask and the table size (N − 1). */
  messageControl(): number {
    return (this.words[MESSAGE_CONTROL] ?? 0) | (this.vectorCount - 1);
  }

  /** A guest read of `size` bytes at `offset` into the capability structure. */
  readConfig(offset: number, size: number): number {
    if (!isConfigAccess(offset, size, MSIX_CAPABILITY_BYTES)) return this.ignoredRead(size);
    return readLanes(this.configRegister(offset >> 2), offset, size);
  }

  /** A guest write: only Message Control's Enable and Function Mask bits are writable. */
  writeConfig(offset: number, size: number, value: number): void {
    if (!isConfigAccess(offset, size, MSIX_CAPABILITY_BYTES)) {
      this.count('ignoredAccesses');
      return;
    }
    if (offset >> 2 !== HEADER_REGISTER) return; // Table and PBA location registers are read-only.
    // Only the bits this access wrote can be reserved-bit writes; the other lanes keep their value.
    if ((messageControlOf(writeLanes(0, offset, size, value)) & MESSAGE_CONTROL_RESERVED) !== 0) this.count('reservedBitWrites');
    const written = messageControlOf(writeLanes(this.configRegister(HEADER_REGISTER), offset, size, value));
    this.setMessageControl(written & MESSAGE_CONTROL_WRITABLE);
  }

  // ---- The table and the PBA (MMIO) ---------------------------------------------------------

  /** A guest read of `data.length` bytes at `offset` into the table. */
  tableRead(offset: number, data: Uint8Array): void {
    if (!isMsixAccess(offset, data.length, this.tableBytes)) {
      this.ignoredRead(data.length, data);
      return;
    }
    for (let lane = 0; lane < data.length; lane += DWORD_BYTES) {
      const dword = (offset + lane) >> 2;
      storeLe32(data, lane, this.words[TABLE + dword] ?? 0);
    }
  }

  /** A guest write of `data.length` bytes at `offset` into the table. A QWORD is its two DWORDs, low first. */
  tableWrite(offset: number, data: Uint8Array): void {
    if (!isMsixAccess(offset, data.length, this.tableBytes)) {
      this.count('ignoredAccesses');
      return;
    }
    this.group.batch(() => {
      for (let lane = 0; lane < data.length; lane += DWORD_BYTES) this.writeTableDword((offset + lane) >> 2, loadLe32(data, lane));
    });
  }

  /** A guest read of the PBA: bit v is set while vector v holds a pending interrupt. */
  pbaRead(offset: number, data: Uint8Array): void {
    if (!isMsixAccess(offset, data.length, this.pbaBytes)) {
      this.ignoredRead(data.length, data);
      return;
    }
    for (let lane = 0; lane < data.length; lane += DWORD_BYTES) {
      storeLe32(data, lane, pendingBits(this.group, ((offset + lane) >> 2) * VECTORS_PER_PBA_DWORD, VECTORS_PER_PBA_DWORD));
    }
  }

  /** Pending bits are read-only (PCIe §7.7.2, Pending Bits for MSI-X PBA Entries): writes change nothing. */
  pbaWrite(offset: number, data: Uint8Array): void {
    this.count(isMsixAccess(offset, data.length, this.pbaBytes) ? 'readOnlyWrites' : 'ignoredAccesses');
  }

  /**
   * The table as a device on the chip's MMIO bus, placed at the BAR's address + table offset.
   * The bus carries at most 32 bits of data (bus.ts): an 8-byte read returns the QWORD's low half,
   * and an 8-byte write, whose high half is lost, is ignored and counted.
   */
  tableBusDevice(): BusDevice {
    return this.busDevice('msix-table', (offset, data) => { this.tableRead(offset, data); }, (offset, data) => { this.tableWrite(offset, data); });
  }

  /** The PBA as a device on the chip's MMIO bus (same 32-bit limits as `tableBusDevice`). */
  pbaBusDevice(): BusDevice {
    return this.busDevice('msix-pba', (offset, data) => { this.pbaRead(offset, data); }, (offset, data) => { this.pbaWrite(offset, data); });
  }

  counters(): Readonly<Record<MsixCounterName, number>> {
    const result = {} as Record<MsixCounterName, number>;
    MSIX_COUNTER_NAMES.forEach((name, index) => {
      result[name] = this.words[FIRST_COUNTER + index] ?? 0;
    });
    return result;
  }

  // ---- Internals ------------------------------------------------------------------------------

  private configRegister(register: number): number {
    if (register === HEADER_REGISTER) return capabilityHeader(MSIX_CAPABILITY_ID, this.nextCapability, this.messageControl());
    return this.locations[register - 1] ?? 0;
  }

  private get enabled(): boolean {
    return ((this.words[MESSAGE_CONTROL] ?? 0) & MSIX_ENABLE) !== 0;
  }

  private get functionMasked(): boolean {
    return ((this.words[MESSAGE_CONTROL] ?? 0) & MSIX_FUNCTION_MASK) !== 0;
  }

  private vectorMasked(vector: number): boolean {
    return ((this.words[entryWord(vector, MsixEntryField.VectorControl)] ?? 0) & VECTOR_CONTROL_MASK) !== 0;
  }

  private setMessageControl(next: number): void {
    const previous = this.words[MESSAGE_CONTROL] ?? 0;
    if (next === previous) return;
    this.words[MESSAGE_CONTROL] = next;
    const changed = previous ^ next;
    this.group.batch(() => {
      if ((changed & MSIX_ENABLE) !== 0) {
        if (this.enabled) this.enableGroup();
        else this.group.disable();
      } else if (this.enabled && (changed & MSIX_FUNCTION_MASK) !== 0) {
        for (let vector = 0; vector < this.vectorCount; vector++) if (!this.vectorMasked(vector)) this.syncVector(vector);
      }
    });
  }

  /**
   * MSI-X Enable 0→1: the group starts with every vector masked, so enabling needs no GSI and
   * cannot fail; then each vector the guest left unmasked is unmasked on its own (a spent budget
   * then holds back only the vectors it could not serve).
   */
  private enableGroup(): void {
    for (let vector = 0; vector < this.vectorCount; vector++) this.group.mask(vector);
    this.group.enable(Array.from({ length: this.vectorCount }, (_, vector) => this.messageOf(vector)));
    for (let vector = 0; vector < this.vectorCount; vector++) this.syncVector(vector);
  }

  /** Gives the group the vector's mask for delivery: its own Mask bit OR the Function Mask. */
  private syncVector(vector: number): void {
    if (this.functionMasked || this.vectorMasked(vector)) {
      this.group.mask(vector);
      return;
    }
    if (!unmaskForDelivery(this.group, vector)) this.count('gsiExhausted');
  }

  private writeTableDword(dword: number, value: number): void {
    const vector = dword >> 2;
    const field = dword & 3;
    const at = TABLE + dword;
    switch (field) {
      case MsixEntryField.AddressLow:
        if ((value & ADDRESS_LOW_RESERVED) !== 0) this.count('reservedBitWrites');
        this.setMessageWord(vector, at, value & ~ADDRESS_LOW_RESERVED);
        return;
      case MsixEntryField.AddressHigh:
      case MsixEntryField.Data:
        this.setMessageWord(vector, at, value);
        return;
      default: {
        if ((value & ~VECTOR_CONTROL_MASK) !== 0) this.count('reservedBitWrites');
        const control = value & VECTOR_CONTROL_MASK;
        if (control === this.words[at]) return;
        this.words[at] = control;
        if (this.enabled && !this.functionMasked) this.syncVector(vector);
      }
    }
  }

  /** Stores a message word; while MSI-X is enabled the group follows (a route change if the vector is routed). */
  private setMessageWord(vector: number, at: number, value: number): void {
    if (this.words[at] === (value | 0)) return;
    this.words[at] = value;
    if (this.enabled) this.group.update(vector, this.messageOf(vector));
  }

  private messageOf(vector: number): MsiIrqSourceConfig {
    const word = (field: number) => this.words[entryWord(vector, field)] ?? 0;
    return msiConfig(word(MsixEntryField.AddressLow), word(MsixEntryField.AddressHigh), word(MsixEntryField.Data));
  }

  private ignoredRead(size: number, data?: Uint8Array): number {
    this.count('ignoredAccesses');
    data?.fill(ALL_ONES_BYTE);
    return allOnes(size);
  }

  private busDevice(busName: string, read: (offset: number, data: Uint8Array) => void, write: (offset: number, data: Uint8Array) => void): BusDevice {
    return {
      busName,
      read: (offset, size) => {
        // Only DWORDs and QWORDs can be valid (PCIe §7.7.2); a QWORD read carries its low half.
        const data = size === QWORD_BYTES ? this.qwordScratch : size === DWORD_BYTES ? this.dwordScratch : undefined;
        if (data === undefined) return this.ignoredRead(size);
        read(offset, data);
        return loadLe32(data, 0);
      },
      write: (offset, size, value) => {
        // Byte and word writes are not allowed; an 8-byte write lost its high half on the bus.
        if (size !== DWORD_BYTES) {
          this.count('ignoredAccesses');
          return;
        }
        storeLe32(this.dwordScratch, 0, value);
        write(offset, this.dwordScratch);
      },
    };
  }

  private count(name: MsixCounterName): void {
    const at = FIRST_COUNTER + MSIX_COUNTER_NAMES.indexOf(name);
    this.words[at] = ((this.words[at] ?? 0) + 1) | 0;
  }
}

function entryWord(vector: number, field: number): number {
  return TABLE + vector * DWORDS_PER_ENTRY + field;
}

function locationRegister(location: MsixStructureLocation, what: string): number {
  checkRange(location.bar, 0, MAX_BIR, `${what} BAR`);
  checkRange(location.offset, 0, MAX_STRUCTURE_OFFSET, `${what} offset`);
  check(location.offset % QWORD_BYTES === 0, ErrorCode.EINVAL, `${what} offset must be QWORD aligned`);
  return (location.offset | location.bar) >>> 0;
}

/** Table and PBA: aligned DWORDs or aligned QWORDs only (PCIe §7.7.2; PCI 3.0 §6.8.2). */
function isMsixAccess(offset: number, size: number, bytes: number): boolean {
  return isNaturalAccess(offset, size, MSIX_ACCESS_SIZES, bytes);
}
