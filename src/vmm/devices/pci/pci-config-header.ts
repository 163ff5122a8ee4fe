/**
 * `PciConfigHeader`: the configuration space of a PCI function with a type 0 header (PCI Local Bus
 * 3.0 §6.1–§6.2, §6.7), the part every function here shares:
 *
 * - read-only identity: Vendor ID, Device ID, Revision ID, Class Code, Subsystem IDs, Header Type
 *   0 (single function), Interrupt Pin;
 * - Command: only the bits the function implements are writable (§6.2.2: an unimplemented bit is
 *   hardwired to 0);
 * - Status: Capabilities List (bit 4) when there are capabilities, Interrupt Status (bit 3) from
 *   the function; the error bits are never set (nothing here signals errors), so their
 *   write-one-to-clear has nothing to clear;
 * - Cache Line Size and Interrupt Line: plain read/write bytes (firmware fills Interrupt Line);
 * - memory BARs (32-bit, non-prefetchable: type bits 0): the address bits above the BAR's size
 *   are writable, the rest read 0, so writing all ones and reading back gives the size mask
 *   (§6.2.5.1); unimplemented BARs and the Expansion ROM BAR read 0 and ignore writes (no ROM);
 * - the capability list: Capabilities Pointer at 0x34 names the first, each capability's own
 *   structure links the next; accesses inside a capability go to its model;
 * - everything else (Latency Timer, BIST, CardBus CIS, Min_Gnt, Max_Lat, the rest of the
 *   device-specific area) reads 0 and ignores writes, as hardwired registers do.
 *
 * Writes to read-only registers are how PCI software probes (all ones to a BAR, to the ROM BAR),
 * so they are not counted: nothing here is a guest mistake. Used on the device thread.
 */

import { ErrorCode, check, checkRange } from '../../../base/errors.ts';
import { readLanes, writeLanes } from '../../../device/register-lanes.ts';
import {
  PCI_BAR_COUNT,
  PCI_CONFIG_SPACE_BYTES,
  PciConfigOffset,
  PciStatus,
  type PciMemoryBar,
} from './pci-function.ts';

/** The identity registers of a function (PCI 3.0 §6.2.1). */
export interface PciIdentity {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revisionId: number;
  /** Base class, sub-class and programming interface: 0xCCSSPP. */
  readonly classCode: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
}

/** A capability model's guest accesses, with offsets from the capability's first byte. */
export interface PciCapabilityModel {
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
}

/** A capability at `offset` in configuration space, `bytes` long (whole DWORDs). */
export interface PciCapabilitySlot {
  readonly offset: number;
  readonly bytes: number;
  readonly model: PciCapabilityModel;
}

export interface PciConfigHeaderOptions {
  readonly identity: PciIdentity;
  /** The Command bits the function implements (PciCommand); the others read 0. */
  readonly commandBits: number;
  readonly memoryBars?: readonly PciMemoryBar[];
  /** PciInterruptPin: 0 none (the default), 1..4 INTA#..INTD#. */
  readonly interruptPin?: number;
  /** In list order: the Capabilities Pointer names the first; each links the next itself. */
  readonly capabilities?: readonly PciCapabilitySlot[];
  /** Whether the function's INTx is asserted now (Status bit 3); default never. */
  readonly interruptStatus?: () => boolean;
}

/** DWORD registers of the header (offset / 4). */
const Dword = {
  Ids: PciConfigOffset.VendorId >> 2,
  CommandStatus: PciConfigOffset.Command >> 2,
  RevisionClass: PciConfigOffset.RevisionId >> 2,
  CacheLineEtc: PciConfigOffset.CacheLineSize >> 2,
  FirstBar: PciConfigOffset.Bar0 >> 2,
  Subsystem: PciConfigOffset.SubsystemVendorId >> 2,
  CapabilitiesPointer: PciConfigOffset.CapabilitiesPointer >> 2,
  Interrupt: PciConfigOffset.InterruptLine >> 2,
} as const;

