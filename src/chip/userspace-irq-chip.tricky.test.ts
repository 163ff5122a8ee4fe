/**
 * The tricky cases of seed-apis.md §6 that concern the chip, each named by its number. §6.20
 * (secondary-PIC route) and §6.21 (MSI deassert) are in userspace-irq-chip.test.ts as well.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Event } from '../event/event.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { IrqSourceChip, defaultIrqRoutes, msiIrqRoute } from '../routing/irq-route.ts';
import {
  ScriptedVcpu,
  fire,
  initialisePic,
  makeMachine,
  programIoapicPin,
  readIoapicRegister,
  registerEdge,
  registerLevel,
  unmaskPicIrqs,
  vcpuOf,
  whileIoapicHeld,
  writeIoapicRegister,
  type RegisteredEdge,
  type RegisteredLevel,
  type TestMachine,
} from './chip-test-support.ts';
import { UserspaceIrqChip } from './userspace-irq-chip.ts';

const RTE_REMOTE_IRR = 1 << 14;
const RTE_LEVEL = 1 << 15;
const PIC_VECTORS = { master: 0x20, slave: 0x28 };

/** A machine whose edge event on GSI 4 (IOAPIC pin 4, vector 0x34) was serviced while another thread held the IOAPIC. */
function deferredEdge(): { machine: TestMachine; edge: RegisteredEdge } {
  const machine = makeMachine();
  programIoapicPin(machine, 4, { vector: 0x34 });
  const edge = registerEdge(machine, 4);
  whileIoapicHeld(machine.chip, () => {
    fire(machine, edge);
  });
  return { machine, edge };
}

/** A level event whose resample records, when signalled, whether `lineHigh()` still held. */
function levelEventRecordingLine(lineHigh: () => boolean): { event: IrqLevelEvent; linesAtResample: boolean[] } {
  const linesAtResample: boolean[] = [];
  const resample = Event.create();
  const recording: Event = Object.assign(Object.create(resample) as Event, {
    signal(n?: number | bigint): void {
      linesAtResample.push(lineHigh());
      resample.signal(n);
    },
  });
  return { event: IrqLevelEvent.fromEventPair(Event.create(), recording), linesAtResample };
}

describe('§6.7 EOI racing a new assert', () => {
  test('a trigger while the level interrupt is in service is not lost: the EOI resamples, the device re-triggers, it is delivered again', () => {
    let level: ReturnType<typeof registerLevel> | undefined;
    const machine: TestMachine = makeMachine(
      {},
      {
        handler: (_vector, guest) => {
          // New work arrives while the handler runs, before its EOI: the line is already high.
          if (level !== undefined) fire(machine, level);
          guest.eoiLocalApic();
        },
      },
    );
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    level = registerLevel(machine, 10);
    fire(machine, level);
    assert.equal(vcpuOf(machine, 0).step(chip), 0x3a);
    assert.equal(chip.ioapic.counters().coalescedAsserts, 1, 'the second trigger merged with the one in service');
    // The device sees the resample, still has work, and triggers again.
    assert.equal(level.event.clearResample(), true);
    const registered = level;
    level = undefined;
    fire(machine, registered);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x3a]);
  });

  test('unmasking a level pin whose line is high fires it (a serviceIrq line: no resample wired)', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 12, { vector: 0x4c, level: true, masked: true });
    chip.serviceIrq(12, true);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), []);
    programIoapicPin(machine, 12, { vector: 0x4c, level: true });
    assert.equal(chip.localApic(0).irr(0x4c), true);
  });
});

