/**
 * `VfioMsixCapability`: the MSI-X capability a VMM shows the guest for a passed-through function
 * (PCI Local Bus 3.0 §6.8.2; PCIe Base §7.7.2): the capability structure in configuration space,
 * and the vector table and PBA, which the VMM traps (vfio-pci does not let the guest reach the
 * real table). Guest accesses become `VfioVectorGroup` operations, one batch per access, so that
 * `VfioPciInterrupts` makes at most the host calls one access needs:
 *
 * - Message Control: MSI-X Enable 0→1 enables the group with the table's messages and makes each
 *   vector deliverable that is unmasked; 1→0 disables it. The Function Mask masks every vector.
 *   A vector is masked for delivery when its own Mask bit or the Function Mask is set, or MSI-X is
 *   disabled (§6.5).
 * - A table entry's message words: `update` (the vector's route follows; no SET_IRQS).
 * - A Vector Control Mask bit: `mask` / `unmask`.
 * - A PBA read: `getPendingState` of each vector the access covers.
 *
 * The device layer's `MsixCapability` models the same registers over a `ChipInterruptGroup`; it
 * takes that class, not an interface, so it cannot drive a `VfioVectorGroup` (see the report of
 * issue 6). Entries reset masked, Enable and Function Mask clear (PCIe §7.7.2).
 *
 * Guest accesses never throw; what the spec leaves undefined gets a defined answer and a counter:
 * table and PBA accesses other than aligned DWORDs and QWORDs inside the structure are dropped (a
 * read returns all ones), `ignoredAccesses`; reserved bits (Message Address 1:0, Vector Control
 * 31:1, Message Control 13:11) are not stored, `reservedBitWrites`; PBA writes, `readOnlyWrites`.
 * Writes to the read-only capability registers are ignored, as hardware ignores them.
 */

import { check, checkRange, ErrorCode } from '../base/errors.ts';
import type { BusDevice } from '../chip/bus.ts';
import { msiConfig } from '../device/chip-interrupt-group.ts';
import type { MsiIrqSourceConfig } from '../device/interrupt-source.ts';
import {
  MSIX_CAPABILITY_BYTES,
  MSIX_CAPABILITY_ID,
  MSIX_ENABLE,
  MSIX_FUNCTION_MASK,
  MSIX_TABLE_ENTRY_BYTES,
  MsixEntryField,
  VECTOR_CONTROL_MASK,
  type MsixStructureLocation,
} from '../device/msix-capability.ts';
import { allOnes, DWORD_BYTES, isNaturalAccess, loadLe32, QWORD_BYTES, readLanes, storeLe32, writeLanes } from './register-lanes.ts';
import type { VfioVectorGroup } from './vfio-vector-group.ts';

export const VFIO_CAPABILITY_COUNTER_NAMES = ['ignoredAccesses', 'reservedBitWrites', 'readOnlyWrites'] as const;
export type VfioCapabilityCounterName = (typeof VFIO_CAPABILITY_COUNTER_NAMES)[number];

/** Message Control bits 13:11 are reserved (PCIe §7.7.2.2). */
const MESSAGE_CONTROL_RESERVED = 0x3800;
const MESSAGE_CONTROL_WRITABLE = MSIX_ENABLE | MSIX_FUNCTION_MASK;
const MESSAGE_CONTROL_SHIFT = 16;
/** Message Address bits 1:0: the address is DWORD aligned. */
const ADDRESS_LOW_RESERVED = 0x3;
const DWORDS_PER_ENTRY = MSIX_TABLE_ENTRY_BYTES / DWORD_BYTES;
const VECTORS_PER_PBA_DWORD = 32;
const VECTORS_PER_PBA_QWORD = 64;
/** Table Offset / PBA Offset registers: BIR in bits 2:0, a QWORD-aligned offset above. */
const MAX_BIR = 5;
const MAX_STRUCTURE_OFFSET = 0xfffffff8;
/** Config registers: header (ID, next, Message Control), Table Offset/BIR, PBA Offset/BIR. */
const HEADER_REGISTER = 0;

export interface VfioMsixCapabilityOptions {
  /** The function's MSI-X vectors (`VfioPciInterrupts.msix`). */
  readonly vectors: VfioVectorGroup;
  readonly table: MsixStructureLocation;
  readonly pba: MsixStructureLocation;
  /** Configuration-space offset of the next capability (0: this is the last). */
  readonly nextCapability?: number;
}

export class VfioMsixCapability {
  readonly vectorCount: number;
  readonly tableBytes: number;
  readonly pbaBytes: number;
  private readonly vectors: VfioVectorGroup;
  /** Message Control's Enable and Function Mask, as written. */
  private control = 0;
  /** The table: four DWORDs per entry (MsixEntryField order), reserved bits clear. */
  private readonly table: Uint32Array;
  private readonly locations: readonly [table: number, pba: number];
  private readonly nextCapability: number;
  private readonly counts = { ignoredAccesses: 0, reservedBitWrites: 0, readOnlyWrites: 0 };
  /** The bus adapters' data buffer, so bus accesses do not allocate. */
  private readonly scratch = new Uint8Array(DWORD_BYTES);

