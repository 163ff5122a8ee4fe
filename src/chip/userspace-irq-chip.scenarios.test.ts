/**
 * crosvm's chip-level scenarios (devices/tests/irqchip; seed-apis.md §2.11) run against
 * UserspaceIrqChip.
 *
 * Not here: the PIT scenarios (PIT state round trip, the PIT's token on a fresh chip, the PIT on
 * port 0x43): this chip has no PIT; a timer device registers an event like any other device.
 * `test_route_irq`, MSI deassert and the secondary-PIC route are in userspace-irq-chip.test.ts.
 * The split chip's `get_external_interrupt` scenario is the split chip's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqEdgeEvent } from '../event/irq-event.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
import {
  LocalApicOffset,
  makeMachine,
  programIoapicPin,
  readLocalApic,
  registerLevel,
  fire,
  TEST_SOURCE,
  unmaskPicIrqs,
  vcpuOf,
  writeLocalApic,
} from './chip-test-support.ts';

const IOAPIC_BASE = 0xfec00000;
const IOWIN = IOAPIC_BASE + 0x10;
/** MSI data bits 10:8 = 001: lowest-priority delivery (SDM vol. 3 §11.11.2). */
const MSI_LOWEST_PRIORITY = 0x100;
/** MSI address bit 2: logical destination mode. */
const MSI_LOGICAL = 0x4;

