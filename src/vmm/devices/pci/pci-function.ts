/**
 * A PCI function as the host bridge sees it: 256 bytes of configuration space the bridge forwards
 * CONFIG_DATA accesses to, and the memory BARs the bridge places on the MMIO bus (PCI Local Bus
 * 3.0 ch. 6). The layout of the type 0 header is here, so the bridge and the functions read the
 * same offsets.
 */

import type { BusDevice } from '../../../chip/bus.ts';

/** Bytes of a function's conventional configuration space (PCI 3.0 §6.1; no extended space: no ECAM here). */
export const PCI_CONFIG_SPACE_BYTES = 256;

/** Type 0 header offsets (PCI 3.0 §6.1, Figure 6-1). */
export const PciConfigOffset = {
  VendorId: 0x00,
  DeviceId: 0x02,
  Command: 0x04,
  Status: 0x06,
  RevisionId: 0x08,
  ClassCode: 0x09,
  CacheLineSize: 0x0c,
  LatencyTimer: 0x0d,
  HeaderType: 0x0e,
  Bist: 0x0f,
  Bar0: 0x10,
  CardbusCis: 0x28,
  SubsystemVendorId: 0x2c,
  SubsystemId: 0x2e,
  ExpansionRom: 0x30,
  CapabilitiesPointer: 0x34,
  InterruptLine: 0x3c,
  InterruptPin: 0x3d,
  MinGnt: 0x3e,
  MaxLat: 0x3f,
  /** The first byte after the header: device-specific registers and capabilities. */
  DeviceSpecific: 0x40,
} as const;

/** Base Address Registers in a type 0 header. */
export const PCI_BAR_COUNT = 6;
export const PCI_BAR_BYTES = 4;

/** Command register bits (PCI 3.0 §6.2.2). */
export const PciCommand = {
  IoSpace: 1 << 0,
  MemorySpace: 1 << 1,
  BusMaster: 1 << 2,
  InterruptDisable: 1 << 10,
} as const;

/** Status register bits (PCI 3.0 §6.2.3). */
export const PciStatus = {
  /** The function's INTx is asserted (whatever Interrupt Disable says). */
  InterruptStatus: 1 << 3,
  /** Capabilities Pointer (0x34) is valid. */
  CapabilitiesList: 1 << 4,
} as const;

/** Interrupt Pin values (PCI 3.0 §6.2.4): 0 none, 1..4 INTA#..INTD#. */
export const PciInterruptPin = { None: 0, IntA: 1 } as const;

/** Vendor ID of an absent function: reads of its configuration space return all ones (§6.2.1). */
export const ABSENT_VENDOR_ID = 0xffff;

/** Part of a memory BAR served by one bus device: `device` sees offsets from `offset`. */
export interface PciBarRegion {
  readonly offset: number;
  readonly bytes: number;
  readonly device: BusDevice;
}

/**
 * A 32-bit, non-prefetchable memory BAR: `bytes` (a power of two, at least 16: §6.2.5.1) decoded
 * at the address the guest (or the firmware) writes, while the function's Memory Space bit is set.
 * Its regions are what answers inside it; the rest of the BAR is unclaimed (reads all ones).
 */
export interface PciMemoryBar {
  readonly index: number;
  readonly bytes: number;
  readonly regions: readonly PciBarRegion[];
}

/**
 * A function on the bus. `readConfig` and `writeConfig` take an access inside one DWORD of
 * configuration space (`offset` + `size` ≤ the next multiple of 4, below 256), as CONFIG_DATA's
 * byte lanes make it; they are the guest's accesses, so they never throw. Reading the Command
 * register and the BARs has no side effect, so the bridge reads them to place BARs.
 */
export interface PciFunction {
  /** A short name, for bus ranges and messages. */
  readonly name: string;
  readonly memoryBars: readonly PciMemoryBar[];
  /** The GSI the board wires this function's interrupt pin to (firmware writes it to Interrupt Line), if it has a pin. */
  readonly intxGsi?: number;
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
}

/** Configuration-space offset of BAR `index`. */
export function barOffset(index: number): number {
  return PciConfigOffset.Bar0 + index * PCI_BAR_BYTES;
}