const MIN_MEMORY_BAR_BYTES = 16;
const MAX_MEMORY_BAR_BYTES = 2 ** 31;
const MAX_INTERRUPT_PIN = 4;
const BYTE_MASK = 0xff;
const HALF_SHIFT = 16;
const BYTE_SHIFT = 8;
const DWORD_BYTES = 4;
const MAX_ID = 0xffff;
const MAX_CLASS_CODE = 0xffffff;

export class PciConfigHeader {
  private commandRegister = 0;
  private cacheLineSize = 0;
  private interruptLine = 0;
  private readonly identity: Required<PciIdentity>;
  private readonly commandBits: number;
  private readonly interruptPin: number;
  private readonly capabilities: readonly PciCapabilitySlot[];
  private readonly interruptStatus: () => boolean;
  /** Per BAR index: the size mask of an implemented BAR (0: unimplemented), and its address. */
  private readonly barMasks = new Uint32Array(PCI_BAR_COUNT);
  private readonly barAddresses = new Uint32Array(PCI_BAR_COUNT);

  constructor(options: PciConfigHeaderOptions) {
    this.identity = checkedIdentity(options.identity);
    this.commandBits = options.commandBits;
    checkRange(this.commandBits, 0, MAX_ID, 'implemented Command bits');
    this.interruptPin = options.interruptPin ?? 0;
    checkRange(this.interruptPin, 0, MAX_INTERRUPT_PIN, 'interrupt pin');
    for (const bar of options.memoryBars ?? []) {
      checkRange(bar.index, 0, PCI_BAR_COUNT - 1, 'BAR index');
      check(this.barMasks[bar.index] === 0, ErrorCode.EEXIST, () => `BAR ${bar.index} is described twice`);
      check(isPowerOfTwo(bar.bytes) && bar.bytes >= MIN_MEMORY_BAR_BYTES && bar.bytes <= MAX_MEMORY_BAR_BYTES, ErrorCode.EINVAL, () => `BAR ${bar.index}: a memory BAR is a power of two of 16 bytes to 2 GiB, not ${bar.bytes}`);
      this.barMasks[bar.index] = ~(bar.bytes - 1) >>> 0;
    }
    this.capabilities = checkedCapabilities(options.capabilities ?? []);
    this.interruptStatus = options.interruptStatus ?? (() => false);
  }

  /** A guest read inside one DWORD (`offset` + `size` within it, below 256). */
  read(offset: number, size: number): number {
    checkAccess(offset, size);
    const capability = this.capabilityAt(offset);
    if (capability !== undefined) return capability.model.readConfig(offset - capability.offset, size);
    return readLanes(this.register(offset >> 2), offset, size);
  }

  /** A guest write inside one DWORD. */
  write(offset: number, size: number, value: number): void {
    checkAccess(offset, size);
    const capability = this.capabilityAt(offset);
    if (capability !== undefined) {
      capability.model.writeConfig(offset - capability.offset, size, value);
      return;
    }
    const dword = offset >> 2;
    const written = writeLanes(this.register(dword), offset, size, value);
    if (dword === Dword.CommandStatus) this.commandRegister = written & this.commandBits;
    else if (dword === Dword.CacheLineEtc) this.cacheLineSize = written & BYTE_MASK;
    else if (dword === Dword.Interrupt) this.interruptLine = written & BYTE_MASK;
    else if (dword >= Dword.FirstBar && dword < Dword.FirstBar + PCI_BAR_COUNT) this.writeBar(dword - Dword.FirstBar, written);
  }

  /** The Command register as the guest wrote it (implemented bits only). */
  get command(): number {
    return this.commandRegister;
  }

  // ---- Internals ------------------------------------------------------------------------------