  constructor(options: VfioMsixCapabilityOptions) {
    this.vectors = options.vectors;
    check(!this.vectors.enabled, ErrorCode.EINVAL, 'the MSI-X vectors must start disabled');
    this.vectorCount = this.vectors.len();
    this.tableBytes = this.vectorCount * MSIX_TABLE_ENTRY_BYTES;
    this.pbaBytes = Math.ceil(this.vectorCount / VECTORS_PER_PBA_QWORD) * QWORD_BYTES;
    this.nextCapability = options.nextCapability ?? 0;
    checkRange(this.nextCapability, 0, 0xff, 'next capability pointer');
    this.locations = [locationRegister(options.table, 'table'), locationRegister(options.pba, 'PBA')];
    this.table = new Uint32Array(this.vectorCount * DWORDS_PER_ENTRY);
    for (let vector = 0; vector < this.vectorCount; vector++) this.table[entryDword(vector, MsixEntryField.VectorControl)] = VECTOR_CONTROL_MASK;
  }

  // ---- Configuration space ----------------------------------------------------------------------

  /** Message Control as the guest reads it: Enable, Function Mask and the Table Size (N − 1). */
  messageControl(): number {
    return this.control | (this.vectorCount - 1);
  }

  /** A guest read of 1, 2 or 4 bytes at `offset` into the capability structure. */
  readConfig(offset: number, size: number): number {
    if (!isNaturalAccess(offset, size, [1, 2, DWORD_BYTES], MSIX_CAPABILITY_BYTES)) {
      this.counts.ignoredAccesses++;
      return allOnes(size);
    }
    return readLanes(this.configRegister(offset >> 2), offset, size);
  }

  /** A guest write: Message Control's Enable and Function Mask are the only writable bits. */
  writeConfig(offset: number, size: number, value: number): void {
    if (!isNaturalAccess(offset, size, [1, 2, DWORD_BYTES], MSIX_CAPABILITY_BYTES)) {
      this.counts.ignoredAccesses++;
      return;
    }
    if (offset >> 2 !== HEADER_REGISTER) return;
    const written = writeLanes(this.configRegister(HEADER_REGISTER), offset, size, value) >>> MESSAGE_CONTROL_SHIFT;
    const reserved = writeLanes(0, offset, size, value) >>> MESSAGE_CONTROL_SHIFT;
    if ((reserved & MESSAGE_CONTROL_RESERVED) !== 0) this.counts.reservedBitWrites++;
    this.setControl(written & MESSAGE_CONTROL_WRITABLE);
  }

  // ---- The table and the PBA -------------------------------------------------------------------

  /** A guest read of the table: an aligned DWORD or QWORD. */
  tableRead(offset: number, data: Uint8Array): void {
    if (!this.isStructureAccess(offset, data, this.tableBytes)) return;
    for (let lane = 0; lane < data.length; lane += DWORD_BYTES) storeLe32(data, lane, this.table[(offset + lane) >> 2] ?? 0);
  }

  /** A guest write to the table: an aligned DWORD or QWORD (its two DWORDs, low first), one batch. */
  tableWrite(offset: number, data: Uint8Array): void {
    if (!isNaturalAccess(offset, data.length, [DWORD_BYTES, QWORD_BYTES], this.tableBytes)) {
      this.counts.ignoredAccesses++;
      return;
    }
    this.vectors.batch(() => {
      for (let lane = 0; lane < data.length; lane += DWORD_BYTES) this.writeTableDword((offset + lane) >> 2, loadLe32(data, lane));
    });
  }

  /** A guest read of the PBA: bit v of the structure is set while vector v holds an interrupt. */
  pbaRead(offset: number, data: Uint8Array): void {
    if (!this.isStructureAccess(offset, data, this.pbaBytes)) return;
    for (let lane = 0; lane < data.length; lane += DWORD_BYTES) storeLe32(data, lane, this.pendingBits(((offset + lane) >> 2) * VECTORS_PER_PBA_DWORD));
  }

  /** The PBA is read-only (PCIe §7.7.2.6). */
  pbaWrite(offset: number, data: Uint8Array): void {
    if (isNaturalAccess(offset, data.length, [DWORD_BYTES, QWORD_BYTES], this.pbaBytes)) this.counts.readOnlyWrites++;
    else this.counts.ignoredAccesses++;
  }

  /** The table on an MMIO bus, at the BAR's address + the table offset. The bus carries DWORDs; other sizes are dropped. */
  tableBusDevice(): BusDevice {
    return this.busDevice('vfio-msix-table', (offset, data) => { this.tableRead(offset, data); }, (offset, data) => { this.tableWrite(offset, data); });
  }

  /** The PBA on an MMIO bus (DWORD accesses, as `tableBusDevice`). */
  pbaBusDevice(): BusDevice {
    return this.busDevice('vfio-msix-pba', (offset, data) => { this.pbaRead(offset, data); }, (offset, data) => { this.pbaWrite(offset, data); });
  }

