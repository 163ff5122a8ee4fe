/**
 * Test support: a PCI device with MSI-X on the userspace chip, driven by a scripted guest (run by
 * msix-demo.test.ts; not part of the API).
 *
 * The device has eight queues, one MSI-X vector each, its table and PBA in BAR 0. Queues 0–3 are
 * emulated by the VMM and raise interrupts with `trigger`; queues 4–7 belong to a backend outside
 * the VMM (vhost, VFIO) that signals the vectors' notifier events directly, which the VMM's service
 * loop turns into interrupts while the vector is unmasked and which nobody sees while it is masked.
 * Two SimVcpus run the guest: a driver on vCPU 0 brings MSI-X up as Linux does and then, while the
 * device fires, masks and unmasks vectors, reprograms them to the other vCPU and another vector,
 * sets and clears the function mask and reads the PBA, all through the MMIO bus and configuration
 * space. The handlers count every interrupt they take.
 *
 * Each time a queue fires, the device looks at its own pending bit before and after: the interrupt
 * was delivered at once, or held pending (a new pending bit), or coalesced into a pending bit
 * already set (the PCI rule: one message per pending bit). At the end the driver unmasks
 * everything, and the demo checks, per vector, that the guest took exactly fired − coalesced
 * interrupts: every held interrupt arrived once, none was lost and none duplicated.
 */

import { VirtualClock } from '../base/clock.ts';
import { seededRandom } from '../base/seeded-random.ts';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../chip/bus.ts';
import { LOCAL_APIC_WINDOW_BASE } from '../chip/chip-bus-devices.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { SimVcpu, type SimGuest } from '../chip/sim-vcpu.ts';
import { UserspaceIrqChip } from '../chip/userspace-irq-chip.ts';
import type { Event } from '../event/event.ts';
import type { ChipInterruptGroup } from './chip-interrupt-group.ts';
import { msiTo } from './device-test-support.ts';
import { InterruptManager } from './interrupt-manager.ts';
import { MSIX_ENABLE, MSIX_FUNCTION_MASK, MSIX_TABLE_ENTRY_BYTES, MsixCapability, MsixEntryField, VECTOR_CONTROL_MASK } from './msix-capability.ts';

const QUEUES = 8;
const FIRST_NOTIFIER_QUEUE = 4;
const CPUS = 2;
/** The guest gives queue q the vector 0x40 + q, or 0x80 + q after a reprogram: the low 6 bits name the queue. */
const VECTOR_BASES = [0x40, 0x80] as const;
const QUEUE_OF_VECTOR = 0x3f;
const BAR0 = 0xfebf_0000;
const PBA_OFFSET = 0x800;
/** Configuration-space offset of Message Control within the capability. */
const MESSAGE_CONTROL_OFFSET = 2;
const APIC_SVR = 0xf0;
const SVR_ENABLED = 0x1ff;

export interface MsixDemoOptions {
  /** Rounds of device activity (default 2000). */
  readonly rounds?: number;
  /** Seed of the scripted randomness (default 1). */
  readonly seed?: number;
}

/** One queue's accounting. */
export interface MsixQueueSummary {
  readonly queue: number;
  readonly raisedBy: 'trigger' | 'notifier';
  readonly fired: number;
  readonly deliveredAtOnce: number;
  /** Fired into a masked vector with no pending bit yet: delivered later, at unmask. */
  readonly heldPending: number;
  /** Fired into a masked vector whose pending bit was already set: merged with it. */
  readonly coalesced: number;
  readonly takenByGuest: number;
}

export interface MsixDemoReport {
  readonly queues: readonly MsixQueueSummary[];
  readonly guest: {
    readonly vectorMasks: number;
    readonly vectorUnmasks: number;
    readonly reprograms: number;
    readonly functionMaskToggles: number;
    readonly pbaReads: number;
    readonly pendingBitsSeen: number;
  };
  readonly routePushes: number;
  readonly gsisInUse: number;
  /** For every queue: takenByGuest === fired − coalesced. */
  readonly everyInterruptAccountedFor: boolean;
}

interface QueueCounts {
  fired: number;
  deliveredAtOnce: number;
  heldPending: number;
  coalesced: number;
  taken: number;
}