describe('crosvm chip scenarios (seed-apis.md §2.11)', () => {
  test('crosvm state round trip: PIC, IOAPIC and LAPIC state survive snapshot and restore into a fresh chip', () => {
    const source = makeMachine();
    programIoapicPin(source, 7, { vector: 0x47, level: true, destination: 1 });
    writeLocalApic(source, 1, LocalApicOffset.TaskPriority, 0x30);
    unmaskPicIrqs(source, 1 << 4);
    const target = makeMachine();
    target.chip.restore(source.chip.snapshot());
    assert.deepEqual(target.chip.ioapic.redirectionEntry(7), source.chip.ioapic.redirectionEntry(7));
    assert.equal(readLocalApic(target, 1, LocalApicOffset.TaskPriority), 0x30);
    assert.deepEqual(target.chip.pic.registers(0), source.chip.pic.registers(0));
  });

  test('crosvm MSI route conflict: a second MSI route on GSI 30 replaces the first', () => {
    const machine = makeMachine();
    const { chip } = machine;
    chip.routeIrq(msiIrqRoute(30, 0xfee00000n, 0x41));
    chip.routeIrq(msiIrqRoute(30, 0xfee01000n, 0x42));
    assert.deepEqual(
      chip.routes().filter((route) => route.gsi === 30),
      [msiIrqRoute(30, 0xfee01000n, 0x42)],
    );
    chip.serviceIrq(30, true);
    assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(chip), [0x42]);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), []);
  });

  test('crosvm irq_event_tokens: a fresh chip has none (crosvm has 1: its PIT); an edge event on GSI 6 gives one, with its source and event', () => {
    const { chip } = makeMachine();
    assert.deepEqual(chip.irqEventTokens(), []);
    const edge = new IrqEdgeEvent();
    const index = chip.registerEdgeIrqEvent(6, edge, TEST_SOURCE);
    const tokens = chip.irqEventTokens();
    assert.equal(tokens.length, 1);
    const [token] = tokens;
    assert.ok(token);
    assert.equal(token.index, index);
    assert.deepEqual(token.source, TEST_SOURCE);
    assert.ok(token.event.sameCounter(edge.getTrigger()), 'the token is the registered trigger');
  });

  test('crosvm finalize_devices: later IRQs are ≥ 24; PIC ICW 0x11/0x08/0xFF/0x13; a level event on GSI 1 injects vector 9 and the AEOI signals its resample; IOAPIC entry 14 written as 44 reads 44', () => {
    const machine = makeMachine();
    const { chip, allocator } = machine;
    assert.ok(allocator.allocate() >= 24);
    const guest = vcpuOf(machine, 0).bus;
    for (const [port, value] of [
      [0x20, 0x11],
      [0x21, 0x08],
      [0x21, 0xff],
      [0x21, 0x13],
    ] as const) {
      guest.outb(port, value);
    }
    assert.equal(chip.pic.registers(0).autoEoi, true);
    assert.equal(chip.pic.registers(0).specialFullyNested, true);
    const level = registerLevel(machine, 1);
    fire(machine, level);
    assert.equal(vcpuOf(machine, 0).step(chip), 9);
    assert.equal(level.event.clearResample(), true, 'AEOI at the INTA ends the interrupt');
    assert.equal(chip.pic.registers(0).irr & 0x02, 0, 'the line was lowered');
    guest.writeMmio32(IOAPIC_BASE, 0x10 + 2 * 14);
    guest.writeMmio32(IOWIN, 44);
    assert.equal(guest.readMmio32(IOWIN), 44);
  });

  test('crosvm broadcast_eoi: serviceIrq asserts without a resample; the EOI signals the resample (the serviceIrq line stays up, as KVM keeps each source: crosvm lowers it)', () => {
    const machine = makeMachine();
    const { chip } = machine;
    const level = registerLevel(machine, 1);
    programIoapicPin(machine, 1, { vector: 123, level: true });
    const bsp = chip.localApic(0);
    chip.serviceIrq(1, true);
    assert.equal(level.event.clearResample(), false);
    assert.equal(chip.ioapic.lineLevel(1), true);
    assert.equal(bsp.acknowledgeInterrupt(), 123, 'the vCPU takes it');
    chip.broadcastEoi(123);
    assert.equal(level.event.clearResample(), true);
    // Deliberate difference: the VMM's own line (serviceIrq) is a source of its own that the EOI
    // does not lower; it is still high, so it was delivered again.
    assert.equal(chip.ioapic.lineLevel(1), true);
    assert.equal(chip.ioapic.remoteIrr(1), true);
    assert.ok(bsp.irr(123));
    chip.serviceIrq(1, false);
    chip.broadcastEoi(123);
    assert.equal(chip.ioapic.lineLevel(1), false);
    // The device's own assertion is the one an EOI ends.
    level.event.clearResample();
    fire(machine, level);
    assert.equal(chip.ioapic.lineLevel(1), true);
    chip.broadcastEoi(123);
    assert.equal(chip.ioapic.lineLevel(1), false);
    assert.equal(level.event.clearResample(), true);
  });

  test('crosvm (userspace): a PIC interrupt is injected only on vCPU 0, and only once', () => {
    const machine = makeMachine({}, { picVectorBases: { master: 0x20, slave: 0x28 } });
    const { chip } = machine;
    unmaskPicIrqs(machine, 1 << 3);
    chip.serviceIrq(3, true);
    chip.serviceIrq(3, false);
    assert.equal(vcpuOf(machine, 1).step(chip), undefined);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x23]);
    assert.equal(vcpuOf(machine, 0).step(chip), undefined);
  });

  test('crosvm (userspace) MSI injection: GSI 30 → 0xFEE01000/0xF1 asks a window only of vCPU 1, waits while it is not ready, is injected once it is, and the request is then cleared', () => {
    const machine = makeMachine();
    const { chip } = machine;
    const [cpu0, cpu1] = [vcpuOf(machine, 0), vcpuOf(machine, 1)];
    chip.routeIrq(msiIrqRoute(30, 0xfee01000n, 0xf1));
    cpu0.interruptsEnabled = false;
    cpu1.interruptsEnabled = false;
    chip.serviceIrq(30, true);
    // Deliberate difference: the request is made by injectInterrupts on the vCPU's own thread
    // (crosvm sets it from the delivering thread; a KVM vCPU's run area belongs to its thread).
    chip.injectInterrupts(cpu0);
    chip.injectInterrupts(cpu1);
    assert.equal(cpu0.interruptWindowRequested, false);
    assert.equal(cpu1.interruptWindowRequested, true);
    assert.equal(cpu1.step(chip), undefined, 'not injected while not ready');
    cpu1.interruptsEnabled = true;
    assert.equal(cpu1.step(chip), 0xf1);
    assert.equal(cpu1.interruptWindowRequested, false);
  });

  test('crosvm (userspace): lowest-priority delivery goes to the APIC with the lower TPR', () => {
    const machine = makeMachine();
    const { chip } = machine;
    // Flat logical model (DFR's reset value): vCPU 0 is logical 0x01, vCPU 1 is 0x02.
    writeLocalApic(machine, 0, LocalApicOffset.LogicalDestination, 0x01 << 24);
    writeLocalApic(machine, 1, LocalApicOffset.LogicalDestination, 0x02 << 24);
    chip.routeIrq(msiIrqRoute(30, BigInt((0xfee00000 | (0x03 << 12) | MSI_LOGICAL) >>> 0), MSI_LOWEST_PRIORITY | 0x61));
    writeLocalApic(machine, 0, LocalApicOffset.TaskPriority, 0x20);
    chip.serviceIrq(30, true);
    assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(chip), [0x61]);
    writeLocalApic(machine, 0, LocalApicOffset.TaskPriority, 0x00);
    writeLocalApic(machine, 1, LocalApicOffset.TaskPriority, 0x20);
    chip.serviceIrq(30, true);
    assert.deepEqual(vcpuOf(machine, 0).runUntilIdle(chip), [0x61]);
    assert.deepEqual(vcpuOf(machine, 1).runUntilIdle(chip), []);
  });

  test('crosvm (userspace): the one APIC window reads each vCPU its own ID register', () => {
    const machine = makeMachine({ vcpuCount: 3 });
    assert.deepEqual(
      [0, 1, 2].map((id) => readLocalApic(machine, id, LocalApicOffset.Id) >>> 24),
      [0, 1, 2],
    );
  });

  test('crosvm (userspace): a halted vCPU wakes on an interrupt (crosvm sleeps; here the async wait resolves on the doorbell)', async () => {
    const machine = makeMachine();
    const { chip } = machine;
    const cpu1 = vcpuOf(machine, 1);
    chip.routeIrq(msiIrqRoute(30, 0xfee01000n, 0xf1));
    cpu1.halt(chip);
    const woken = chip.waitUntilRunnableAsync(cpu1);
    chip.serviceIrq(30, true);
    assert.equal(await woken, 'runnable');
    assert.equal(chip.getMpState(1), 'runnable');
    assert.equal(cpu1.step(chip), 0xf1);
  });

  test('crosvm (userspace): a kicked halted vCPU returns interrupted', async () => {
    const machine = makeMachine();
    const { chip } = machine;
    const cpu1 = vcpuOf(machine, 1);
    cpu1.halt(chip);
    const waiting = chip.waitUntilRunnableAsync(cpu1);
    chip.kickHaltedVcpus();
    assert.equal(await waiting, 'interrupted');
    assert.equal(chip.getMpState(1), 'halted', 'a kick wakes the thread, not the guest');
  });
});