  counters(): Readonly<Record<VfioCapabilityCounterName, number>> {
    return { ...this.counts };
  }

  // ---- Internals ------------------------------------------------------------------------------

  private configRegister(register: number): number {
    if (register === HEADER_REGISTER) return (MSIX_CAPABILITY_ID | (this.nextCapability << 8) | (this.messageControl() << MESSAGE_CONTROL_SHIFT)) >>> 0;
    return this.locations[register - 1] ?? 0;
  }

  private get enabled(): boolean {
    return (this.control & MSIX_ENABLE) !== 0;
  }

  private get functionMasked(): boolean {
    return (this.control & MSIX_FUNCTION_MASK) !== 0;
  }

  private vectorMasked(vector: number): boolean {
    return ((this.table[entryDword(vector, MsixEntryField.VectorControl)] ?? 0) & VECTOR_CONTROL_MASK) !== 0;
  }

  private setControl(next: number): void {
    const changed = this.control ^ next;
    if (changed === 0) return;
    this.control = next;
    this.vectors.batch(() => {
      if ((changed & MSIX_ENABLE) !== 0) {
        if (!this.enabled) {
          this.vectors.disable();
          return;
        }
        this.vectors.enable(Array.from({ length: this.vectorCount }, (_, vector) => this.messageOf(vector)));
      } else if (!this.enabled) {
        return; // the Function Mask of a disabled capability is applied at enable
      }
      for (let vector = 0; vector < this.vectorCount; vector++) this.syncVector(vector);
    });
  }

  /** Gives the group the vector's delivery mask: its own Mask bit OR the Function Mask (§6.5). */
  private syncVector(vector: number): void {
    if (this.functionMasked || this.vectorMasked(vector)) this.vectors.mask(vector);
    else this.vectors.unmask(vector);
  }

  private writeTableDword(dword: number, value: number): void {
    const vector = Math.floor(dword / DWORDS_PER_ENTRY);
    const field = dword % DWORDS_PER_ENTRY;
    const reserved = field === MsixEntryField.AddressLow ? ADDRESS_LOW_RESERVED : field === MsixEntryField.VectorControl ? ~VECTOR_CONTROL_MASK : 0;
    if ((value & reserved) !== 0) this.counts.reservedBitWrites++;
    const stored = (value & ~reserved) >>> 0;
    if (this.table[dword] === stored) return;
    this.table[dword] = stored;
    if (field === MsixEntryField.VectorControl) {
      if (this.enabled && !this.functionMasked) this.syncVector(vector);
    } else if (this.enabled) {
      this.vectors.update(vector, this.messageOf(vector));
    }
  }

  private messageOf(vector: number): MsiIrqSourceConfig {
    const word = (field: number): number => this.table[entryDword(vector, field)] ?? 0;
    return msiConfig(word(MsixEntryField.AddressLow), word(MsixEntryField.AddressHigh), word(MsixEntryField.Data));
  }

  /** The PBA DWORD whose bit 0 is vector `first`. */
  private pendingBits(first: number): number {
    let bits = 0;
    const last = Math.min(first + VECTORS_PER_PBA_DWORD, this.vectorCount);
    for (let vector = first; vector < last; vector++) if (this.vectors.getPendingState(vector)) bits |= 1 << (vector - first);
    return bits >>> 0;
  }

  /** An aligned DWORD or QWORD read inside a structure of `bytes`; otherwise counted, and all ones returned. */
  private isStructureAccess(offset: number, data: Uint8Array, bytes: number): boolean {
    if (isNaturalAccess(offset, data.length, [DWORD_BYTES, QWORD_BYTES], bytes)) return true;
    this.counts.ignoredAccesses++;
    data.fill(0xff);
    return false;
  }

  private busDevice(busName: string, read: (offset: number, data: Uint8Array) => void, write: (offset: number, data: Uint8Array) => void): BusDevice {
    const { scratch } = this;
    return {
      busName,
      read: (offset, size) => {
        if (size !== DWORD_BYTES) {
          this.counts.ignoredAccesses++;
          return allOnes(size);
        }
        read(offset, scratch);
        return loadLe32(scratch, 0);
      },
      write: (offset, size, value) => {
        if (size !== DWORD_BYTES) {
          this.counts.ignoredAccesses++;
          return;
        }
        storeLe32(scratch, 0, value);
        write(offset, scratch);
      },
    };
  }
}

function entryDword(vector: number, field: number): number {
  return vector * DWORDS_PER_ENTRY + field;
}

function locationRegister(location: MsixStructureLocation, what: string): number {
  checkRange(location.bar, 0, MAX_BIR, `${what} BAR`);
  checkRange(location.offset, 0, MAX_STRUCTURE_OFFSET, `${what} offset`);
  check(location.offset % QWORD_BYTES === 0, ErrorCode.EINVAL, `${what} offset must be QWORD aligned`);
  return (location.offset | location.bar) >>> 0;
}
