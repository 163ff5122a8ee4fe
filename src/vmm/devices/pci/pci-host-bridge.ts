/**
 * `PciHostBridge`: bus 0 of the machine behind configuration mechanism #1 (PCI Local Bus 3.0
 * §3.2.2.3.2), as QEMU's `-machine pc` has it: the i440FX host bridge is device 0 of bus 0, and
 * the functions attached at other device numbers sit beside it.
 *
 * Ports (a `BusDevice` over 0xcf8–0xcff, machine-layout.ts `Port.PciConfig`):
 * - CONFIG_ADDRESS, 0xcf8: a 32-bit register. Bit 31 enables configuration cycles, 23:16 the bus,
 *   15:11 the device, 10:8 the function, 7:2 the DWORD register; bits 30:24 and 1:0 are reserved
 *   and read 0. Only a DWORD access at 0xcf8 reaches it: "any other types of accesses to this
 *   address (non-DWORD) have no effect on CONFIG_ADDRESS and are executed as normal I/Os on the
 *   PCI bus" (§3.2.2.3.2), and nothing claims those here, so such writes are dropped and reads
 *   return all ones (`nonDwordAddressAccesses`). QEMU also drops them on writes, but answers a
 *   narrower read with the register's low bytes (hw/pci/pci_host.c `pci_host_config_read`);
 *   crosvm merges byte lanes into the register. No guest written for QEMU reads it that way.
 * - CONFIG_DATA, 0xcfc–0xcff: the DWORD CONFIG_ADDRESS selects; address bits 1:0 pick the byte
 *   lanes, so a byte at 0xcfe is byte 2 of the register. An access that runs past 0xcff is not a
 *   configuration cycle (`straddlingDataAccesses`). With the enable bit clear, reads return all
 *   ones and writes are dropped (`disabledDataAccesses`, as QEMU). A cycle to a device number
 *   with nothing attached, to a function other than 0 (every device here is single-function), or
 *   to another bus (there are no PCI-to-PCI bridges) ends in master abort: reads return all
 *   ones, so the Vendor ID reads 0xffff, "no function" (§6.2.1), and writes are dropped
 *   (`masterAborts`: every enumeration makes them).
 *
 * The bridge owns BAR decoding (`PciBarDecoder`): after every configuration write to a function's
 * Command register or BARs its memory BARs follow. `assignResources` does at reset what firmware
 * does (SeaBIOS under QEMU `-kernel`): every memory BAR gets a naturally aligned address in the
 * PCI window, Interrupt Line gets the GSI the board wires the function's pin to, and memory decode
 * is turned on. (Bus mastering stays off, as SeaBIOS leaves it: the driver turns it on.)
 *
 * Used on the device thread.
 */

import { ErrorCode, check, checkRange } from '../../../base/errors.ts';
import { allOnes } from '../../../base/integers.ts';
import type { Bus, BusDevice } from '../../../chip/bus.ts';
import { PciBarDecoder, type AddressWindow, type PciBarDecoderCounterName } from './pci-bar-decoder.ts';
import { PciConfigHeader } from './pci-config-header.ts';
import {
  PCI_BAR_BYTES,
  PCI_BAR_COUNT,
  PciCommand,
  PciConfigOffset,
  barOffset,
  type PciFunction,
} from './pci-function.ts';

/** CONFIG_ADDRESS fields (PCI 3.0 §3.2.2.3.2, Figure 3-2). */
export const CONFIG_ADDRESS_ENABLE = 0x80000000;
const CONFIG_ADDRESS_STORED = 0x80fffffc;
const BUS_SHIFT = 16;
const DEVICE_SHIFT = 11;
const FUNCTION_SHIFT = 8;
const BUS_FIELD = 0xff;
const DEVICE_FIELD = 0x1f;
const FUNCTION_FIELD = 0x7;
const REGISTER_FIELD = 0xfc;

/** Offsets in the bridge's port range: CONFIG_ADDRESS's DWORD, then CONFIG_DATA's. */
const CONFIG_DATA_OFFSET = 4;
const DWORD_BYTES = 4;
/** Device numbers on a bus (5 bits). */
export const PCI_DEVICES_PER_BUS = 32;
/** Interrupt Line 0xff means "unknown or not connected" on x86 (PCI 3.0 §6.2.4), so a GSI must be below it. */
const MAX_INTERRUPT_LINE_GSI = 0xfe;