  private register(dword: number): number {
    switch (dword) {
      case Dword.Ids:
        return pack16(this.identity.vendorId, this.identity.deviceId);
      case Dword.CommandStatus:
        return pack16(this.command, this.status());
      case Dword.RevisionClass:
        return (this.identity.revisionId | (this.identity.classCode << BYTE_SHIFT)) >>> 0;
      case Dword.CacheLineEtc:
        return this.cacheLineSize; // Latency Timer, Header Type 0 (single function), BIST: 0
      case Dword.Subsystem:
        return pack16(this.identity.subsystemVendorId, this.identity.subsystemId);
      case Dword.CapabilitiesPointer:
        return this.capabilities[0]?.offset ?? 0;
      case Dword.Interrupt:
        return this.interruptLine | (this.interruptPin << BYTE_SHIFT);
      default:
        if (dword >= Dword.FirstBar && dword < Dword.FirstBar + PCI_BAR_COUNT) return this.barAddresses[dword - Dword.FirstBar] ?? 0;
        return 0;
    }
  }

  private status(): number {
    return (this.capabilities.length > 0 ? PciStatus.CapabilitiesList : 0) | (this.interruptStatus() ? PciStatus.InterruptStatus : 0);
  }

  private writeBar(index: number, value: number): void {
    this.barAddresses[index] = value & (this.barMasks[index] ?? 0);
  }

  private capabilityAt(offset: number): PciCapabilitySlot | undefined {
    if (offset < PciConfigOffset.DeviceSpecific) return undefined;
    return this.capabilities.find((capability) => offset >= capability.offset && offset < capability.offset + capability.bytes);
  }
}

/** Caller mistakes: a function's accesses come from the bridge, which splits them by DWORD. */
function checkAccess(offset: number, size: number): void {
  check(
    Number.isInteger(offset) && offset >= 0 && offset < PCI_CONFIG_SPACE_BYTES && (size === 1 || size === 2 || size === DWORD_BYTES) && (offset & 3) + size <= DWORD_BYTES,
    ErrorCode.EINVAL,
    () => `a configuration access is 1, 2 or 4 bytes inside one DWORD below 256, not ${String(size)} at ${String(offset)}`,
  );
}

function checkedIdentity(identity: PciIdentity): Required<PciIdentity> {
  checkRange(identity.vendorId, 0, MAX_ID - 1, 'vendor ID'); // 0xffff means "no function" (§6.2.1)
  checkRange(identity.deviceId, 0, MAX_ID, 'device ID');
  checkRange(identity.revisionId, 0, BYTE_MASK, 'revision ID');
  checkRange(identity.classCode, 0, MAX_CLASS_CODE, 'class code');
  const subsystemVendorId = identity.subsystemVendorId ?? 0;
  const subsystemId = identity.subsystemId ?? 0;
  checkRange(subsystemVendorId, 0, MAX_ID, 'subsystem vendor ID');
  checkRange(subsystemId, 0, MAX_ID, 'subsystem ID');
  return { ...identity, subsystemVendorId, subsystemId };
}

/** Capabilities live in the device-specific area, DWORD aligned (PCI 3.0 §6.7), whole DWORDs, without overlapping. */
function checkedCapabilities(capabilities: readonly PciCapabilitySlot[]): readonly PciCapabilitySlot[] {
  const sorted = [...capabilities].sort((a, b) => a.offset - b.offset);
  sorted.forEach((capability, index) => {
    checkRange(capability.offset, PciConfigOffset.DeviceSpecific, PCI_CONFIG_SPACE_BYTES - DWORD_BYTES, 'capability offset');
    checkRange(capability.bytes, DWORD_BYTES, PCI_CONFIG_SPACE_BYTES - capability.offset, 'capability length');
    check(capability.offset % DWORD_BYTES === 0 && capability.bytes % DWORD_BYTES === 0, ErrorCode.EINVAL, 'a capability is whole DWORDs at a DWORD-aligned offset');
    const next = sorted[index + 1];
    check(next === undefined || capability.offset + capability.bytes <= next.offset, ErrorCode.EINVAL, () => `the capabilities at 0x${capability.offset.toString(16)} and 0x${String(next?.offset.toString(16))} overlap`);
  });
  return [...capabilities];
}

function pack16(low: number, high: number): number {
  return (low | (high << HALF_SHIFT)) >>> 0;
}

function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && (value & (value - 1)) === 0;
}
