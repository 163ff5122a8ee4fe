/**
 * Test support for the VMM side: a test machine (userspace chip, SimVcpus) with one passed-through
 * function whose "kernel" is `VfioIrqs`, a device wrapper that records every SET_IRQS call (and can
 * spoil one), the guest's MSI-X driver accesses, and the VMM's service loop. Not part of the API.
 */
import { IrqChipError } from '../base/errors.ts';
import { makeMachine, programIoapicPin, vcpuOf, type TestMachine } from '../chip/chip-test-support.ts';
import type { SimInterruptHandler } from '../chip/sim-vcpu.ts';
import { msiTo, serviceSignalledEvents } from '../device/device-test-support.ts';
import { MsiCapability } from '../device/msi-capability.ts';
import { MSIX_ENABLE, MSIX_FUNCTION_MASK, MSIX_TABLE_ENTRY_BYTES, MsixCapability, MsixEntryField } from '../device/msix-capability.ts';
import type { Event } from '../event/event.ts';
import { VfioIrqs, type VfioIrqsConfig } from './vfio-irqs.ts';
import type { VfioIrqDevice } from './vfio-irq-device.ts';
import { VfioPciInterrupts } from './vfio-pci-interrupts.ts';
import {
  decodeIrqSet,
  irqSetEventfd,
  VFIO_EVENTFD_NONE,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_EVENTFD_BYTES,
  VFIO_IRQ_SET_HEADER_BYTES,
} from './vfio-uapi.ts';

/** A PCIe function with an INTx pin, 4 MSI vectors and a 16-entry MSI-X table. */
export const PASSTHROUGH_FUNCTION: VfioIrqsConfig = { intx: true, msiVectors: 4, msixVectors: 16, pcie: true };
/** The function's INTx pin is routed to IOAPIC pin 10, a level interrupt with guest vector 0x41. */
export const INTX_GSI = 10;
export const INTX_VECTOR = 0x41;
/** The MSI-X table and PBA, in BAR 0 at this guest-physical address. */
export const MSIX_BAR_BASE = 0xfebf0000;
export const MSIX_PBA_OFFSET = 0x800;
/** An fd number nothing is installed under. */
const UNOPENED_FD = 999;
const INDEX_NAMES = ['intx', 'msi', 'msix', 'err', 'req'];

/**
 * One SET_IRQS call, written for reading: `<index> <action> <data> @<start>` and then, for
 * EVENTFD, the fds (`#` an event, `-` for -1), for BOOL the bytes, for NONE `+<count>`.
 * E.g. `msix trigger eventfd @0 [#,-]`, `msix trigger none @0+0` (a disable).
 */
export function describeIrqSet(bytes: Uint8Array): string {
  const set = decodeIrqSet(bytes);
  const action = (set.flags & VFIO_IRQ_SET_ACTION_MASK) !== 0 ? 'mask' : (set.flags & VFIO_IRQ_SET_ACTION_UNMASK) !== 0 ? 'unmask' : 'trigger';
  const head = `${INDEX_NAMES[set.index] ?? String(set.index)} ${action}`;
  if ((set.flags & VFIO_IRQ_SET_DATA_NONE) !== 0) return `${head} none @${set.start}+${set.count}`;
  if ((set.flags & VFIO_IRQ_SET_DATA_BOOL) !== 0) return `${head} bool @${set.start} [${[...set.data.subarray(0, set.count)].join(',')}]`;
  const fds = Array.from({ length: set.count }, (_, position) => (irqSetEventfd(set, position) === VFIO_EVENTFD_NONE ? '-' : '#'));
  return `${head} eventfd @${set.start} [${fds.join(',')}]`;
}

/** A device that passes every call to `VfioIrqs`, writes each SET_IRQS down, and can spoil one. */
export class RecordingDevice implements VfioIrqDevice {
  readonly calls: string[] = [];
  private spoilAt: number | undefined;

  constructor(readonly kernel: VfioIrqs) {}

  /** The next EVENTFD call names an fd that is not open at payload position `position` (EBADF part-way). */
  spoilNextEventfdCall(position: number): void {
    this.spoilAt = position;
  }

  /** The calls made since `from` (an index into `calls`). */
  since(from: number): string[] {
    return this.calls.slice(from);
  }

  getIrqInfo(bytes: Uint8Array): Uint8Array {
    return this.kernel.getIrqInfo(bytes);
  }

  setIrqs(bytes: Uint8Array): void {
    this.calls.push(describeIrqSet(bytes));
    const spoilAt = this.spoilAt;
    if (spoilAt !== undefined && (decodeIrqSet(bytes).flags & VFIO_IRQ_SET_DATA_EVENTFD) !== 0) {
      this.spoilAt = undefined;
      const spoiled = bytes.slice();
      new DataView(spoiled.buffer).setInt32(VFIO_IRQ_SET_HEADER_BYTES + spoilAt * VFIO_IRQ_SET_EVENTFD_BYTES, UNOPENED_FD, true);
      this.kernel.setIrqs(spoiled);
      return;
    }
    this.kernel.setIrqs(bytes);
  }

  openEventFd(event: Event): number {
    return this.kernel.openEventFd(event);
  }

  closeEventFd(fd: number): void {
    this.kernel.closeEventFd(fd);
  }

  serviceIrqfds(): void {
    this.kernel.serviceIrqfds();
  }
}

