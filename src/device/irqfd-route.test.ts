import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IOAPIC_PIN_COUNT } from '../x86/ioapic/ioapic.ts';
import { IrqFdRouteFactory } from './irqfd-route.ts';
import { makeDeviceMachine, msiTo, runGuests, serviceSignalledEvents, takenVectors, type DeviceMachine } from './device-test-support.ts';

/** The x86 MSI to `cpu` with `vector`, as seed 003 takes it: a u64 address and a u32 data. */
function message(cpu: number, vector: number): [address: bigint, data: number] {
  const config = msiTo(cpu, vector);
  return [(BigInt(config.addressHigh) << 32n) | BigInt(config.addressLow), config.data];
}

/** Signals the route's event and runs the VMM's service loop and the guests. */
function signalAndRun(machine: DeviceMachine, event: { signal(): void }): number[] {
  event.signal();
  serviceSignalledEvents(machine.chip);
  return takenVectors(machine);
}

describe('IrqFdRoute: an event bound to a GSI', () => {
  test('after setMsi a signal on the event injects the MSI through the chip\'s service loop', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(...message(1, 0x52));
    assert.deepEqual(signalAndRun(machine, route.event()), [0x52]);
    assert.ok(route.gsi >= IOAPIC_PIN_COUNT);
    assert.deepEqual(
      machine.chip.routes().filter((entry) => entry.gsi === route.gsi),
      [{ gsi: route.gsi, source: { kind: 'msi', address: message(1, 0x52)[0], data: 0x52 } }],
    );
  });

  test('signals before any setMsi wait in the event; setMsi arms it and, as KVM\'s assign does, injects them once', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.event().signal();
    route.event().signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0);
    route.setMsi(...message(0, 0x53));
    assert.deepEqual(takenVectors(machine), [0x53]);
    assert.equal(serviceSignalledEvents(machine.chip), 0);
  });

  test('masked: signals accumulate; consumePending drains them once; the caller delivers; unmask replays nothing', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(...message(0, 0x54));
    route.mask();
    route.event().signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0, 'disarmed: the chip does not consume it');
    assert.equal(route.consumePending(), true);
    assert.equal(route.consumePending(), false, 'the second call finds nothing until a new signal');
    route.unmask();
    assert.deepEqual(takenVectors(machine), [], 'the drained signal is the caller\'s to deliver (from its PBA)');
    assert.deepEqual(signalAndRun(machine, route.event()), [0x54], 'unmasked, the route injects again');
  });

  test('masked and never drained: unmask re-arms and the signal left in the event is injected once', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(...message(1, 0x55));
    route.mask();
    route.event().signal();
    route.unmask();
    assert.deepEqual(takenVectors(machine), [0x55]);
    assert.equal(serviceSignalledEvents(machine.chip), 0);
  });

  test('mask and unmask leave the route in force (no routing push)', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(...message(1, 0x56));
    const pushes = machine.manager.counters().routePushes;
    route.mask();
    route.unmask();
    assert.equal(machine.manager.counters().routePushes, pushes);
  });

  test('setMsi while masked changes the route but does not unmask', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.mask();
    route.setMsi(...message(0, 0x57));
    route.event().signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0);
    route.unmask();
    assert.deepEqual(takenVectors(machine), [0x57]);
  });

  test('clearMsi removes the route and disarms; signals wait until the next setMsi, which injects them once at the new message', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(...message(0, 0x58));
    route.clearMsi();
    assert.deepEqual(machine.chip.routes().filter((entry) => entry.gsi === route.gsi), []);
    route.event().signal();
    assert.equal(serviceSignalledEvents(machine.chip), 0);
    route.setMsi(...message(1, 0x59));
    assert.deepEqual(runGuests(machine), [[], [0x59]]);
    route.clearMsi();
    route.clearMsi(); // nothing to clear: no-op
  });

  test('dispose disarms, removes the route and frees the GSI; a second dispose does nothing', () => {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(...message(0, 0x5a));
    const gsi = route.gsi;
    assert.equal(machine.manager.counters().gsisInUse, 1);
    route.dispose();
    route.dispose();
    assert.equal(machine.manager.counters().gsisInUse, 0);
    assert.deepEqual(machine.chip.routes().filter((entry) => entry.gsi === gsi), []);
    assert.equal(machine.chip.irqEventTokens().length, 0);
    assert.equal(machine.manager.newIrqFdRoute().gsi, gsi, 'the freed GSI is handed out again');
  });

  test('a `using` declaration frees the route at the end of its scope', () => {
    const machine = makeDeviceMachine();
    {
      using route = machine.manager.newIrqFdRoute();
      route.setMsi(...message(0, 0x5b));
      assert.equal(machine.manager.counters().gsisInUse, 1);
    }
    assert.equal(machine.manager.counters().gsisInUse, 0);
  });

  test('a factory on the VM\'s allocator hands out distinct GSIs, each route injecting its own MSI', () => {
    const machine = makeDeviceMachine();
    const factory = new IrqFdRouteFactory({ chip: machine.chip, gsis: machine.allocator });
    const first = factory.newIrqFdRoute();
    const second = factory.newIrqFdRoute();
    assert.notEqual(first.gsi, second.gsi);
    first.setMsi(...message(0, 0x5c));
    second.setMsi(...message(1, 0x5d));
    first.event().signal();
    assert.deepEqual(signalAndRun(machine, second.event()), [0x5c, 0x5d]);
    assert.equal(machine.allocator.allocatedCount, 2);
  });
});
