/**
 * The device layer on KvmKernelIrqChip: irqfd routes, MSI-X through MsixCapability, MSI and legacy
 * groups. KVM consumes the events itself (irqfds), so there is no service loop: what reaches the
 * in-kernel LAPIC's IRR is what KVM injected (kvm-lapic-test-support.ts). Every test counts the
 * injections the device layer caused (`device.injections()`), so a lost or doubled interrupt shows.
 *
 * A check that nothing arrived is made after something that waits for KVM's pending injections:
 * a mask deassigns the irqfd, and KVM's deassign flushes the irqfd's injection work.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqChipError } from '../base/errors.ts';
import type { ChipInterruptGroup } from '../device/chip-interrupt-group.ts';
import { InterruptSourceType } from '../device/interrupt-source.ts';
import { IrqFdRouteFactory, type IrqFdRoute } from '../device/irqfd-route.ts';
import { MsixCapability } from '../device/msix-capability.ts';
import { MsixGuest } from '../device/msix-test-support.ts';
import { msiTo } from '../device/device-test-support.ts';
import { IrqEdgeEvent } from '../event/irq-event.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { fixedMsi, lapicMachine, requestArrives, routeIoapicPinToVector, takeRequests, type LapicMachine } from './kvm-lapic-test-support.ts';
import { IRQ_SOURCE, kvmSkipReason } from './kvm-test-support.ts';
import { OsEvent } from './os-event.ts';

const skip = kvmSkipReason('the device layer on KvmKernelIrqChip');

/** The routes KVM has for `gsi`. */
function routesOf(machine: LapicMachine, gsi: number): unknown[] {
  return machine.chip.routes().filter((route) => route.gsi === gsi);
}

/** A machine with one IrqFdRoute from its interrupt manager, set to a fixed MSI of `vector` to APIC 0. */
function routeMachine(vector: number): LapicMachine & { readonly route: IrqFdRoute } {
  const machine = lapicMachine();
  const route = machine.manager.newIrqFdRoute();
  route.setMsi(...fixedMsi(0, vector));
  return Object.assign(machine, { route });
}

/**
 * Waits for KVM's injection of `vector`, then masks the route (the deassign flushes KVM's pending
 * injections) and checks that `vector` arrived exactly once and nothing else did.
 */
async function arrivesOnceByMask(machine: LapicMachine, route: IrqFdRoute, vector: number): Promise<void> {
  await requestArrives(machine.vcpu, vector);
  route.mask();
  assert.deepEqual(takeRequests(machine.vcpu), [vector]);
}