describe('§6.8 remote IRR through the chip', () => {
  /** A level event on IOAPIC pin 10 (vector 0x3a) that vCPU 0 took and has not EOIed yet (its handler does nothing). */
  function levelInService(): { machine: TestMachine; level: RegisteredLevel } {
    const machine = makeMachine({}, { handler: () => undefined });
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    const level = registerLevel(machine, 10);
    fire(machine, level);
    assert.equal(vcpuOf(machine, 0).step(machine.chip), 0x3a);
    return { machine, level };
  }

  test('remote IRR is read-only through MMIO', () => {
    const machine = makeMachine();
    writeIoapicRegister(machine, 0x10 + 2 * 9, 0x49 | RTE_LEVEL | RTE_REMOTE_IRR);
    assert.equal(readIoapicRegister(machine, 0x10 + 2 * 9) & RTE_REMOTE_IRR, 0);
  });

  test('remote IRR survives a mask and unmask: no second delivery; the EOI then resamples', () => {
    const { machine, level } = levelInService();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true, masked: true });
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    assert.equal(chip.ioapic.remoteIrr(10), true);
    assert.equal(chip.ioapic.counters().messagesAccepted, 1);
    assert.equal(level.event.clearResample(), false);
    vcpuOf(machine, 0).bus.eoiLocalApic();
    assert.equal(level.event.clearResample(), true);
  });

  test('an edge→level toggle is an implicit EOI: remote IRR clears, the line is resampled, the re-trigger delivers', () => {
    const { machine, level } = levelInService();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a });
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    assert.equal(chip.ioapic.remoteIrr(10), false);
    assert.equal(chip.ioapic.lineLevel(10), false);
    assert.equal(level.event.clearResample(), true);
    fire(machine, level);
    assert.equal(chip.ioapic.remoteIrr(10), true);
  });

  test('a level assert while remote IRR is set is not re-sent', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    const level = registerLevel(machine, 10);
    fire(machine, level);
    fire(machine, level);
    assert.equal(chip.ioapic.counters().messagesAccepted, 1);
    assert.equal(chip.ioapic.counters().coalescedAsserts, 1);
  });

  test('I16 reconfiguration during an EOI does not wedge the pin: read the entry, EOI, write back the old copy as edge; edges then deliver', () => {
    const { machine, level } = levelInService();
    const { chip } = machine;
    const oldCopy = readIoapicRegister(machine, 0x10 + 2 * 10);
    assert.equal(oldCopy & RTE_REMOTE_IRR, RTE_REMOTE_IRR);
    vcpuOf(machine, 0).bus.eoiLocalApic();
    writeIoapicRegister(machine, 0x10 + 2 * 10, oldCopy & ~RTE_LEVEL);
    assert.equal(chip.ioapic.remoteIrr(10), false);
    chip.unregisterLevelIrqEvent(10, level.event);
    const edge = registerEdge(machine, 10);
    fire(machine, edge);
    assert.equal(vcpuOf(machine, 0).step(chip), 0x3a);
  });
});