export interface PassthroughRig {
  readonly machine: TestMachine;
  /** The function and its host kernel (`raise`, `raiseIntx` are the device's interrupts). */
  readonly kernel: VfioIrqs;
  readonly device: RecordingDevice;
  readonly vfio: VfioPciInterrupts;
  readonly msix: MsixCapability;
  readonly msi: MsiCapability;
  readonly guest: MsixDriver;
}

export interface PassthroughOptions {
  readonly config?: VfioIrqsConfig;
  /** The guest's interrupt handler (default: LAPIC EOI). */
  readonly handler?: SimInterruptHandler;
  /** Where route GSIs come from (default: the machine's allocator). */
  readonly gsiBudget?: number;
}

/**
 * A two-vCPU machine with the function passed through: INTx on GSI 10 (IOAPIC pin 10 programmed
 * level, vector 0x41, to vCPU 0), the MSI-X table and PBA on the MMIO bus, the MSI capability.
 */
export function makePassthroughRig(options: PassthroughOptions = {}): PassthroughRig {
  const machine = makeMachine({}, options.handler === undefined ? {} : { handler: options.handler });
  const kernel = new VfioIrqs(options.config ?? PASSTHROUGH_FUNCTION);
  const device = new RecordingDevice(kernel);
  const gsis = options.gsiBudget === undefined ? machine.allocator : budgetOf(machine, options.gsiBudget);
  const vfio = new VfioPciInterrupts({ device, chip: machine.chip, gsis, intxGsi: INTX_GSI });
  const msixVectors = vfio.msix;
  const msiVectors = vfio.msi;
  if (msixVectors === undefined || msiVectors === undefined) throw new Error('the rig needs MSI and MSI-X');
  const msix = new MsixCapability({ group: msixVectors, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: MSIX_PBA_OFFSET } });
  const msi = new MsiCapability({ group: msiVectors });
  machine.mmioBus.insert(msix.tableBusDevice(), MSIX_BAR_BASE, msix.tableBytes);
  machine.mmioBus.insert(msix.pbaBusDevice(), MSIX_BAR_BASE + MSIX_PBA_OFFSET, msix.pbaBytes);
  programIoapicPin(machine, INTX_GSI, { vector: INTX_VECTOR, level: true });
  return { machine, kernel, device, vfio, msix, msi, guest: new MsixDriver(machine, msix) };
}

/** A GSI source that hands out at most `budget` of the machine's GSIs at once. */
function budgetOf(machine: TestMachine, budget: number): { allocate(): number; release(gsi: number): void } {
  let outstanding = 0;
  return {
    allocate: () => {
      if (outstanding >= budget) throw new IrqChipError('ENOSPC', `the test budget of ${budget} GSIs is spent`);
      outstanding++;
      return machine.allocator.allocate();
    },
    release: (gsi) => {
      outstanding--;
      machine.allocator.release(gsi);
    },
  };
}

/** One pass of the VMM's owner loop: the device's irqfd work (INTx unmask), then the chip's events. */
export function serviceVmm(rig: PassthroughRig): void {
  rig.vfio.service();
  serviceSignalledEvents(rig.machine.chip);
}

/** Services and lets every vCPU take what is pending, until nothing moves; returns the vectors taken, sorted. */
export function deliverAll(rig: PassthroughRig): number[] {
  const taken: number[] = [];
  for (;;) {
    serviceVmm(rig);
    const vectors = rig.machine.vcpus.flatMap((vcpu) => vcpu.runUntilIdle(rig.machine.chip));
    if (vectors.length === 0) return taken.sort((a, b) => a - b);
    taken.push(...vectors);
  }
}

/** The guest's MSI-X driver: table writes through vCPU 0's MMIO accesses; Message Control through config space. */
export class MsixDriver {
  constructor(
    private readonly machine: TestMachine,
    private readonly msix: MsixCapability,
  ) {}

  writeEntry(vector: number, field: number, value: number): void {
    vcpuOf(this.machine, 0).bus.writeMmio32(MSIX_BAR_BASE + vector * MSIX_TABLE_ENTRY_BYTES + field * 4, value);
  }

  /** Entry `vector` sends guest vector `guestVector` to `cpu` (fixed, physical, edge). */
  program(vector: number, cpu: number, guestVector: number): void {
    const config = msiTo(cpu, guestVector);
    this.writeEntry(vector, MsixEntryField.AddressLow, config.addressLow);
    this.writeEntry(vector, MsixEntryField.AddressHigh, config.addressHigh);
    this.writeEntry(vector, MsixEntryField.Data, config.data);
  }

  setVectorMask(vector: number, masked: boolean): void {
    this.writeEntry(vector, MsixEntryField.VectorControl, masked ? 1 : 0);
  }

  /** Message Control: a 16-bit config write at capability offset 2 (the VMM forwards it). */
  setControl(enabled: boolean, functionMasked: boolean): void {
    this.msix.writeConfig(2, 2, (enabled ? MSIX_ENABLE : 0) | (functionMasked ? MSIX_FUNCTION_MASK : 0));
  }

  /** The PBA's first DWORD (vectors 0–31). */
  readPba(): number {
    return vcpuOf(this.machine, 0).bus.readMmio32(MSIX_BAR_BASE + MSIX_PBA_OFFSET);
  }
}

/** Guest vector of MSI-X entry `vector` in these tests. */
export function msixGuestVector(vector: number): number {
  return 0x50 + vector;
}