describe('IrqFdRoute on KvmKernelIrqChip: an irqfd on an MSI route', { skip }, () => {
  test('the route\'s event is an eventfd from the chip; after setMsi a signal reaches the LAPIC with no service call, and KVM consumes the count', async () => {
    using machine = routeMachine(0x60);
    const { route } = machine;
    assert.ok(route.event() instanceof OsEvent, 'made by KvmKernelIrqChip.createIrqEvent');
    assert.deepEqual(routesOf(machine, route.gsi), [msiIrqRoute(route.gsi, ...fixedMsi(0, 0x60))]);
    route.event().signal();
    assert.equal(route.event().readCount(), 0n, 'irqfd_wakeup read it');
    await arrivesOnceByMask(machine, route, 0x60);
    assert.equal(machine.device.injections(), 0, 'the device layer injected nothing itself');
  });

  test('masked: signals wait in the eventfd; consumePending reads them once; unmask injects nothing, so the caller\'s own delivery (signalMsi) is the only one', () => {
    using machine = routeMachine(0x61);
    const { route } = machine;
    route.mask();
    route.event().signal();
    route.event().signal();
    assert.deepEqual(takeRequests(machine.vcpu), [], 'deassigned: KVM does not see the eventfd');
    assert.equal(route.event().readCount(), 2n);
    assert.equal(route.consumePending(), true);
    assert.equal(route.consumePending(), false, 'the count is gone');
    route.unmask();
    route.mask(); // waits for any injection the assign scheduled
    assert.deepEqual(takeRequests(machine.vcpu), [], 'an empty eventfd at the assign: KVM injects nothing');
    assert.equal(machine.chip.signalMsi(...fixedMsi(0, 0x61)), 1, 'the caller delivers what consumePending found');
    assert.deepEqual(takeRequests(machine.vcpu), [0x61]);
    assert.equal(machine.device.injections(), 0);
  });

  test('masked and never drained: unmask re-arms, KVM injects the waiting count exactly once, and the count is gone from the event', async () => {
    using machine = routeMachine(0x62);
    const { route } = machine;
    route.mask();
    route.event().signal(3);
    route.unmask();
    assert.equal(machine.device.injections(), 1, 'one assign that found a count; no assert of the device layer\'s own');
    assert.equal(route.event().readCount(), 0n, 'the stale count KVM leaves at an assign was cleared (ChipIrqFd.arm)');
    assert.equal(route.consumePending(), false, 'so it does not read as pending again');
    await arrivesOnceByMask(machine, route, 0x62);
    assert.deepEqual(takeRequests(machine.vcpu), []);
    assert.equal(machine.device.injections(), 1);
  });

  test('setMsi while masked reprograms the route but does not unmask; unmask delivers at the new message only', async () => {
    using machine = routeMachine(0x63);
    const { route } = machine;
    route.mask();
    route.setMsi(...fixedMsi(0, 0x64));
    assert.deepEqual(routesOf(machine, route.gsi), [msiIrqRoute(route.gsi, ...fixedMsi(0, 0x64))]);
    route.event().signal();
    assert.deepEqual(takeRequests(machine.vcpu), [], 'still masked');
    route.unmask();
    await arrivesOnceByMask(machine, route, 0x64);
    assert.equal(machine.device.injections(), 1);
  });

  test('clearMsi removes the route and disarms; signals wait; the next setMsi injects them once at the new message', async () => {
    using machine = routeMachine(0x65);
    const { route } = machine;
    route.clearMsi();
    assert.deepEqual(routesOf(machine, route.gsi), []);
    route.event().signal();
    assert.deepEqual(takeRequests(machine.vcpu), []);
    route.setMsi(...fixedMsi(0, 0x66));
    await arrivesOnceByMask(machine, route, 0x66);
    assert.equal(machine.device.injections(), 1);
  });

  test('dispose deassigns the irqfd, removes the route, frees the GSI and closes the eventfd', () => {
    using machine = lapicMachine();
    const factory = new IrqFdRouteFactory({ chip: machine.device, gsis: machine.allocator });
    const route = factory.newIrqFdRoute();
    route.setMsi(...fixedMsi(0, 0x67));
    const event = route.event();
    assert.ok(event instanceof OsEvent);
    using clone = event.tryClone();
    route.dispose();
    assert.deepEqual(routesOf(machine, route.gsi), []);
    assert.equal(event.closed, true);
    clone.signal();
    assert.equal(clone.readCount(), 1n, 'no irqfd consumes the eventfd any more');
    // Had the irqfd stayed assigned, KVM would refuse the same eventfd on another GSI (EBUSY).
    machine.chip.registerEdgeIrqEvent(route.gsi + 1, new IrqEdgeEvent(clone), IRQ_SOURCE);
    assert.equal(factory.newIrqFdRoute().gsi, route.gsi, 'the GSI is handed out again');
  });

  test('a caller\'s bad setMsi is refused with EINVAL and the route KVM has is unchanged', () => {
    using machine = routeMachine(0x68);
    const { route } = machine;
    const before = machine.chip.routes();
    assertIrqChipError(() => {
      route.setMsi(fixedMsi(0, 0x69)[0], 2 ** 32);
    }, 'EINVAL');
    assertIrqChipError(() => {
      route.setMsi(-1n, 0x69);
    }, 'EINVAL');
    assert.deepEqual(machine.chip.routes(), before);
  });
});

