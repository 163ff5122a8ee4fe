import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import { programIoapicPin } from '../chip/chip-test-support.ts';
import { InterruptTrigger } from './interrupt-trigger.ts';
import { makeDeviceMachine, msiTo, serviceSignalledEvents, takenVectors, runGuests } from './device-test-support.ts';

const VECTOR = 0x41;

/** An enabled MSI group of `count` sources, source i → vCPU i % 2, vector VECTOR + i. */
function enabledMsiGroup(count = 4) {
  const machine = makeDeviceMachine();
  const group = machine.manager.createGroup('msi', 0, count);
  group.enable(Array.from({ length: count }, (_, index) => msiTo(index % 2, VECTOR + index)));
  return { machine, group };
}

describe('MSI group: delivery, masking, pending', () => {
  test('a trigger on a live source is delivered at once through its GSI to the programmed vCPU and vector', () => {
    const { machine, group } = enabledMsiGroup();
    group.trigger(1);
    assert.deepEqual(runGuests(machine), [[], [VECTOR + 1]]);
    assert.ok((group.gsiOf(1) ?? 0) >= IOAPIC_PIN_COUNT, 'an MSI GSI lies past the IOAPIC pins');
    assert.equal(group.getPendingState(1), false);
  });

  test('triggers on a masked source are held pending, coalesce, and are delivered exactly once at unmask', () => {
    const { machine, group } = enabledMsiGroup();
    group.mask(2);
    group.trigger(2);
    group.trigger(2);
    assert.deepEqual(takenVectors(machine), [], 'nothing reaches the guest while masked');
    assert.equal(group.getPendingState(2), true);
    group.unmask(2);
    assert.deepEqual(takenVectors(machine), [VECTOR + 2], 'one delivery for the pending bit');
    assert.equal(group.getPendingState(2), false);
    group.mask(2);
    group.unmask(2);
    assert.deepEqual(takenVectors(machine), [], 'a second unmask delivers nothing more');
  });

  test('notifier signals while masked are pending though the VMM never saw them; unmask delivers them once', () => {
    const { machine, group } = enabledMsiGroup();
    const notifier = group.notifier(3);
    group.mask(3);
    notifier.signal();
    notifier.signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0, 'a masked source is disarmed: the service loop sees nothing');
    assert.equal(group.getPendingState(3), true, 'the signals count as pending');
    assert.equal(group.getPendingState(3), true, 'and stay pending when asked again');
    group.unmask(3);
    assert.deepEqual(takenVectors(machine), [VECTOR + 3]);
    assert.equal(serviceSignalledEvents(machine.chip), 0, 'the drained event holds nothing to replay');
    assert.deepEqual(takenVectors(machine), []);
  });

  test('notifier signals on a live source are injected by the chip\'s service loop, coalesced like an eventfd', () => {
    const { machine, group } = enabledMsiGroup();
    const notifier = group.notifier(0);
    notifier.signal();
    notifier.signal();
    assert.equal(serviceSignalledEvents(machine.chip), 1);
    assert.deepEqual(takenVectors(machine), [VECTOR]);
  });

  test('a signal left in a notifier when its source is masked becomes pending and is delivered once at unmask', () => {
    const { machine, group } = enabledMsiGroup();
    const notifier = group.notifier(0);
    notifier.signal();
    group.mask(0); // before the service loop got to it
    assert.equal(serviceSignalledEvents(machine.chip), 0);
    group.unmask(0);
    assert.deepEqual(takenVectors(machine), [VECTOR]);
    assert.equal(serviceSignalledEvents(machine.chip), 0);
  });

  test('a trigger and a notifier signal while masked are one pending interrupt: one delivery at unmask, none replayed', () => {
    const { machine, group } = enabledMsiGroup();
    const notifier = group.notifier(0);
    group.mask(0);
    group.trigger(0);
    notifier.signal();
    const sent = machine.chip.counters().msisSent;
    group.unmask(0);
    assert.equal(serviceSignalledEvents(machine.chip), 0, 'the event was drained before it was re-armed');
    assert.equal(machine.chip.counters().msisSent, sent + 1);
    assert.deepEqual(takenVectors(machine), [VECTOR]);
  });

  test('mask and unmask touch no route and keep the GSI', () => {
    const { machine, group } = enabledMsiGroup();
    const gsi = group.gsiOf(0);
    const pushes = machine.manager.counters().routePushes;
    for (let round = 0; round < 5; round++) {
      group.mask(0);
      group.unmask(0);
    }
    assert.equal(machine.manager.counters().routePushes, pushes);
    assert.equal(group.gsiOf(0), gsi);
  });

  test('lazy: sources masked at enable take no GSI and no route; the first unmask takes one of each', () => {
    const machine = makeDeviceMachine();
    const group = machine.manager.createGroup('msi', 0, 64);
    for (let index = 0; index < 64; index++) group.mask(index);
    const routesBefore = machine.chip.routes().length;
    group.enable(Array.from({ length: 64 }, (_, index) => msiTo(0, 0x40 + index)));
    assert.equal(machine.manager.counters().gsisInUse, 0);
    assert.equal(machine.chip.routes().length, routesBefore);
    group.unmask(5);
    assert.equal(machine.manager.counters().gsisInUse, 1);
    assert.equal(machine.chip.routes().length, routesBefore + 1);
    assert.equal(group.gsiOf(4), undefined);
  });

  test('enable routes every unmasked source in one push', () => {
    const machine = makeDeviceMachine();
    const group = machine.manager.createGroup('msi', 0, 16);
    const pushes = machine.manager.counters().routePushes;
    group.enable(Array.from({ length: 16 }, (_, index) => msiTo(0, 0x40 + index)));
    assert.equal(machine.manager.counters().routePushes, pushes + 1);
    assert.equal(machine.manager.counters().gsisInUse, 16);
  });

  test('a batch of unmasks pushes the routes once, and only then delivers what was pending', () => {
    const machine = makeDeviceMachine();
    const group = machine.manager.createGroup('msi', 0, 8);
    for (let index = 0; index < 8; index++) group.mask(index);
    group.enable(Array.from({ length: 8 }, (_, index) => msiTo(1, 0x50 + index)));
    for (let index = 0; index < 8; index++) group.trigger(index);
    const pushes = machine.manager.counters().routePushes;
    machine.manager.batchRouteUpdates(() => {
      for (let index = 0; index < 8; index++) group.unmask(index);
      assert.deepEqual(takenVectors(machine), [], 'nothing is delivered before the routes are in force');
    });
    assert.equal(machine.manager.counters().routePushes, pushes + 1);
    assert.deepEqual(takenVectors(machine), [0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57]);
  });

  test('an unmask undone in the same batch (by a mask, or by a disable) leaves the source held: the later state wins', () => {
    const { machine, group } = enabledMsiGroup();
    group.mask(0);
    group.mask(1);
    machine.manager.batchRouteUpdates(() => {
      group.unmask(0);
      group.mask(0);
    });
    group.trigger(0);
    assert.deepEqual(takenVectors(machine), []);
    assert.equal(group.getPendingState(0), true);
    machine.manager.batchRouteUpdates(() => {
      group.unmask(1);
      group.disable();
    });
    group.trigger(1);
    assert.deepEqual(takenVectors(machine), []);
    assert.equal(group.getPendingState(1), true);
  });

  test('update re-routes a live source; on a masked source the route follows at unmask (mask, write, unmask: one push)', () => {
    const { machine, group } = enabledMsiGroup();
    group.update(0, msiTo(1, 0x70));
    group.trigger(0);
    assert.deepEqual(runGuests(machine), [[], [0x70]]);
    group.mask(1);
    const pushes = machine.manager.counters().routePushes;
    group.update(1, msiTo(0, 0x7f));
    group.update(1, msiTo(0, 0x71));
    assert.equal(machine.manager.counters().routePushes, pushes, 'no routing work while masked');
    group.trigger(1);
    group.unmask(1);
    assert.equal(machine.manager.counters().routePushes, pushes + 1);
    assert.deepEqual(runGuests(machine), [[0x71], []], 'the pending interrupt goes to the new message');
    const same = machine.manager.counters().routePushes;
    group.update(1, msiTo(0, 0x71));
    assert.equal(machine.manager.counters().routePushes, same, 'an unchanged message pushes nothing');
  });

  test('a trigger before enable is pending; enable delivers it once', () => {
    const machine = makeDeviceMachine();
    const group = machine.manager.createGroup('msi', 0, 2);
    group.trigger(1);
    assert.equal(group.getPendingState(1), true);
    group.enable([msiTo(0, 0x60), msiTo(0, 0x61)]);
    assert.deepEqual(takenVectors(machine), [0x61]);
    assert.equal(group.getPendingState(1), false);
  });

  test('disable frees GSIs and routes and keeps pending interrupts; re-enable delivers them', () => {
    const { machine, group } = enabledMsiGroup(2);
    const routesEnabled = machine.chip.routes().length;
    group.disable();
    assert.equal(machine.manager.counters().gsisInUse, 0);
    assert.equal(machine.chip.routes().length, routesEnabled - 2);
    assert.equal(group.gsiOf(0), undefined);
    group.trigger(0);
    group.notifier(1).signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0);
    assert.deepEqual(takenVectors(machine), []);
    assert.equal(group.getPendingState(0), true);
    assert.equal(group.getPendingState(1), true);
    group.enable([msiTo(0, 0x62), msiTo(0, 0x63)]);
    assert.deepEqual(takenVectors(machine), [0x62, 0x63]);
    group.disable();
    group.disable(); // a disabled group: no-op
  });

  test('a notifier taken while the source is live is armed at once', () => {
    const { machine, group } = enabledMsiGroup();
    group.notifier(2).signal();
    assert.equal(serviceSignalledEvents(machine.chip), 1);
    assert.deepEqual(takenVectors(machine), [VECTOR + 2]);
  });

  test('a trigger view built from the descriptor raises the same sources, under the same masking', () => {
    const { machine, group } = enabledMsiGroup();
    const view = InterruptTrigger.fromDescriptor(structuredClone(group.triggerDescriptor()), machine.chip);
    assert.equal(view.length, 4);
    view.trigger(0);
    group.mask(1);
    view.trigger(1);
    assert.deepEqual(takenVectors(machine), [VECTOR]);
    assert.equal(group.getPendingState(1), true);
    group.unmask(1);
    assert.deepEqual(takenVectors(machine), [VECTOR + 1]);
  });
});

