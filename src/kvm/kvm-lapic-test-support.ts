/**
 * Test support for watching KVM deliver interrupts without running a guest: a VM with KVM's
 * irqchip and one vCPU that never runs, whose in-kernel local APIC is software-enabled, so an
 * interrupt KVM accepts for it stays in its IRR (KVM_GET_LAPIC), where a test reads it. Not part of
 * the package's API.
 */

import { joinHalves } from '../base/integers.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import type { IrqChip } from '../chip/irq-chip.ts';
import type { DeviceInterruptChip } from '../device/device-chip.ts';
import { msiTo } from '../device/device-test-support.ts';
import { InterruptManager } from '../device/interrupt-manager.ts';
import { ApicRegister, SVR_APIC_ENABLED, SVR_VECTOR_MASK } from '../x86/lapic/apic-registers.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import { KVM_IRQCHIP_BYTES, KVM_IRQCHIP_UNION, KvmIoapicStateLayout, KvmIoctl, KvmIrqchipId } from './kvm-abi.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { KvmLapicState } from './kvm-lapic-state.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';

/** The vCPU never runs, so the guest needs no memory beyond KVM's minimum of one page. */
const GUEST_MEMORY_BYTES = 4096;
const VECTOR_COUNT = 256;
const IRR_REGISTERS = VECTOR_COUNT / 32;
/** Generous: an injection KVM defers to a kworker takes microseconds, but CI machines are shared. */
const REQUEST_TIMEOUT_MS = 20_000;
const REDIRECTION_ENTRY_BYTES = 8;

export const TEST_DEVICE = { id: 7, name: 'kvm-device-test' } as const;

/** A VM with a KVM chip and vCPU 0 (APIC ID 0), which never runs. Dispose it to close the vCPU and the VM. */
export interface NeverRunMachine<Chip extends IrqChip> extends Disposable {
  readonly vm: KvmVm;
  readonly chip: Chip;
  readonly vcpu: KvmVcpu;
}

export interface NeverRunMachineOptions {
  /** Software-enable vCPU 0's LAPIC (SVR bit 8), so that it accepts interrupts; default true. */
  readonly softwareEnabled?: boolean;
  /** Add vCPU 0 to the chip on this thread; default false. */
  readonly addVcpu?: boolean;
}

/** Creates the VM, the chip (`createChip`, before any vCPU, as KVM requires) and vCPU 0; closes what it made if a step throws. */
export function neverRunMachine<Chip extends IrqChip>(createChip: (vm: KvmVm) => Chip, options: NeverRunMachineOptions = {}): NeverRunMachine<Chip> {
  const vm = KvmVm.create({ memoryBytes: GUEST_MEMORY_BYTES });
  let vcpu: KvmVcpu | undefined;
  try {
    const chip = createChip(vm);
    vcpu = KvmVcpu.create(vm, 0);
    if (options.addVcpu === true) chip.addVcpu(0, vcpu);
    if (options.softwareEnabled ?? true) setSpuriousVector(vcpu, SVR_APIC_ENABLED | SVR_VECTOR_MASK);
    const opened = vcpu;
    return {
      vm,
      chip,
      vcpu: opened,
      [Symbol.dispose]: () => {
        opened.close();
        vm.close();
      },
    };
  } catch (error) {
    vcpu?.close();
    vm.close();
    throw error;
  }
}

/**
 * A never-run machine with KVM's whole irqchip and an interrupt manager for one device. `device`
 * is the chip as the device layer uses it, counting injections (`countInjections`).
 */
export interface LapicMachine extends NeverRunMachine<KvmKernelIrqChip> {
  readonly allocator: IrqAllocator;
  readonly device: InjectionCountingChip;
  readonly manager: InterruptManager;
}

export function lapicMachine(options: { readonly softwareEnabled?: boolean } = {}): LapicMachine {
  const machine = neverRunMachine((vm) => KvmKernelIrqChip.create(vm, { vcpuCount: 1 }), options);
  try {
    // As after finalizeDevices: every GSI handed out is past the IOAPIC's pins.
    const allocator = new IrqAllocator();
    allocator.advanceTo(IOAPIC_PIN_COUNT);
    const device = countInjections(machine.chip);
    const manager = new InterruptManager({ chip: device, gsis: allocator, device: TEST_DEVICE });
    return Object.assign(machine, { allocator, device, manager });
  } catch (error) {
    machine[Symbol.dispose]();
    throw error;
  }
}

