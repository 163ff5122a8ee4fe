/**
 * The VMM's devices (machine-layout.ts says where each sits), built on the device thread: they
 * live on its buses, and every vCPU forwards their ranges there (device-mailbox.ts). Devices
 * drive the chip's lines through `IrqLine`s over `serviceIrq`, from this thread, before the
 * access that raised them completes.
 */

import type { Bus, BusDevice } from '../chip/bus.ts';
import { deviceChipOf, type ModeChip } from '../kvm/chip-mode.ts';
import type { KvmVm } from '../kvm/kvm-vm.ts';
import type { IrqLine } from './devices/irq-line.ts';
import { HostClock } from '../base/clock.ts';
import { FwCfg } from './devices/fw-cfg.ts';
import { Pit8254 } from './devices/pit-8254.ts';
import { startPitTimer, type PitTimer } from './devices/pit-timer.ts';
import { IsaDebugExit } from './devices/isa-debug-exit.ts';
import { PcTestdev } from './devices/pc-testdev.ts';
import type { PortDevice } from './devices/port-device.ts';
import { Serial16550 } from './devices/serial-16550.ts';
import { Gsi, PCI_MMIO_WINDOW, Port } from './machine-layout.ts';
import { createPciBus } from './devices/pci/pci-bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import type { ForwardedRangeSpec } from './machine-vcpu-data.ts';

export interface MachineDevicesOptions {
  readonly vm: KvmVm;
  readonly modeChip: ModeChip;
  /** The device thread's buses. */
  readonly io: Bus;
  readonly mmio: Bus;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly commandLine: string;
  readonly serialOutput: (byte: number) => void;
  /** The guest wrote `value` to isa-debug-exit. */
  readonly onGuestExit: (value: number) => void;
}

export interface MachineDevices {
  /** The ranges each vCPU forwards to this thread. */
  readonly forwardedRanges: { readonly io: readonly ForwardedRangeSpec[]; readonly mmio: readonly ForwardedRangeSpec[] };
  /** Starts what runs on its own (timers, device models). */
  start(): void;
  /** Stops the timers and shuts the PCI functions' interrupts down. */
  stop(): Promise<void>;
  /** The first fault of a device's own work (not a guest access), if any. */
  failure(): Error | undefined;
  /** Each device's counters, by device name. */
  counters(): Record<string, Readonly<Record<string, number>>>;
}

/** A device with counters, as the report reads them. */
interface CountingDevice extends BusDevice {
  counters(): Readonly<Record<string, number>>;
}

export function createMachineDevices(options: MachineDevicesOptions): MachineDevices {
  const hostClock = new HostClock();
  const chip = deviceChipOf(options.modeChip);
  const line = (gsi: number): IrqLine => ({
    setLevel: (level) => {
      chip.serviceIrq(gsi, level);
    },
  });
  const io: ForwardedRangeSpec[] = [];
  const mmio: ForwardedRangeSpec[] = [];
  const counted: CountingDevice[] = [];
  const placePorts = (device: PortDevice & CountingDevice, base: number): void => {
    options.io.insert(device, base, device.portBytes);
    io.push({ name: device.busName, base, length: device.portBytes });
    counted.push(device);
  };

  placePorts(new Serial16550({ irq: line(Gsi.Com1), output: options.serialOutput }), Port.Com1);
  placePorts(new IsaDebugExit({ onExit: options.onGuestExit }), Port.DebugExit);
  placePorts(
    new PcTestdev({
      setLine: (gsi, level) => {
        chip.serviceIrq(gsi, level);
      },
    }),
    Port.TestdevIrq,
  );
  // The PIT: KVM's for the kernel chip (KvmKernelIrqChip creates it; it serves 0x40-0x43 and 0x61
  // in the kernel), ours on GSI 0 for the split and userspace chips, as crosvm's chips have it.
  let pitTimer: PitTimer | undefined;
  const pit = options.modeChip.mode === 'kernel' ? undefined : new Pit8254({ clock: hostClock, irqLine: line(Gsi.Pit) });
  if (pit !== undefined) {
    placePorts(pit, Port.Pit);
    placePorts(pit.systemControlPort, Port.SystemControlB);
  }
  placePorts(new FwCfg({ cpuCount: options.cpus, maxCpus: options.cpus, ramBytes: options.memoryBytes, commandLine: options.commandLine }), Port.FwCfg);

  // PCI: the host bridge and the test device. Its MSI and MSI-X vectors take GSIs past the
  // IOAPIC's pins, from this thread's allocator (the chip's owner is this thread).
  const gsis = new IrqAllocator();
  gsis.advanceTo(IOAPIC_PIN_COUNT);
  const pci = createPciBus({ io: options.io, mmio: options.mmio, chip, gsis });
  io.push({ name: pci.bridge.busName, base: Port.PciConfig, length: Port.PciConfigBytes });
  // BARs move when the guest reprograms them: the vCPUs forward the whole window.
  mmio.push({ name: 'pci-window', base: PCI_MMIO_WINDOW.base, length: PCI_MMIO_WINDOW.bytes });

  return {
    forwardedRanges: { io, mmio },
    start: () => {
      if (pit !== undefined) pitTimer ??= startPitTimer(pit, hostClock);
    },
    stop: async () => {
      pitTimer?.stop();
      pitTimer = undefined;
      await pci.close();
    },
    failure: () => undefined,
    counters: () => ({
      ...Object.fromEntries(counted.map((device) => [device.busName, device.counters()])),
      [pci.bridge.busName]: pci.bridge.counters(),
      ...Object.fromEntries(pci.testDevices.map((device) => [device.name, device.counters()])),
    }),
  };
}
