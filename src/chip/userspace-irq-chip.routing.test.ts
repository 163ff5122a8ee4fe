/**
 * x86-controllers.md §7.5 (routing, irqfd, resample) through the chip's API. KVM's IRQ_LINE is
 * `serviceIrq`, an irqfd is an edge event and a resample irqfd a level event.
 *
 * Not here: R5 (the routing table's own rules: gsi-routing-table.test.ts), R14 (an eventfd bound
 * twice: the misuse tests), R15 (KVM_SIGNAL_MSI: the APIC bus's tests). R9/R10 and R16 are in
 * userspace-irq-chip.test.ts.
 *
 * Where we differ from KVM on purpose: KVM shares irq source 0 between KVM_IRQ_LINE and plain
 * irqfds, so an irqfd pulse clears a level the VMM asserted (R17). Here the VMM's line and the
 * events are separate sources, and an edge pulse on a line another source holds high is no edge:
 * it coalesces (counted as `coalescedPulses`) and leaves the line high.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqSourceChip, ioapicIrqRoute, msiIrqRoute } from '../routing/irq-route.ts';
import { fire, makeMachine, programIoapicPin, registerEdge, registerLevel, unmaskPicIrqs, vcpuOf } from './chip-test-support.ts';

describe('x86-controllers.md §7.5 through the chip', () => {
  test('R1 default table: serviceIrq(4) raises PIC IRR4 and IOAPIC pin 4; the status sums both deliveries', () => {
    const machine = makeMachine();
    const { chip } = machine;
    unmaskPicIrqs(machine, 1 << 4);
    programIoapicPin(machine, 4, { vector: 0x34 });
    assert.equal(chip.serviceIrq(4, true), 2);
    assert.equal(chip.pic.registers(0).irr & (1 << 4), 1 << 4);
    assert.equal(chip.ioapic.lineLevel(4), true);
  });

  test('R2 serviceIrq(16) reaches IOAPIC pin 16 only', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 16, { vector: 0x50 });
    assert.equal(chip.serviceIrq(16, true), 1);
    assert.equal(chip.ioapic.lineLevel(16), true);
    assert.deepEqual([chip.pic.registers(0).irr, chip.pic.registers(1).irr], [0, 0]);
  });

  test('R3 two sources on a level pin (serviceIrq, a level event): the line is their OR', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 5, { vector: 0x35, level: true });
    const level = registerLevel(machine, 5);
    chip.serviceIrq(5, true);
    fire(machine, level);
    chip.serviceIrq(5, false);
    assert.equal(chip.ioapic.lineLevel(5), true, 'the event still holds it');
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x35]);
    assert.equal(chip.ioapic.lineLevel(5), false, "the guest's EOI lowered the event's source");
    assert.equal(level.event.clearResample(), true);
  });

  test('R4 after setIrqRoutes with only GSI 5 → pin 5, GSI 4 is unrouted: -1 and nothing moves', () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.setIrqRoutes([ioapicIrqRoute(5)]);
    const before = chip.snapshot();
    assert.equal(chip.serviceIrq(4, true), -1);
    assert.deepEqual(chip.snapshot(), before);
  });

  test('R6 a PIC-primary and an IOAPIC route on one GSI are both accepted and both driven', () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.routeIrq({ gsi: 30, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 5 } });
    chip.routeIrq({ gsi: 30, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 20 } });
    assert.equal(chip.routes().filter((route) => route.gsi === 30).length, 2);
    chip.serviceIrq(30, true);
    assert.equal(chip.pic.registers(0).irr & (1 << 5), 1 << 5);
    assert.equal(chip.ioapic.lineLevel(20), true);
  });

  test('R7 an edge event signalled three times before it is serviced is one interrupt', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 5, { vector: 0x35 });
    const edge = registerEdge(machine, 5);
    edge.event.trigger();
    edge.event.trigger();
    fire(machine, edge);
    chip.serviceIrqEvent(edge.index);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x35]);
    assert.equal(chip.counters().emptyEventServices, 1, 'the second service found nothing');
  });

  test('R8 an edge event on a level entry: one delivery, the line low afterwards, nothing more at the EOI', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 6, { vector: 0x36, level: true });
    const edge = registerEdge(machine, 6);
    fire(machine, edge);
    assert.equal(chip.ioapic.lineLevel(6), false);
    assert.equal(chip.ioapic.remoteIrr(6), true);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x36]);
    assert.equal(chip.ioapic.remoteIrr(6), false);
  });

  test('R11 two level events on one GSI: one EOI lowers the line once and signals both resamples', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    const first = registerLevel(machine, 10);
    const second = registerLevel(machine, 10);
    fire(machine, first);
    fire(machine, second);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x3a]);
    assert.deepEqual([first.event.clearResample(), second.event.clearResample()], [true, true]);
    assert.equal(chip.ioapic.counters().resampleSignals, 1, 'one deassert');
    assert.equal(chip.counters().resamplesSignalled, 2);
    assert.equal(chip.ioapic.lineLevel(10), false);
  });

  test('R12 a level event signalled while its pin is masked: the unmask resamples instead of injecting; the re-trigger delivers', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 10, { vector: 0x3a, level: true, masked: true });
    const level = registerLevel(machine, 10);
    fire(machine, level);
    assert.equal(chip.ioapic.lineLevel(10), true, 'held while masked');
    programIoapicPin(machine, 10, { vector: 0x3a, level: true });
    assert.equal(chip.ioapic.lineLevel(10), false);
    assert.equal(level.event.clearResample(), true);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [], 'no injection of stale state');
    fire(machine, level);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x3a]);
  });

  test('R13 an edge event on an MSI GSI sends the MSI; re-routed to an IOAPIC pin it pulses the pin', () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.routeIrq(msiIrqRoute(40, 0xfee00000n, 0x44));
    const edge = registerEdge(machine, 40);
    fire(machine, edge);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x44]);
    chip.setIrqRoutes([{ gsi: 40, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 20 } }]);
    programIoapicPin(machine, 20, { vector: 0x54 });
    fire(machine, edge);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x54]);
    assert.equal(chip.ioapic.lineLevel(20), false);
  });

  test('R17 (deliberate difference) serviceIrq(5, 1) then an edge event on GSI 5: the pulse coalesces and the line stays high (KVM ends low)', () => {
    const machine = makeMachine();
    const { chip } = machine;
    programIoapicPin(machine, 5, { vector: 0x35 });
    const edge = registerEdge(machine, 5);
    chip.serviceIrq(5, true);
    fire(machine, edge);
    assert.equal(chip.ioapic.lineLevel(5), true);
    // Two routes (PIC IRQ 5 and IOAPIC pin 5), each held high by serviceIrq.
    assert.equal(chip.counters().coalescedPulses, 2);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x35], 'one interrupt: the rising edge of serviceIrq');
  });
});