/** Writes the LAPIC's spurious-interrupt vector register (bit 8: APIC software enable, SDM §11.9). */
export function setSpuriousVector(vcpu: KvmVcpu, value: number): void {
  const state = KvmLapicState.read(vcpu);
  state.setRegister(ApicRegister.SpuriousVector, value);
  state.write(vcpu);
}

/** Every vector set in the LAPIC's IRR, ascending. */
export function requestedVectors(vcpu: KvmVcpu): number[] {
  return irrVectors(KvmLapicState.read(vcpu));
}

/** The vectors in IRR (ascending), which are then cleared, so the next check starts from none. */
export function takeRequests(vcpu: KvmVcpu): number[] {
  const state = KvmLapicState.read(vcpu);
  const vectors = irrVectors(state);
  for (let register = 0; register < IRR_REGISTERS; register++) state.setRegister(ApicRegister.InterruptRequestFirst + register, 0);
  state.write(vcpu);
  return vectors;
}

function irrVectors(state: KvmLapicState): number[] {
  return Array.from({ length: VECTOR_COUNT }, (_, vector) => vector).filter((vector) => state.irr(vector));
}

/**
 * Waits until `vector` is in IRR: for an injection KVM makes after the call that caused it returns
 * (the kworker of an irqfd on an IOAPIC route, or an assign's injection of a readable eventfd).
 */
export async function requestArrives(vcpu: KvmVcpu, vector: number): Promise<void> {
  const deadline = performance.now() + REQUEST_TIMEOUT_MS;
  while (!KvmLapicState.read(vcpu).irr(vector)) {
    if (performance.now() > deadline) throw new Error(`vector ${vector} never reached the LAPIC's IRR`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** An edge, fixed, physical MSI to APIC `destination` with `vector`, as (u64 address, u32 data). */
export function fixedMsi(destination: number, vector: number): [address: bigint, data: number] {
  const config = msiTo(destination, vector);
  return [joinHalves(config.addressLow, config.addressHigh), config.data];
}

/**
 * Programs the in-kernel IOAPIC's pin `pin` (KVM_GET_IRQCHIP / KVM_SET_IRQCHIP): fixed delivery
 * of `vector` to APIC 0, physical destination, active high, edge, unmasked (every other bit of the
 * redirection entry 0; x86-controllers.md §2).
 */
export function routeIoapicPinToVector(vm: KvmVm, pin: number, vector: number): void {
  const irqchip = new DataView(new ArrayBuffer(KVM_IRQCHIP_BYTES));
  irqchip.setUint32(0, KvmIrqchipId.Ioapic, true);
  vm.ioctl(KvmIoctl.GET_IRQCHIP, irqchip, 'KVM_GET_IRQCHIP (IOAPIC)');
  const entry = KVM_IRQCHIP_UNION + KvmIoapicStateLayout.REDIRECTION_TABLE + pin * REDIRECTION_ENTRY_BYTES;
  irqchip.setBigUint64(entry, BigInt(vector), true);
  vm.ioctl(KvmIoctl.SET_IRQCHIP, irqchip, 'KVM_SET_IRQCHIP (IOAPIC)');
}

/** A KVM chip as the device layer sees it, with the count of the injections the layer caused. */
export interface InjectionCountingChip extends DeviceInterruptChip {
  /**
   * Injections the device layer caused: each assert it made that KVM delivered
   * (KVM_IRQ_LINE_STATUS, status > 0), and each irqfd assign that found a count in the eventfd,
   * for which KVM injects once (kvm-signal-msi.test.ts proves it). Signals on armed irqfds are
   * the test's own doing and are not counted.
   */
  injections(): number;
}

/** Wraps a KVM chip (the kernel chip, or any that makes eventfds with `createIrqEvent`). */
export function countInjections(chip: Required<DeviceInterruptChip>): InjectionCountingChip {
  let injections = 0;
  return {
    registerEdgeIrqEvent: (gsi, event, source) => {
      if (event.getTrigger().readCount() !== 0n) injections++;
      chip.registerEdgeIrqEvent(gsi, event, source);
      return undefined;
    },
    unregisterEdgeIrqEvent: (gsi, event) => {
      chip.unregisterEdgeIrqEvent(gsi, event);
    },
    setIrqRoutes: (routes) => {
      chip.setIrqRoutes(routes);
    },
    serviceIrq: (gsi, level) => {
      const status = chip.serviceIrq(gsi, level);
      if (level && status > 0) injections++;
      return status;
    },
    serviceIrqEvent: (index) => {
      chip.serviceIrqEvent(index);
    },
    routes: () => chip.routes(),
    createIrqEvent: () => chip.createIrqEvent(),
    injections: () => injections,
  };
}