describe('MSI-X through MsixCapability on KvmKernelIrqChip', { skip }, () => {
  /** Four vectors, table BAR 0 offset 0, PBA at 0x800, brought up as Linux does, vector v → 0x70 + v. */
  function msixMachine(): LapicMachine & { readonly guest: MsixGuest; readonly group: ChipInterruptGroup } {
    const machine = lapicMachine();
    const group = machine.manager.createGroup(InterruptSourceType.Msi, 0, 4);
    const guest = new MsixGuest(new MsixCapability({ group, table: { bar: 0, offset: 0 }, pba: { bar: 0, offset: 0x800 } }));
    guest.bringUp([0x70, 0x71, 0x72, 0x73].map((vector) => [0, vector] as const));
    return Object.assign(machine, { guest, group });
  }

  test('a live vector\'s notifier is an irqfd: a signal reaches the LAPIC with no service call', async () => {
    using machine = msixMachine();
    const notifier = machine.group.notifier(1);
    assert.ok(notifier instanceof OsEvent);
    notifier.signal();
    await requestArrives(machine.vcpu, 0x71);
    machine.guest.setVectorMask(1, true);
    assert.deepEqual(takeRequests(machine.vcpu), [0x71]);
    assert.equal(machine.guest.readPba(), 0n);
    assert.equal(machine.device.injections(), 0);
  });

  test('a masked vector holds its signals: the PBA bit is set (and stays set), unmask delivers once and clears it', () => {
    using machine = msixMachine();
    const notifier = machine.group.notifier(0);
    machine.guest.setVectorMask(0, true);
    notifier.signal();
    notifier.signal();
    assert.deepEqual(takeRequests(machine.vcpu), []);
    assert.equal(machine.guest.readPba(), 0b1n);
    assert.equal(notifier.readCount(), 0n, 'the PBA read drained the eventfd into the pending bit');
    assert.equal(machine.guest.readPba(), 0b1n, 'the pending bit holds');
    machine.guest.setVectorMask(0, false);
    assert.deepEqual(takeRequests(machine.vcpu), [0x70], 'delivered at the unmask itself (KVM_IRQ_LINE_STATUS on its MSI route)');
    assert.equal(machine.guest.readPba(), 0n);
    assert.equal(machine.device.injections(), 1);
    machine.guest.setVectorMask(0, true);
    assert.deepEqual(takeRequests(machine.vcpu), [], 'nothing else: KVM found an empty eventfd at the re-arm');
  });

  test('masked, PBA never read: unmask drains the eventfd before re-arming and delivers once', () => {
    using machine = msixMachine();
    const notifier = machine.group.notifier(2);
    machine.guest.setVectorMask(2, true);
    notifier.signal(4);
    machine.guest.setVectorMask(2, false);
    machine.guest.setVectorMask(2, true);
    assert.deepEqual(takeRequests(machine.vcpu), [0x72]);
    assert.equal(machine.device.injections(), 1);
  });

  test('the function mask holds every vector; clearing it delivers each held vector once, and the PBA bits match', () => {
    using machine = msixMachine();
    const notifiers = [0, 1, 2, 3].map((vector) => machine.group.notifier(vector));
    machine.guest.setControl(true, true);
    notifiers[1]?.signal();
    notifiers[3]?.signal(2);
    assert.deepEqual(takeRequests(machine.vcpu), []);
    assert.equal(machine.guest.readPba(), 0b1010n);
    machine.guest.setControl(true, false);
    assert.deepEqual(takeRequests(machine.vcpu), [0x71, 0x73]);
    assert.equal(machine.guest.readPba(), 0n);
    assert.equal(machine.device.injections(), 2);
  });

  test('reprogramming a masked vector takes effect at unmask: KVM\'s route changes and the held interrupt goes to the new vector', () => {
    using machine = msixMachine();
    const notifier = machine.group.notifier(3);
    machine.guest.setVectorMask(3, true);
    machine.guest.program(3, 0, 0x7e);
    notifier.signal();
    machine.guest.setVectorMask(3, false);
    assert.deepEqual(takeRequests(machine.vcpu), [0x7e]);
    const gsi = machine.group.gsiOf(3);
    assert.ok(gsi !== undefined);
    assert.deepEqual(routesOf(machine, gsi), [msiIrqRoute(gsi, ...fixedMsi(0, 0x7e))]);
    assert.equal(machine.device.injections(), 1);
  });
});