describe('§6.9 resample wiring', () => {
  /** A level event on PIC IRQ 3 (ELCR level) taken by vCPU 0 (INTA only: the handler does nothing). */
  function picLevelInterrupt(icw4 = 0x01): { machine: TestMachine; level: ReturnType<typeof registerLevel> } {
    const machine = makeMachine({}, { handler: () => undefined });
    initialisePic(machine, PIC_VECTORS.master, PIC_VECTORS.slave, icw4);
    vcpuOf(machine, 0).bus.outb(0x4d0, 1 << 3);
    unmaskPicIrqs(machine, 1 << 3);
    const level = registerLevel(machine, 3);
    fire(machine, level);
    return { machine, level };
  }

  const pic = (machine: TestMachine) => vcpuOf(machine, 0).bus;
  const clearingActions: readonly [string, (machine: TestMachine) => void][] = [
    ['a non-specific EOI', (machine) => {
      pic(machine).outb(0x20, 0x20);
    }],
    ['a specific EOI', (machine) => {
      pic(machine).outb(0x20, 0x60 | 3);
    }],
    ['ICW1 (re-initialisation) while in service', (machine) => {
      initialisePic(machine, PIC_VECTORS.master, PIC_VECTORS.slave);
    }],
  ];
  for (const [name, clearIsr] of clearingActions) {
    test(`PIC ISR cleared by ${name}: the line is lowered, then the resample signalled`, () => {
      const { machine, level } = picLevelInterrupt();
      assert.equal(vcpuOf(machine, 0).step(machine.chip), 0x23);
      assert.equal(level.event.clearResample(), false, 'nothing before the ISR bit clears');
      clearIsr(machine);
      assert.equal(level.event.clearResample(), true);
      assert.equal(machine.chip.pic.registers(0).irr & (1 << 3), 0);
    });
  }

  test('PIC ISR cleared by AEOI at the INTA: resampled at once', () => {
    const { machine, level } = picLevelInterrupt(0x03);
    assert.equal(vcpuOf(machine, 0).step(machine.chip), 0x23);
    assert.equal(level.event.clearResample(), true);
  });

  test('PIC poll (datasheet form: the poll sets ISR): resampled at the EOI that follows; under AEOI at the poll', () => {
    const normal = picLevelInterrupt();
    pic(normal.machine).outb(0x20, 0x0c);
    assert.equal(pic(normal.machine).inb(0x20), 0x80 | 3);
    assert.equal(normal.level.event.clearResample(), false);
    pic(normal.machine).outb(0x20, 0x20);
    assert.equal(normal.level.event.clearResample(), true);
    const automatic = picLevelInterrupt(0x03);
    pic(automatic.machine).outb(0x20, 0x0c);
    assert.equal(pic(automatic.machine).inb(0x20), 0x80 | 3);
    assert.equal(automatic.level.event.clearResample(), true);
  });

  for (const [mode, icw4] of [
    ['normal EOI', 0x01],
    ['AEOI', 0x03],
  ] as const) {
    test(`a level IRQ on the secondary PIC (${mode}): the line is lowered before the cascade is re-evaluated, so no spurious IRQ 15 follows`, () => {
      const machine = makeMachine({}, { picVectorBases: PIC_VECTORS });
      const { chip } = machine;
      initialisePic(machine, PIC_VECTORS.master, PIC_VECTORS.slave, icw4);
      vcpuOf(machine, 0).bus.outb(0x4d1, 1 << 3);
      unmaskPicIrqs(machine, 1 << 11);
      const level = registerLevel(machine, 11);
      fire(machine, level);
      assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x2b]);
      assert.equal(level.event.clearResample(), true);
      assert.equal(chip.pic.counters().spuriousAcknowledges, 0);
      assert.equal(chip.pic.registers(0).irr & (1 << 2), 0, 'IR2 not latched');
    });
  }

  test('the line is deasserted before the resample is signalled (IOAPIC and PIC), so a re-trigger is a fresh assert', () => {
    const machine = makeMachine({}, { picVectorBases: PIC_VECTORS });
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    const ioapicDevice = levelEventRecordingLine(() => chip.ioapic.lineLevel(10));
    chip.registerLevelIrqEvent(10, ioapicDevice.event, { deviceId: 2, queueId: 0, deviceName: 'ioapic-level' });
    ioapicDevice.event.trigger();
    chip.serviceIrqEvent(0);
    vcpuOf(machine, 0).runUntilIdle(chip);
    vcpuOf(machine, 0).bus.outb(0x4d0, 1 << 3);
    unmaskPicIrqs(machine, 1 << 3);
    const picDevice = levelEventRecordingLine(() => (chip.pic.registers(0).irr & (1 << 3)) !== 0);
    chip.registerLevelIrqEvent(3, picDevice.event, { deviceId: 3, queueId: 0, deviceName: 'pic-level' });
    picDevice.event.trigger();
    chip.serviceIrqEvent(1);
    vcpuOf(machine, 0).runUntilIdle(chip);
    assert.deepEqual([ioapicDevice.linesAtResample, picDevice.linesAtResample], [[false], [false]]);
  });

  test('resample follows a level event registered after finalizeDevices, and stops when it is unregistered', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 11, { vector: 0x3b, level: true });
    const level = registerLevel(machine, 11);
    assert.equal(chip.ioapic.isPinResampled(11), true);
    fire(machine, level);
    vcpuOf(machine, 0).runUntilIdle(chip);
    assert.equal(level.event.clearResample(), true);
    chip.unregisterLevelIrqEvent(11, level.event);
    assert.equal(chip.ioapic.isPinResampled(11), false);
  });

  test('unregistering a level event whose line is held lowers it (KVM: the last resampler deasserts source 1)', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 11, { vector: 0x3b, level: true, masked: true });
    const level = registerLevel(machine, 11);
    fire(machine, level);
    assert.equal(chip.ioapic.lineLevel(11), true);
    chip.unregisterLevelIrqEvent(11, level.event);
    assert.equal(chip.ioapic.lineLevel(11), false);
    programIoapicPin(machine, 11, { vector: 0x3b, level: true });
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [], 'no stale interrupt at the unmask');
  });

  test('a route change that takes a level GSI off a pin lowers the level the events held there', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 11, { vector: 0x3b, level: true, masked: true });
    const level = registerLevel(machine, 11);
    fire(machine, level);
    chip.setIrqRoutes(defaultIrqRoutes().filter((route) => !(route.gsi === 11 && route.source.kind === 'irqchip' && route.source.chip === IrqSourceChip.Ioapic)));
    assert.equal(chip.ioapic.lineLevel(11), false);
    assert.equal(chip.ioapic.isPinResampled(11), false);
  });
});

