/**
 * Test support for the chip: a finalized single-thread machine with SimVcpus, and guest-style
 * programming of the controllers through the buses.
 */
import assert from 'node:assert/strict';
import { VirtualClock } from '../base/clock.ts';
import { releaseLock, tryAcquireLock } from '../base/shared-state.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from './bus.ts';
import { IrqAllocator } from './irq-allocator.ts';
import { SimVcpu, type SimVcpuOptions } from './sim-vcpu.ts';
import type { SipiStart } from '../x86/lapic/local-apic.ts';
import type { IrqEventIndex, IrqEventSource } from './types.ts';
import { UserspaceIrqChip, type UserspaceIrqChipOptions } from './userspace-irq-chip.ts';
import type { Vcpu } from './vcpu.ts';

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
 * A chip with `vcpuCount` SimVcpus, finalized onto fresh buses, as a booted OS leaves a PC: every
 * vCPU started (runnable) with its local APIC software-enabled, the 8259A pair initialised
 * (vectors 0x20/0x28) and fully masked.
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
    chip.setMpState(id, 'runnable');
    vcpu.bus.writeMmio32(APIC_BASE + APIC_SVR, SVR_ENABLED);
    return vcpu;
  });
  const machine = { chip, clock, ioBus, mmioBus, allocator, vcpus };
  initialisePic(machine, 0x20, 0x28);
  vcpus[0]?.bus.outb(0x21, 0xff);
  vcpus[0]?.bus.outb(0xa1, 0xff);
  return machine;
}

/** The machine's vCPU `id` (the test fails if it has none). */
export function vcpuOf(machine: TestMachine, id: number): SimVcpu {
  const vcpu = machine.vcpus[id];
  assert.ok(vcpu, `vCPU ${id} exists`);
  return vcpu;
}

/** xAPIC register offsets in the local APIC window (SDM vol. 3 Table 11-1). */
export const LocalApicOffset = {
  Id: 0x20,
  TaskPriority: 0x80,
  EndOfInterrupt: 0xb0,
  LogicalDestination: 0xd0,
  DestinationFormat: 0xe0,
  InterruptCommandLow: 0x300,
  InterruptCommandHigh: 0x310,
  LvtTimer: 0x320,
  TimerInitialCount: 0x380,
  TimerDivide: 0x3e0,
} as const;

/** vCPU `vcpuId`'s guest writes its own local APIC register at `offset`. */
export function writeLocalApic(machine: TestMachine, vcpuId: number, offset: number, value: number): void {
  vcpuOf(machine, vcpuId).bus.writeMmio32(APIC_BASE + offset, value);
}

export function readLocalApic(machine: TestMachine, vcpuId: number, offset: number): number {
  return vcpuOf(machine, vcpuId).bus.readMmio32(APIC_BASE + offset);
}

/** vCPU `from` sends an IPI: ICR high (destination) first, then ICR low, which sends it. */
export function sendIpi(machine: TestMachine, from: number, icrLow: number, destination: number): void {
  writeLocalApic(machine, from, LocalApicOffset.InterruptCommandHigh, destination << 24);
  writeLocalApic(machine, from, LocalApicOffset.InterruptCommandLow, icrLow);
}

/** Unmasks PIC IRQs in `irqs` (bit n = IRQ n; IRQ 2, the cascade, with any slave IRQ). */
export function unmaskPicIrqs(machine: TestMachine, irqs: number): void {
  const slave = (irqs >>> 8) & 0xff;
  const master = (irqs & 0xff) | (slave !== 0 ? 1 << 2 : 0);
  vcpuOf(machine, 0).bus.outb(0x21, ~master & 0xff);
  vcpuOf(machine, 0).bus.outb(0xa1, ~slave & 0xff);
}

export const TEST_SOURCE: IrqEventSource = { deviceId: 1, queueId: 0, deviceName: 'test-device' };

export interface RegisteredEdge {
  readonly event: IrqEdgeEvent;
  readonly index: IrqEventIndex;
}

export interface RegisteredLevel {
  readonly event: IrqLevelEvent;
  readonly index: IrqEventIndex;
}

export function registerEdge(machine: TestMachine, gsi: number, event = new IrqEdgeEvent()): RegisteredEdge {
  return { event, index: machine.chip.registerEdgeIrqEvent(gsi, event, TEST_SOURCE) };
}

export function registerLevel(machine: TestMachine, gsi: number, event = new IrqLevelEvent()): RegisteredLevel {
  return { event, index: machine.chip.registerLevelIrqEvent(gsi, event, TEST_SOURCE) };
}

/** The device signals its event and the service thread services the token. */
export function fire(machine: TestMachine, registered: RegisteredEdge | RegisteredLevel): void {
  registered.event.trigger();
  machine.chip.serviceIrqEvent(registered.index);
}

/**
 * Runs `body` while the IOAPIC's lock is held as another thread would hold it (the lock is a word
 * of shared memory): the chip's device paths find it busy and defer.
 */
export function whileIoapicHeld(chip: UserspaceIrqChip, body: () => void): void {
  const lock = new Int32Array(chip.ioapic.descriptor().buffer);
  assert.ok(tryAcquireLock(lock), 'the IOAPIC was free');
  try {
    body();
  } finally {
    releaseLock(lock);
  }
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
  writeIoapicRegister(machine, 0x10 + 2 * pin + 1, (entry.destination ?? 0) << 24);
  writeIoapicRegister(machine, 0x10 + 2 * pin, low);
}

/** The guest (vCPU 0) writes IOAPIC register `index` through IOREGSEL and IOWIN. */
export function writeIoapicRegister(machine: TestMachine, index: number, value: number): void {
  const guest = vcpuOf(machine, 0).bus;
  guest.writeMmio32(IOAPIC_BASE, index);
  guest.writeMmio32(IOAPIC_BASE + 0x10, value >>> 0);
}

export function readIoapicRegister(machine: TestMachine, index: number): number {
  const guest = vcpuOf(machine, 0).bus;
  guest.writeMmio32(IOAPIC_BASE, index);
  return guest.readMmio32(IOAPIC_BASE + 0x10);
}

/**
 * A vCPU the test drives by hand: it says whether it is ready and records what the chip injects,
 * without running a guest (`SimVcpu` runs one).
 */
export class ScriptedVcpu implements Vcpu {
  ready = true;
  readonly injected: number[] = [];
  nmis = 0;
  inits = 0;
  readonly sipis: SipiStart[] = [];
  windowRequested = false;

  constructor(readonly id: number) {}

  readyForInterrupt(): boolean {
    return this.ready;
  }

  interrupt(vector: number): void {
    this.injected.push(vector);
  }

  injectNmi(): void {
    this.nmis++;
  }

  setInterruptWindowRequested(requested: boolean): void {
    this.windowRequested = requested;
  }

  applyInit(): void {
    this.inits++;
  }

  applySipi(start: SipiStart): void {
    this.sipis.push(start);
  }
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