/** The host bridge's own function, device 0: QEMU `-machine pc`'s i440FX (82441FX PMC). */
export const I440FX_IDENTITY = {
  vendorId: 0x8086,
  deviceId: 0x1237,
  revisionId: 0x02,
  /** Base class 06 (bridge), sub-class 00 (host bridge). */
  classCode: 0x060000,
  /** QEMU's default subsystem for the hardware it emulates (docs/specs/pci-ids.rst: 1af4:1100). */
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
} as const;
export const HOST_BRIDGE_DEVICE = 0;

export const PCI_HOST_BRIDGE_COUNTER_NAMES = [
  /** Accesses to 0xcf8–0xcfb other than a DWORD at 0xcf8: no effect, reads all ones. */
  'nonDwordAddressAccesses',
  /** CONFIG_DATA accesses that run past 0xcff: dropped, reads all ones. */
  'straddlingDataAccesses',
  /** CONFIG_DATA accesses while CONFIG_ADDRESS's enable bit is clear: dropped, reads all ones. */
  'disabledDataAccesses',
  /** Configuration cycles nothing claimed (an empty device number, function 1–7, another bus). */
  'masterAborts',
] as const;
export type PciHostBridgeCounterName = (typeof PCI_HOST_BRIDGE_COUNTER_NAMES)[number];

export interface PciHostBridgeOptions {
  /** The device thread's MMIO bus, where BARs are decoded. */
  readonly mmio: Bus;
  /** Where BARs may be decoded: machine-layout.ts `PCI_MMIO_WINDOW`. */
  readonly window: AddressWindow;
}

export class PciHostBridge implements BusDevice {
  readonly busName = 'pci-config';
  private configAddress = 0;
  private readonly devices: (PciFunction | undefined)[] = new Array<PciFunction | undefined>(PCI_DEVICES_PER_BUS);
  private readonly decoder: PciBarDecoder;
  private readonly window: AddressWindow;
  private readonly counts: Record<PciHostBridgeCounterName, number> = {
    nonDwordAddressAccesses: 0,
    straddlingDataAccesses: 0,
    disabledDataAccesses: 0,
    masterAborts: 0,
  };

  constructor(options: PciHostBridgeOptions) {
    this.window = options.window;
    this.decoder = new PciBarDecoder(options.mmio, options.window);
    this.attach(HOST_BRIDGE_DEVICE, headerOnlyFunction('i440fx', new PciConfigHeader({ identity: I440FX_IDENTITY, commandBits: PciCommand.MemorySpace | PciCommand.BusMaster })));
  }

  /** Attaches `fn` as function 0 of device `device` on bus 0: EINVAL out of range, EEXIST when taken. */
  attach(device: number, fn: PciFunction): void {
    checkRange(device, 0, PCI_DEVICES_PER_BUS - 1, 'PCI device number');
    check(this.devices[device] === undefined, ErrorCode.EEXIST, () => `PCI device ${device} is taken`);
    if (fn.intxGsi !== undefined) checkRange(fn.intxGsi, 0, MAX_INTERRUPT_LINE_GSI, 'INTx GSI');
    this.devices[device] = fn;
    this.decoder.add(fn);
  }

  /**
   * What firmware does at reset: each memory BAR, largest first, at the next naturally aligned
   * address of the window (ENOSPC when they do not fit: a machine configuration error); Interrupt
   * Line; Memory Space on for every function with BARs. Goes through configuration space, as
   * firmware's cycles do.
   */
  assignResources(): void {
    const bars = this.functions().flatMap((fn) => fn.memoryBars.map((bar) => ({ fn, bar })));
    bars.sort((a, b) => b.bar.bytes - a.bar.bytes);
    let next = this.window.base;
    for (const { fn, bar } of bars) {
      const address = Math.ceil(next / bar.bytes) * bar.bytes;
      check(address + bar.bytes <= this.window.base + this.window.bytes, ErrorCode.ENOSPC, () => `${fn.name}: BAR ${bar.index} does not fit in the PCI window`);
      fn.writeConfig(barOffset(bar.index), PCI_BAR_BYTES, address);
      next = address + bar.bytes;
    }
    for (const fn of this.functions()) {
      if (fn.intxGsi !== undefined) fn.writeConfig(PciConfigOffset.InterruptLine, 1, fn.intxGsi);
      if (fn.memoryBars.length > 0) fn.writeConfig(PciConfigOffset.Command, 2, fn.readConfig(PciConfigOffset.Command, 2) | PciCommand.MemorySpace);
    }
    this.decoder.sync();
  }

