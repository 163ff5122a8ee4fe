/**
 * Test support for the device layer: a finalized chip with SimVcpus (chip-test-support.ts), an
 * interrupt manager for one device on it, MSI messages for its vCPUs, and the VMM's service loop.
 * Not part of the package's API.
 */
import assert from 'node:assert/strict';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { makeMachine, type TestMachine } from '../chip/chip-test-support.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import type { UserspaceIrqChip } from '../chip/userspace-irq-chip.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import { DeliveryMode, DestinationMode, TriggerMode } from '../x86/interrupt-message.ts';
import { encodeMsi } from '../x86/msi/msi-codec.ts';
import { msiConfig } from './chip-interrupt-group.ts';
import type { MsiIrqSourceConfig } from './interrupt-source.ts';
import { InterruptManager } from './interrupt-manager.ts';

export interface DeviceMachine extends TestMachine {
  readonly manager: InterruptManager;
}

export interface DeviceMachineOptions {
  /** The device's GSI budget (default: the manager's default). */
  readonly gsiBudget?: number;
  /** The VM's GSI budget, kept by its IrqAllocator (default: unbounded). */
  readonly vmGsiBudget?: number;
}

/** A two-vCPU machine (chip-test-support.ts) and an interrupt manager for one device on it. */
export function makeDeviceMachine(options: DeviceMachineOptions = {}): DeviceMachine {
  const machine = makeMachine();
  const allocator = options.vmGsiBudget === undefined ? machine.allocator : vmAllocator(options.vmGsiBudget);
  const manager = new InterruptManager({
    chip: machine.chip,
    gsis: allocator,
    device: { id: 1, name: 'test-device' },
    ...(options.gsiBudget === undefined ? {} : { gsiBudget: options.gsiBudget }),
  });
  return { ...machine, allocator, manager };
}

/** An allocator with a VM budget, moved past the IOAPIC's pins as `finalizeDevices` would. */
function vmAllocator(budget: number): IrqAllocator {
  const allocator = new IrqAllocator(undefined, undefined, budget);
  allocator.advanceTo(IOAPIC_PIN_COUNT);
  return allocator;
}

/** An edge, fixed, physical MSI to vCPU `cpu` with `vector`, as a config. */
export function msiTo(cpu: number, vector: number): MsiIrqSourceConfig {
  const message = encodeMsi({
    destination: cpu,
    destinationMode: DestinationMode.Physical,
    redirectionHint: false,
    deliveryMode: DeliveryMode.Fixed,
    triggerMode: TriggerMode.Edge,
    level: true,
    vector,
  });
  return msiConfig(message.addressLow, message.addressHigh, message.data);
}

/** The VMM's service loop, one pass: services every registered event that has been signalled. */
export function serviceSignalledEvents(chip: UserspaceIrqChip): number {
  let serviced = 0;
  for (const token of chip.irqEventTokens()) {
    if (token.event.readCount() === 0n) continue;
    chip.serviceIrqEvent(token.index);
    serviced++;
  }
  return serviced;
}

/** Lets every vCPU take what is pending; returns the vectors taken, per vCPU. */
export function runGuests(machine: TestMachine): number[][] {
  return machine.vcpus.map((vcpu) => vcpu.runUntilIdle(machine.chip));
}

/** Every vector any vCPU took, sorted. */
export function takenVectors(machine: TestMachine): number[] {
  return runGuests(machine)
    .flat()
    .sort((a, b) => a - b);
}

/** Asserts that `action` throws IrqChipError(`code`) and that `observe()` is the same after it. */
export function assertRefused(action: () => unknown, code: string, observe: () => unknown, what: string): void {
  const before = observe();
  assert.throws(action, rejectsWith(code), `${what}: throws ${code}`);
  assert.deepEqual(observe(), before, `${what}: state unchanged`);
}