describe('§6.10 delayed events', () => {
  test('an IOAPIC held by another thread defers the IOAPIC half of an edge; the PIC half is done; the token is signalled', () => {
    const { chip } = deferredEdge().machine;
    assert.equal(chip.counters().delayedEvents, 1);
    assert.equal(chip.irqDelayedEventToken().readCount(), 1n);
    assert.equal(chip.pic.registers(0).irr & (1 << 4), 1 << 4, 'the PIC route was pulsed');
    assert.equal(chip.localApic(0).irr(0x34), false, 'the IOAPIC route waits');
  });

  test('processDelayedIrqEvents retries: still held, still deferred; once free, delivered and the token cleared', () => {
    const { machine } = deferredEdge();
    const { chip } = machine;
    whileIoapicHeld(chip, () => {
      chip.processDelayedIrqEvents();
    });
    assert.equal(chip.irqDelayedEventToken().readCount() > 0n, true, 'still owed');
    chip.processDelayedIrqEvents();
    assert.equal(chip.irqDelayedEventToken().readCount(), 0n);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x34]);
    assert.equal(chip.pic.counters().coalescedRequests, 0, 'the retry did not pulse the PIC again');
  });

  test('a deferred level assertion raises the line when retried, and the EOI resamples it', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    const level = registerLevel(machine, 10);
    whileIoapicHeld(chip, () => {
      fire(machine, level);
    });
    assert.equal(chip.ioapic.lineLevel(10), false);
    chip.processDelayedIrqEvents();
    assert.equal(chip.ioapic.lineLevel(10), true);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x3a]);
    assert.equal(level.event.clearResample(), true);
  });

  test('a deferred assertion whose event was unregistered meanwhile is dropped, and the token cleared', () => {
    const { machine, edge } = deferredEdge();
    const { chip } = machine;
    chip.unregisterEdgeIrqEvent(4, edge.event);
    chip.processDelayedIrqEvents();
    assert.equal(chip.counters().droppedDelayedEvents, 1);
    assert.equal(chip.irqDelayedEventToken().readCount(), 0n);
    assert.equal(chip.localApic(0).irr(0x34), false);
  });

  test("a clone's delayed token and list are the original's", () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 4, { vector: 0x34 });
    const edge = registerEdge(machine, 4);
    const clone = chip.tryClone();
    assert.equal(clone.irqDelayedEventToken(), chip.irqDelayedEventToken());
    edge.event.trigger();
    whileIoapicHeld(chip, () => {
      clone.serviceIrqEvent(edge.index);
    });
    chip.processDelayedIrqEvents();
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x34]);
  });

  test("a view (another thread's chip) has its own delayed token and list: what it defers, it retries", () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 4, { vector: 0x34 });
    const edge = registerEdge(machine, 4);
    const view = UserspaceIrqChip.fromDescriptor(chip.createView(), { clock: machine.clock });
    assert.equal(view.irqDelayedEventToken().sameCounter(chip.irqDelayedEventToken()), false);
    edge.event.trigger();
    whileIoapicHeld(chip, () => {
      view.serviceIrqEvent(edge.index);
    });
    assert.deepEqual([view.irqDelayedEventToken().readCount(), chip.irqDelayedEventToken().readCount()], [1n, 0n]);
    view.processDelayedIrqEvents();
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x34]);
  });
});

