/**
 * Test support for the PCI bus: the bus built by `createPciBus` on a userspace-chip machine with
 * SimVcpus (chip-test-support.ts), and the guest's side of it as a driver makes its accesses:
 * configuration cycles through 0xcf8/0xcfc and BAR registers through MMIO, all on vCPU 0's buses.
 * (The VMM puts the devices on their own thread's buses; here the SimVcpus share the chip's, which
 * the PCI window does not overlap.) Not part of the package's API.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { makeMachine, programIoapicPin, type TestMachine } from '../../../chip/chip-test-support.ts';
import type { SimInterruptHandler } from '../../../chip/sim-vcpu.ts';
import { serviceSignalledEvents } from '../../../device/device-test-support.ts';
import { Port } from '../../machine-layout.ts';
import { PCI_TEST_DEVICE_SLOT, createPciBus, type PciBus } from './pci-bus.ts';
import { CONFIG_ADDRESS_ENABLE } from './pci-host-bridge.ts';
import { PciCommand, PciConfigOffset, barOffset } from './pci-function.ts';
import { PCI_TEST_MSIX_BAR, PCI_TEST_REGISTERS_BAR, PciTestRegister } from './pci-test-device.ts';

const GUEST = { vcpuIndex: 0 } as const;
const CONFIG_DATA = Port.PciConfig + 4;
/** The guest's INTx vector in these tests (IOAPIC pin `Gsi.PciTestDeviceIntx`, level, to vCPU 0). */
export const INTX_VECTOR = 0x41;

export interface PciMachine extends TestMachine {
  readonly pci: PciBus;
  readonly guest: PciGuest;
}

/**
 * A two-vCPU machine with the PCI bus; the vCPUs run `handler` (default: LAPIC EOI). The bus is
 * closed after the test (its level line awaits resamples, which keeps the process alive).
 */
export function makePciMachine(t: TestContext, handler?: SimInterruptHandler): PciMachine {
  const machine = makeMachine({}, handler === undefined ? {} : { handler });
  const pci = createPciBus({ io: machine.ioBus, mmio: machine.mmioBus, chip: machine.chip, gsis: machine.allocator });
  t.after(() => pci.close());
  return { ...machine, pci, guest: new PciGuest(machine) };
}

/** The guest's accesses (vCPU 0). */
export class PciGuest {
  constructor(private readonly machine: TestMachine) {}

  /** CONFIG_ADDRESS for bus 0, `device`, `fn`, the DWORD holding `offset`. */
  static address(device: number, offset: number, fn = 0, bus = 0): number {
    return (CONFIG_ADDRESS_ENABLE | (bus << 16) | (device << 11) | (fn << 8) | (offset & 0xfc)) >>> 0;
  }

  outPort(port: number, size: number, value: number): void {
    this.machine.ioBus.write(port, size, value, GUEST);
  }

  inPort(port: number, size: number): number {
    return this.machine.ioBus.read(port, size, GUEST);
  }

  /** A configuration read as Linux's type 1 accessors make it: CONFIG_ADDRESS, then the data port's lane. */
  configRead(device: number, offset: number, size: number, fn = 0): number {
    this.outPort(Port.PciConfig, 4, PciGuest.address(device, offset, fn));
    return this.inPort(CONFIG_DATA + (offset & 3), size);
  }

  configWrite(device: number, offset: number, size: number, value: number, fn = 0): void {
    this.outPort(Port.PciConfig, 4, PciGuest.address(device, offset, fn));
    this.outPort(CONFIG_DATA + (offset & 3), size, value);
  }

  /** The test device's configuration space. */
  testRead(offset: number, size = 4): number {
    return this.configRead(PCI_TEST_DEVICE_SLOT, offset, size);
  }

  testWrite(offset: number, size: number, value: number): void {
    this.configWrite(PCI_TEST_DEVICE_SLOT, offset, size, value);
  }

  /** The address BAR `index` of the test device holds. */
  bar(index: number): number {
    return this.testRead(barOffset(index));
  }

  /** Sets Command bits of the test device (read, or, write). */
  setCommand(bits: number, on: boolean): void {
    const command = this.testRead(PciConfigOffset.Command, 2);
    this.testWrite(PciConfigOffset.Command, 2, on ? command | bits : command & ~bits);
  }

  enableBusMaster(): void {
    this.setCommand(PciCommand.BusMaster, true);
  }

  readRegister(register: number): number {
    return this.machine.mmioBus.read(this.bar(PCI_TEST_REGISTERS_BAR) + register, 4, GUEST);
  }

  writeRegister(register: number, value: number): void {
    this.machine.mmioBus.write(this.bar(PCI_TEST_REGISTERS_BAR) + register, 4, value >>> 0, GUEST);
  }

  raise(vector: number): void {
    this.writeRegister(PciTestRegister.Raise, vector);
  }

  /** A DWORD of the MSI-X BAR (table at 0, PBA at 0x800). */
  readMsixBar(offset: number): number {
    return this.machine.mmioBus.read(this.bar(PCI_TEST_MSIX_BAR) + offset, 4, GUEST);
  }

  writeMsixBar(offset: number, value: number): void {
    this.machine.mmioBus.write(this.bar(PCI_TEST_MSIX_BAR) + offset, 4, value >>> 0, GUEST);
  }
}

/** Programs IOAPIC pin `gsi` level-triggered with INTX_VECTOR to vCPU 0, as a guest driver for INTx would. */
export function routeIntx(machine: PciMachine, gsi: number): void {
  programIoapicPin(machine, gsi, { vector: INTX_VECTOR, level: true });
}

/** One pass of the VMM: services the chip's signalled events, then lets every vCPU take what is pending. */
export function deliver(machine: TestMachine): number[] {
  serviceSignalledEvents(machine.chip);
  return machine.vcpus.flatMap((vcpu) => vcpu.runUntilIdle(machine.chip)).sort((a, b) => a - b);
}

/** Turns of the event loop `settle` allows for the device thread's resample loop to answer. */
const SETTLE_TURNS = 1000;

/**
 * Runs the machine until `done()`: VMM passes interleaved with turns of the event loop, where the
 * level line's resample loop runs (it awaits the resample event as on the device thread). Fails
 * the test if `done()` never holds. Returns the vectors taken.
 */
export async function settle(machine: TestMachine, done: () => boolean): Promise<number[]> {
  const taken: number[] = [];
  for (let turn = 0; turn < SETTLE_TURNS; turn++) {
    taken.push(...deliver(machine));
    if (done()) return taken;
    await nextTurn();
  }
  assert.fail(`the machine did not settle; vectors taken: ${taken.join(', ')}`);
}