describe('legacy group: one edge line', () => {
  test('a trigger pulses its GSI: the IOAPIC pin delivers once and the line is low again', () => {
    const machine = makeDeviceMachine();
    programIoapicPin(machine, 5, { vector: 0x35 });
    const group = machine.manager.createGroup('legacy', 5, 1);
    group.enable([{ kind: 'legacy' }]);
    group.trigger(0);
    assert.deepEqual(takenVectors(machine), [0x35]);
    assert.equal(machine.chip.ioapic.lineLevel(5), false);
    assert.equal(group.gsiOf(0), 5);
    assert.equal(machine.manager.counters().gsisInUse, 0, 'a legacy line takes no GSI from the budget');
  });

  test('masked: triggers and notifier signals are pending and delivered once at unmask; update(0) is accepted', () => {
    const machine = makeDeviceMachine();
    programIoapicPin(machine, 7, { vector: 0x37 });
    const group = machine.manager.createGroup('legacy', 7, 1);
    group.enable([{ kind: 'legacy' }]);
    const routes = machine.chip.routes();
    group.update(0, { kind: 'legacy' });
    assert.deepEqual(machine.chip.routes(), routes, 'a legacy source rides the chip\'s pin routes: update changes none');
    const notifier = group.notifier(0);
    group.mask(0);
    group.trigger(0);
    notifier.signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0);
    assert.equal(group.getPendingState(0), true);
    group.unmask(0);
    assert.deepEqual(takenVectors(machine), [0x37]);
    notifier.signal();
    assert.equal(serviceSignalledEvents(machine.chip), 1, 'unmasked, the notifier is armed again');
    assert.deepEqual(takenVectors(machine), [0x37]);
  });
});