describe('§6.18 one event, one GSI', () => {
  test('unregistering a pair that was never registered is silently OK and changes nothing', () => {
    const machine = makeMachine();
    const { chip } = machine;
    const edge = registerEdge(machine, 5);
    const before = chip.snapshot();
    chip.unregisterEdgeIrqEvent(5, new IrqEdgeEvent());
    chip.unregisterLevelIrqEvent(5, new IrqLevelEvent());
    chip.unregisterEdgeIrqEvent(6, edge.event);
    assert.deepEqual(chip.snapshot(), before);
    assert.deepEqual(chip.irqEventTokens().map((token) => token.index), [edge.index]);
  });
});

describe('§6.19 default ISA routing (as KVM and crosvm)', () => {
  test('GSI 0–7 → PIC primary pin n and IOAPIC pin n (GSI 0 is not moved to pin 2), 8–15 → PIC secondary n−8 and IOAPIC n, 16–23 → IOAPIC only', () => {
    const { chip } = makeMachine();
    const routes = chip.routes();
    const sourcesOf = (gsi: number) => routes.filter((route) => route.gsi === gsi).map((route) => route.source);
    assert.deepEqual(sourcesOf(0), [
      { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 0 },
      { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 0 },
    ]);
    assert.equal(sourcesOf(2).length, 2, 'GSI 2 is routed');
    assert.deepEqual(sourcesOf(9), [
      { kind: 'irqchip', chip: IrqSourceChip.PicSecondary, pin: 1 },
      { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 9 },
    ]);
    assert.deepEqual(sourcesOf(23), [{ kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 23 }]);
    assert.deepEqual(sourcesOf(24), []);
    assert.equal(routes.length, 16 * 2 + 8);
  });
});

describe('§6.20 crosvm PIC bugs avoided', () => {
  test('an ELCR write keeps the bits written, within the writable mask (crosvm masks with the complement of the old ELCR)', () => {
    const machine = makeMachine();
    const guest = vcpuOf(machine, 0).bus;
    guest.outb(0x4d0, 0x08);
    guest.outb(0x4d0, 0x18);
    guest.outb(0x4d1, 0xff);
    assert.deepEqual([guest.inb(0x4d0), guest.inb(0x4d1)], [0x18, 0xde]);
  });
});

describe('§6.28 interrupt-window bookkeeping', () => {
  test('at most one external interrupt per injectInterrupts; the window stays requested while another is deliverable', () => {
    const machine = makeMachine();
    const { chip } = machine;
    unmaskPicIrqs(machine, 1 << 3);
    chip.routeIrq(msiIrqRoute(30, 0xfee00000n, 0x41));
    chip.serviceIrq(3, true);
    chip.serviceIrq(30, true);
    const vcpu = new ScriptedVcpu(0);
    chip.injectInterrupts(vcpu);
    assert.deepEqual(vcpu.injected, [0x23], 'the PIC first (x86-controllers.md §3.6)');
    assert.equal(vcpu.windowRequested, true);
    chip.injectInterrupts(vcpu);
    assert.deepEqual(vcpu.injected, [0x23, 0x41]);
    assert.equal(vcpu.windowRequested, false);
  });

  test('a vCPU not ready takes no interrupt but asks for a window; an NMI is injected regardless', () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.routeIrq(msiIrqRoute(30, 0xfee00000n, 0x41));
    chip.routeIrq(msiIrqRoute(31, 0xfee00000n, 0x400));
    chip.serviceIrq(30, true);
    chip.serviceIrq(31, true);
    const vcpu = new ScriptedVcpu(0);
    vcpu.ready = false;
    chip.injectInterrupts(vcpu);
    assert.deepEqual([vcpu.injected, vcpu.nmis, vcpu.windowRequested], [[], 1, true]);
  });

  test('a kick with nobody waiting makes the next wait of every vCPU return interrupted once; the wait after it proceeds', async () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.kickHaltedVcpus();
    for (const vcpu of machine.vcpus) {
      assert.equal(await chip.waitUntilRunnableAsync(vcpu), 'interrupted');
      assert.equal(await chip.waitUntilRunnableAsync(vcpu), 'runnable');
    }
  });
});
