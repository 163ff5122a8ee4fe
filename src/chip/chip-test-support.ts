/**
 * Test support for the chip: a finalized single-thread machine with SimVcpus, and guest-style
 * programming of the controllers through the buses.
 */
import { VirtualClock } from '../base/clock.ts';
import { Bus } from './bus.ts';
import { IrqAllocator } from './irq-allocator.ts';
import { SimVcpu, type SimVcpuOptions } from './sim-vcpu.ts';
import { UserspaceIrqChip, type UserspaceIrqChipOptions } from './userspace-irq-chip.ts';

export const IO_ADDRESS_LIMIT = 0x10000;
export const MMIO_ADDRESS_LIMIT = 2 ** 52;
const IOAPIC_BASE = 0xfec00000;
const APIC_BASE = 0xfee00000;
const APIC_SVR = 0xf0;
const SVR_ENABLED = 0x1ff;

export interface TestMachine {
  readonly chip: UserspaceIrqChip;
  readonly clock: VirtualClock;
  readonly ioBus: Bus;
  readonly mmioBus: Bus;
  readonly allocator: IrqAllocator;
  readonly vcpus: SimVcpu[];
}

/**
 * A chip with `vcpuCount` SimVcpus, finalized onto fresh buses, as firmware leaves a PC: every
 * local APIC software-enabled, the 8259A pair initialised (vectors 0x20/0x28) and fully masked.
 */
export function makeMachine(
  options: Partial<UserspaceIrqChipOptions> = {},
  vcpuOptions: Partial<Omit<SimVcpuOptions, 'ioBus' | 'mmioBus'>> = {},
): TestMachine {
  const clock = new VirtualClock();
  const chip = UserspaceIrqChip.create({ vcpuCount: 2, clock, ...options });
  const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
  const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
  const allocator = new IrqAllocator();
  chip.finalizeDevices(allocator, ioBus, mmioBus);
  const vcpus = Array.from({ length: chip.vcpuCount }, (_, id) => {
    const vcpu = new SimVcpu(id, { ioBus, mmioBus, ...vcpuOptions });
    chip.addVcpu(id, vcpu);
    vcpu.bus.writeMmio32(APIC_BASE + APIC_SVR, SVR_ENABLED);
    return vcpu;
  });
  const machine = { chip, clock, ioBus, mmioBus, allocator, vcpus };
  initialisePic(machine, 0x20, 0x28);
  vcpus[0]?.bus.outb(0x21, 0xff);
  vcpus[0]?.bus.outb(0xa1, 0xff);
  return machine;
}

export interface RedirectionEntry {
  readonly vector: number;
  readonly level?: boolean;
  readonly masked?: boolean;
  readonly destination?: number;
  readonly logical?: boolean;
  readonly deliveryMode?: number;
}

/** The guest programs IOAPIC pin `pin` through IOREGSEL/IOWIN (82093AA §3.2.4). */
export function programIoapicPin(machine: TestMachine, pin: number, entry: RedirectionEntry): void {
  const low =
    entry.vector |
    ((entry.deliveryMode ?? 0) << 8) |
    (entry.logical === true ? 1 << 11 : 0) |
    (entry.level === true ? 1 << 15 : 0) |
    (entry.masked === true ? 1 << 16 : 0);
  const guest = machine.vcpus[0]?.bus;
  if (guest === undefined) throw new Error('machine without vCPUs');
  guest.writeMmio32(IOAPIC_BASE, 0x10 + 2 * pin + 1);
  guest.writeMmio32(IOAPIC_BASE + 0x10, (entry.destination ?? 0) << 24);
  guest.writeMmio32(IOAPIC_BASE, 0x10 + 2 * pin);
  guest.writeMmio32(IOAPIC_BASE + 0x10, low);
}

/** The guest initialises the 8259A pair: vector bases, PC cascade, 8086 mode; `icw4` adds AEOI (0x03) or SFNM (0x11). */
export function initialisePic(machine: TestMachine, masterBase: number, slaveBase: number, icw4 = 0x01): void {
  const guest = machine.vcpus[0]?.bus;
  if (guest === undefined) throw new Error('machine without vCPUs');
  for (const [port, value] of [
    [0x20, 0x11],
    [0x21, masterBase],
    [0x21, 0x04],
    [0x21, icw4],
    [0xa0, 0x11],
    [0xa1, slaveBase],
    [0xa1, 0x02],
    [0xa1, icw4],
  ] as const) {
    guest.outb(port, value);
  }
}