/** The guest's driver for the device: its accesses go through vCPU 0's buses. */
class GuestDriver {
  readonly targets = Array.from({ length: QUEUES }, (_, queue) => ({ cpu: queue % CPUS, base: 0 }));
  readonly vectorMasked = Array.from({ length: QUEUES }, () => true);
  functionMasked = false;
  readonly stats = { vectorMasks: 0, vectorUnmasks: 0, reprograms: 0, functionMaskToggles: 0, pbaReads: 0, pendingBitsSeen: 0 };

  constructor(
    private readonly cpu: SimGuest,
    private readonly msix: MsixCapability,
  ) {}

  /** Linux's order: enable with the function masked, program and unmask every entry, clear the function mask. */
  bringUp(): void {
    this.setControl(true);
    for (let queue = 0; queue < QUEUES; queue++) {
      this.program(queue);
      this.setVectorMask(queue, false);
    }
    this.setControl(false);
  }

  setVectorMask(queue: number, masked: boolean): void {
    this.cpu.writeMmio32(entryAddress(queue, MsixEntryField.VectorControl), masked ? VECTOR_CONTROL_MASK : 0);
    this.vectorMasked[queue] = masked;
    if (masked) this.stats.vectorMasks++;
    else this.stats.vectorUnmasks++;
  }

  /** Moves a queue's interrupt to the other vCPU and its other vector, masked around the change. */
  reprogram(queue: number): void {
    const target = this.targets[queue];
    if (target === undefined) return;
    target.cpu = (target.cpu + 1) % CPUS;
    target.base = 1 - target.base;
    const wasMasked = this.vectorMasked[queue] === true;
    this.setVectorMask(queue, true);
    this.program(queue);
    this.setVectorMask(queue, wasMasked);
    this.stats.reprograms++;
  }

  setControl(functionMasked: boolean): void {
    if (functionMasked !== this.functionMasked) this.stats.functionMaskToggles++;
    this.functionMasked = functionMasked;
    this.msix.writeConfig(MESSAGE_CONTROL_OFFSET, 2, MSIX_ENABLE | (functionMasked ? MSIX_FUNCTION_MASK : 0));
  }

  readPba(): void {
    const bits = this.cpu.readMmio32(BAR0 + PBA_OFFSET);
    this.stats.pbaReads++;
    for (let rest = bits; rest !== 0; rest &= rest - 1) this.stats.pendingBitsSeen++;
  }

  private program(queue: number): void {
    const target = this.targets[queue];
    if (target === undefined) return;
    const message = msiTo(target.cpu, (VECTOR_BASES[target.base] ?? VECTOR_BASES[0]) + queue);
    this.cpu.writeMmio32(entryAddress(queue, MsixEntryField.AddressLow), message.addressLow);
    this.cpu.writeMmio32(entryAddress(queue, MsixEntryField.AddressHigh), message.addressHigh);
    this.cpu.writeMmio32(entryAddress(queue, MsixEntryField.Data), message.data);
  }
}

function entryAddress(queue: number, field: number): number {
  return BAR0 + queue * MSIX_TABLE_ENTRY_BYTES + field * 4;
}

/** A seeded integer source: `random(below)` is in [0, below), so a seed replays the same run. */
function randomSource(seed: number): (below: number) => number {
  const next = seededRandom(seed);
  return (below) => Math.floor(next() * below);
}

interface DemoMachine {
  readonly chip: UserspaceIrqChip;
  readonly vcpus: readonly SimVcpu[];
  readonly manager: InterruptManager;
  readonly group: ChipInterruptGroup;
  readonly msix: MsixCapability;
  readonly counts: readonly QueueCounts[];
}

/** The chip, finalized onto fresh buses, two running vCPUs, and the device on BAR 0. */
function buildMachine(): DemoMachine {
  const chip = UserspaceIrqChip.create({ vcpuCount: CPUS, clock: new VirtualClock() });
  const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
  const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
  const allocator = new IrqAllocator();
  chip.finalizeDevices(allocator, ioBus, mmioBus);
  const counts = Array.from({ length: QUEUES }, (): QueueCounts => ({ fired: 0, deliveredAtOnce: 0, heldPending: 0, coalesced: 0, taken: 0 }));
  const vcpus = Array.from({ length: CPUS }, (_, id) => {
    const vcpu = new SimVcpu(id, {
      ioBus,
      mmioBus,
      handler: (vector, guest) => {
        const queue = counts[vector & QUEUE_OF_VECTOR];
        if (queue !== undefined) queue.taken++;
        guest.eoiLocalApic();
      },
    });
    chip.addVcpu(id, vcpu);
    // As a booted OS leaves them: every vCPU started, its local APIC software-enabled.
    chip.setMpState(id, 'runnable');
    vcpu.bus.writeMmio32(LOCAL_APIC_WINDOW_BASE + APIC_SVR, SVR_ENABLED);
    return vcpu;
  });
  const manager = new InterruptManager({ chip, gsis: allocator, device: { id: 1, name: 'msix-demo-device' } });
  const group = manager.createGroup('msi', 0, QUEUES);
  const msix = new MsixCapability({ group, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: PBA_OFFSET } });
  mmioBus.insert(msix.tableBusDevice(), BAR0, msix.tableBytes);
  mmioBus.insert(msix.pbaBusDevice(), BAR0 + PBA_OFFSET, msix.pbaBytes);
  return { chip, vcpus, manager, group, msix, counts };
}

