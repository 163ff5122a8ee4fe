import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { IrqSourceChip, ioapicIrqRoute, msiIrqRoute } from '../routing/irq-route.ts';
import { initialisePic, makeMachine, programIoapicPin, type TestMachine } from './chip-test-support.ts';
import type { SimVcpu } from './sim-vcpu.ts';
import { UserspaceIrqChip } from './userspace-irq-chip.ts';

const SOURCE = { deviceId: 1, queueId: 0, deviceName: 'test-device' };

/** The machine's vCPU `id` (the test fails if it has none). */
function cpu(machine: TestMachine, id: number): SimVcpu {
  const vcpu = machine.vcpus[id];
  assert.ok(vcpu, `vCPU ${id} exists`);
  return vcpu;
}

describe('UserspaceIrqChip: one interrupt from device to guest and back', () => {
  test('edge event through the IOAPIC: delivered once per pulse; signals before servicing coalesce', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 4, { vector: 0x34 });
    const edge = new IrqEdgeEvent();
    const index = chip.registerEdgeIrqEvent(4, edge, SOURCE);
    edge.trigger();
    edge.trigger();
    chip.serviceIrqEvent(index);
    assert.deepEqual(cpu(machine, 0).runUntilIdle(chip), [0x34]);
    edge.trigger();
    chip.serviceIrqEvent(index);
    assert.deepEqual(cpu(machine, 0).runUntilIdle(chip), [0x34]);
    assert.equal(chip.ioapic.lineLevel(4), false, 'a pulse leaves the line low');
    assert.equal(chip.counters().edgeEventsServiced, 2);
  });

  test('R9/R10 level event through the IOAPIC: line held until EOI, then deasserted and resample signalled; re-trigger re-delivers', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true, destination: 1 });
    const level = new IrqLevelEvent();
    const index = chip.registerLevelIrqEvent(10, level, SOURCE);
    level.trigger();
    chip.serviceIrqEvent(index);
    assert.equal(chip.ioapic.lineLevel(10), true);
    assert.equal(chip.ioapic.remoteIrr(10), true, 'the LAPIC accepted it');
    assert.ok(chip.localApic(1).irr(0x3a));
    assert.equal(level.clearResample(), false, 'no resample before the EOI');
    assert.deepEqual(cpu(machine, 1).runUntilIdle(chip), [0x3a]);
    assert.equal(chip.ioapic.lineLevel(10), false, 'EOI deasserted the line');
    assert.equal(chip.ioapic.remoteIrr(10), false);
    assert.equal(level.clearResample(), true, 'EOI signalled the resample event');
    level.trigger();
    chip.serviceIrqEvent(index);
    assert.deepEqual(cpu(machine, 1).runUntilIdle(chip), [0x3a]);
  });

  test('§6.21 MSI route: an assert sends the message; a deassert sends nothing (crosvm sends one)', () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.routeIrq(msiIrqRoute(30, 0xfee01000n, 0xf1));
    assert.equal(chip.serviceIrq(30, true), 1);
    assert.equal(chip.serviceIrq(30, false), -1);
    assert.deepEqual(cpu(machine, 1).runUntilIdle(chip), [0xf1]);
    assert.deepEqual(cpu(machine, 0).runUntilIdle(chip), []);
    assert.equal(chip.counters().msiDeassertsIgnored, 1);
  });

  test('R16 PIC through LINT0 ExtINT on vCPU 0; a level event on a PIC route is resampled at the PIC EOI', () => {
    const machine = makeMachine({}, { picVectorBases: { master: 0x20, slave: 0x28 } });
    const { chip } = machine;
    initialisePic(machine, 0x20, 0x28);
    cpu(machine, 0).bus.outb(0x4d0, 1 << 3); // ELCR: IRQ 3 level-triggered
    const level = new IrqLevelEvent();
    const index = chip.registerLevelIrqEvent(3, level, SOURCE);
    level.trigger();
    chip.serviceIrqEvent(index);
    assert.deepEqual(cpu(machine, 0).runUntilIdle(chip), [0x23]);
    assert.equal(level.clearResample(), true);
    assert.equal(chip.pic.registers(0).irr & (1 << 3), 0, 'the line was lowered before the resample');
  });

  test('§6.20 a secondary-PIC route reaches ISA IRQ 8 + pin', () => {
    const machine = makeMachine({}, { picVectorBases: { master: 0x20, slave: 0x28 } });
    initialisePic(machine, 0x20, 0x28);
    machine.chip.setIrqRoutes([{ gsi: 40, source: { kind: 'irqchip', chip: IrqSourceChip.PicSecondary, pin: 4 } }]);
    machine.chip.serviceIrq(40, true);
    machine.chip.serviceIrq(40, false);
    assert.deepEqual(cpu(machine, 0).runUntilIdle(machine.chip), [0x2c]);
  });

  test('crosvm test_route_irq: with routes cleared GSI 1 touches nothing; GSI 1 → IOAPIC pin 3; GSI 2 → PIC pin 6', () => {
    const { chip } = makeMachine();
    chip.setIrqRoutes([]);
    assert.equal(chip.serviceIrq(1, true), -1);
    assert.equal(chip.ioapic.lineLevel(1), false);
    chip.routeIrq({ gsi: 1, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 3 } });
    chip.serviceIrq(1, true);
    assert.equal(chip.ioapic.lineLevel(3), true);
    chip.serviceIrq(1, false);
    assert.equal(chip.ioapic.lineLevel(3), false);
    chip.routeIrq({ gsi: 2, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 6 } });
    chip.serviceIrq(1, true);
    assert.equal(chip.pic.registers(0).irr & (1 << 6), 0);
    chip.serviceIrq(2, true);
    assert.notEqual(chip.pic.registers(0).irr & (1 << 6), 0);
  });

  test('setIrqRoutes applies whole or not at all', () => {
    const { chip } = makeMachine();
    const before = chip.routes();
    assert.throws(() => {
      chip.setIrqRoutes([ioapicIrqRoute(5), msiIrqRoute(5, 0xfee00000n, 0x40)]);
    }, rejectsWith('EINVAL'));
    assert.deepEqual(chip.routes(), before);
  });

  test('finalizeDevices moves the allocator to at least 24', () => {
    const { allocator } = makeMachine();
    assert.ok(allocator.allocate() >= 24);
  });

  test('unknown vCPUs are ENOENT; the stopped MP state is EINVAL on x86', () => {
    const chip = UserspaceIrqChip.create({ vcpuCount: 2 });
    assert.throws(() => chip.getMpState(2), rejectsWith('ENOENT'));
    assert.throws(() => {
      chip.setMpState(0, 'stopped');
    }, rejectsWith('EINVAL'));
    assert.equal(chip.getMpState(1), 'uninitialized');
    assert.equal(chip.getMpState(0), 'runnable');
  });
});