describe('InterruptManager groups on KvmKernelIrqChip', { skip }, () => {
  test('MSI group: trigger on a live source goes through KVM_IRQ_LINE_STATUS on its MSI route; a masked source holds triggers and delivers one at unmask', () => {
    using machine = lapicMachine();
    const group = machine.manager.createGroup(InterruptSourceType.Msi, 0, 2);
    group.enable([msiTo(0, 0x48), msiTo(0, 0x49)]);
    group.trigger(0);
    assert.deepEqual(takeRequests(machine.vcpu), [0x48]);
    group.mask(1);
    group.trigger(1);
    group.notifier(1).signal();
    group.trigger(1);
    assert.deepEqual(takeRequests(machine.vcpu), []);
    assert.equal(group.getPendingState(1), true);
    group.unmask(1);
    assert.deepEqual(takeRequests(machine.vcpu), [0x49]);
    assert.equal(group.getPendingState(1), false);
    assert.equal(machine.device.injections(), 2);
  });

  test('legacy group on IOAPIC GSI 20: trigger pulses the pin; the notifier irqfd injects through KVM\'s IOAPIC; masked, triggers are held and one is delivered at unmask', async () => {
    using machine = lapicMachine();
    const gsi = 20;
    routeIoapicPinToVector(machine.vm, gsi, 0x58);
    const group = machine.manager.createGroup(InterruptSourceType.Legacy, gsi, 1);
    group.enable([{ kind: 'legacy' }]);
    group.trigger(0);
    assert.deepEqual(takeRequests(machine.vcpu), [0x58], 'KVM_IRQ_LINE_STATUS asserted and deasserted GSI 20');
    assert.equal(machine.device.injections(), 1);
    group.notifier(0).signal();
    // An irqfd on an IOAPIC route injects from a kworker (irqfd_inject), after the signal returns.
    await requestArrives(machine.vcpu, 0x58);
    group.mask(0);
    assert.deepEqual(takeRequests(machine.vcpu), [0x58]);
    group.trigger(0);
    group.notifier(0).signal();
    assert.deepEqual(takeRequests(machine.vcpu), []);
    assert.equal(group.getPendingState(0), true);
    group.unmask(0);
    assert.deepEqual(takeRequests(machine.vcpu), [0x58]);
    assert.equal(machine.device.injections(), 2);
  });

  test('destroying a group closes the notifier eventfds it made', () => {
    using machine = lapicMachine();
    const group = machine.manager.createGroup(InterruptSourceType.Msi, 0, 1);
    const notifier = group.notifier(0);
    assert.ok(notifier instanceof OsEvent);
    machine.manager.destroyGroup(group);
    assert.equal(notifier.closed, true);
  });
});

describe('KvmKernelIrqChip refuses a memory event', { skip }, () => {
  test('EBADF naming the chip\'s createIrqEvent, and nothing is registered; the chip\'s own event kind registers on the same GSI', async () => {
    using machine = lapicMachine();
    const gsi = 30;
    machine.chip.setIrqRoutes([...machine.chip.routes(), msiIrqRoute(gsi, ...fixedMsi(0, 0x6a))]);
    const memoryEvent = new IrqEdgeEvent();
    assert.throws(
      () => {
        machine.chip.registerEdgeIrqEvent(gsi, memoryEvent, IRQ_SOURCE);
      },
      (error: unknown) => error instanceof IrqChipError && error.code === 'EBADF' && error.message.includes('createIrqEvent()'),
    );
    memoryEvent.trigger();
    assert.equal(memoryEvent.getTrigger().readCount(), 1n, 'nothing consumes the refused event');
    assert.deepEqual(takeRequests(machine.vcpu), []);
    using trigger = machine.chip.createIrqEvent();
    machine.chip.registerEdgeIrqEvent(gsi, new IrqEdgeEvent(trigger), IRQ_SOURCE);
    trigger.signal();
    await requestArrives(machine.vcpu, 0x6a);
  });
});