/** The VMM's service loop (one pass), then every vCPU runs until it has nothing left to take. */
function runVmmAndGuests(machine: DemoMachine): void {
  for (const token of machine.chip.irqEventTokens()) if (token.event.readCount() !== 0n) machine.chip.serviceIrqEvent(token.index);
  for (const vcpu of machine.vcpus) vcpu.runUntilIdle(machine.chip);
}

/** The device raises queue `queue`'s interrupt and classifies what happened by its pending bit. */
function fire(machine: DemoMachine, notifiers: readonly Event[], queue: number): void {
  const counts = machine.counts[queue];
  if (counts === undefined) return;
  const wasPending = machine.group.getPendingState(queue);
  const notifier = notifiers[queue - FIRST_NOTIFIER_QUEUE];
  if (notifier === undefined) machine.group.trigger(queue);
  else notifier.signal();
  runVmmAndGuests(machine);
  counts.fired++;
  if (!machine.group.getPendingState(queue)) counts.deliveredAtOnce++;
  else if (wasPending) counts.coalesced++;
  else counts.heldPending++;
}

/** One scripted guest action, chosen at random; a function mask lasts until the guest's next action. */
function guestAction(driver: GuestDriver, random: (below: number) => number): void {
  if (driver.functionMasked) {
    driver.setControl(false);
    return;
  }
  const queue = random(QUEUES);
  switch (random(6)) {
    case 0:
      driver.setVectorMask(queue, true);
      return;
    case 1:
    case 2:
      driver.setVectorMask(queue, false);
      return;
    case 3:
      driver.reprogram(queue);
      return;
    case 4:
      driver.setControl(true);
      return;
    default:
      driver.readPba();
  }
}

export function runMsixDemo(options: MsixDemoOptions = {}): MsixDemoReport {
  const rounds = options.rounds ?? 2000;
  const random = randomSource(options.seed ?? 1);
  const machine = buildMachine();
  const [driverCpu] = machine.vcpus;
  if (driverCpu === undefined) throw new Error('the demo machine has no vCPU');
  const driver = new GuestDriver(driverCpu.bus, machine.msix);
  const notifiers = Array.from({ length: QUEUES - FIRST_NOTIFIER_QUEUE }, (_, index) => machine.group.notifier(FIRST_NOTIFIER_QUEUE + index));
  driver.bringUp();
  for (let round = 0; round < rounds; round++) {
    fire(machine, notifiers, random(QUEUES));
    if (random(3) === 0) guestAction(driver, random);
    runVmmAndGuests(machine);
  }
  // The driver unmasks everything: every interrupt still held is delivered now.
  driver.setControl(false);
  for (let queue = 0; queue < QUEUES; queue++) driver.setVectorMask(queue, false);
  runVmmAndGuests(machine);
  const queues = machine.counts.map(
    (counts, queue): MsixQueueSummary => ({
      queue,
      raisedBy: queue < FIRST_NOTIFIER_QUEUE ? 'trigger' : 'notifier',
      fired: counts.fired,
      deliveredAtOnce: counts.deliveredAtOnce,
      heldPending: counts.heldPending,
      coalesced: counts.coalesced,
      takenByGuest: counts.taken,
    }),
  );
  const { routePushes, gsisInUse } = machine.manager.counters();
  return {
    queues,
    guest: { ...driver.stats },
    routePushes,
    gsisInUse,
    everyInterruptAccountedFor: queues.every((queue) => queue.takenByGuest === queue.fired - queue.coalesced),
  };
}