  /** Where BAR `index` of `fn` is decoded now, or undefined. */
  decodedAddress(fn: PciFunction, index: number): number | undefined {
    return this.decoder.decodedAddress(fn, index);
  }

  /** Takes every BAR off the MMIO bus for good (the machine is going away). */
  stopDecoding(): void {
    this.decoder.clear();
  }

  counters(): Readonly<Record<PciHostBridgeCounterName | PciBarDecoderCounterName, number>> {
    return { ...this.counts, ...this.decoder.counters() };
  }

  // ---- BusDevice: ports 0xcf8-0xcff ------------------------------------------------------------

  read(offset: number, size: number): number {
    if (offset < CONFIG_DATA_OFFSET) {
      if (offset === 0 && size === DWORD_BYTES) return this.configAddress;
      this.counts.nonDwordAddressAccesses++;
      return allOnes(size);
    }
    const target = this.dataTarget(offset, size);
    return target === undefined ? allOnes(size) : target.readConfig(this.registerOffset(offset), size);
  }

  write(offset: number, size: number, value: number): void {
    if (offset < CONFIG_DATA_OFFSET) {
      if (offset === 0 && size === DWORD_BYTES) this.configAddress = (value & CONFIG_ADDRESS_STORED) >>> 0;
      else this.counts.nonDwordAddressAccesses++;
      return;
    }
    const target = this.dataTarget(offset, size);
    if (target === undefined) return;
    const register = this.registerOffset(offset);
    target.writeConfig(register, size, value);
    if (movesBars(register)) this.decoder.sync();
  }

  // ---- Internals ------------------------------------------------------------------------------

  /** The function a CONFIG_DATA access reaches, or undefined (counted). */
  private dataTarget(offset: number, size: number): PciFunction | undefined {
    if (offset - CONFIG_DATA_OFFSET + size > DWORD_BYTES) {
      this.counts.straddlingDataAccesses++;
      return undefined;
    }
    const address = this.configAddress;
    if ((address & CONFIG_ADDRESS_ENABLE) === 0) {
      this.counts.disabledDataAccesses++;
      return undefined;
    }
    const bus = (address >>> BUS_SHIFT) & BUS_FIELD;
    const fn = bus === 0 && ((address >>> FUNCTION_SHIFT) & FUNCTION_FIELD) === 0 ? this.devices[(address >>> DEVICE_SHIFT) & DEVICE_FIELD] : undefined;
    if (fn === undefined) this.counts.masterAborts++;
    return fn;
  }

  /** The configuration-space offset of a CONFIG_DATA access: the selected DWORD plus the port's byte lane. */
  private registerOffset(offset: number): number {
    return (this.configAddress & REGISTER_FIELD) + (offset - CONFIG_DATA_OFFSET);
  }

  private functions(): PciFunction[] {
    return this.devices.filter((fn) => fn !== undefined);
  }
}

/** Whether a write at `register` can change where BARs decode: Command, or a BAR. */
function movesBars(register: number): boolean {
  const dword = register & ~(DWORD_BYTES - 1);
  return dword === PciConfigOffset.Command || (dword >= PciConfigOffset.Bar0 && dword < barOffset(PCI_BAR_COUNT));
}

/** A function that is its configuration header and nothing else (the host bridge's own). */
function headerOnlyFunction(name: string, header: PciConfigHeader): PciFunction {
  return {
    name,
    memoryBars: [],
    readConfig: (offset, size) => header.read(offset, size),
    writeConfig: (offset, size, value) => {
      header.write(offset, size, value);
    },
  };
}
