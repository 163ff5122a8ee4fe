/**
 * Caller mistakes through the device API: each throws IrqChipError with its code and changes
 * nothing (docs/architecture.md, decision 11). "Nothing" is observed as everything a caller or the
 * guest could see: the chip's routes and registered events, the device's GSIs and routing pushes,
 * the group's state, pending bits and GSIs, and what reaches the vCPUs.
 */
import { describe, test } from 'node:test';
import type { ChipInterruptGroup } from './chip-interrupt-group.ts';
import type { InterruptSourceConfig, InterruptSourceType } from './interrupt-source.ts';
import { InterruptManager } from './interrupt-manager.ts';
import { InterruptTrigger, type InterruptTriggerDescriptor } from './interrupt-trigger.ts';
import type { IrqFdRoute } from './irqfd-route.ts';
import { assertRefused, makeDeviceMachine, msiTo, takenVectors, type DeviceMachine } from './device-test-support.ts';

const COUNT = 4;
const BAD_INDEXES: readonly number[] = [-1, COUNT, 1.5, Number.NaN, Number.POSITIVE_INFINITY];

function configs(count = COUNT): InterruptSourceConfig[] {
  return Array.from({ length: count }, (_, index) => msiTo(index % 2, 0x40 + index));
}

/** Everything observable about a group and its machine. */
function observe(machine: DeviceMachine, group: ChipInterruptGroup): unknown {
  const indexes = Array.from({ length: group.len() }, (_, index) => index);
  return {
    routes: machine.chip.routes(),
    events: machine.chip.irqEventTokens().map((token) => token.index),
    counters: machine.manager.counters(),
    enabled: group.enabled,
    destroyed: group.destroyed,
    gsis: indexes.map((index) => group.gsiOf(index)),
    pending: group.destroyed ? [] : indexes.map((index) => group.getPendingState(index)),
    delivered: takenVectors(machine),
  };
}

/** A machine with an MSI group: source 1 masked with an interrupt pending, source 2's notifier taken. */
function msiSetup(enabled: boolean) {
  const machine = makeDeviceMachine();
  const group = machine.manager.createGroup('msi', 0, COUNT);
  group.mask(1);
  group.notifier(2);
  if (enabled) group.enable(configs());
  group.trigger(1);
  return { machine, group, state: () => observe(machine, group) };
}

/** Every method that takes an index, called with `index`. */
function indexedCalls(group: ChipInterruptGroup, index: number): [string, () => unknown][] {
  return [
    ['trigger', () => { group.trigger(index); }],
    ['mask', () => { group.mask(index); }],
    ['unmask', () => { group.unmask(index); }],
    ['update', () => { group.update(index, msiTo(0, 0x99)); }],
    ['notifier', () => group.notifier(index)],
    ['getPendingState', () => group.getPendingState(index)],
    ['gsiOf', () => group.gsiOf(index)],
  ];
}

describe('misuse of an interrupt source group', () => {
  test('an index out of range: EINVAL from every indexed method, nothing changed', () => {
    for (const enabled of [false, true]) {
      const { group, state } = msiSetup(enabled);
      for (const index of BAD_INDEXES) {
        for (const [name, call] of indexedCalls(group, index)) assertRefused(call, 'EINVAL', state, `${name}(${index}) on an ${enabled ? 'enabled' : 'disabled'} group`);
      }
    }
  });

  test('a legacy group has index 0 only: index 1 is EINVAL (Dragonball accepted it)', () => {
    const machine = makeDeviceMachine();
    const group = machine.manager.createGroup('legacy', 4, 1);
    group.enable([{ kind: 'legacy' }]);
    const state = () => observe(machine, group);
    for (const [name, call] of indexedCalls(group, 1)) assertRefused(call, 'EINVAL', state, `legacy ${name}(1)`);
  });

  test('enable with the wrong number of configs, or none: EINVAL, nothing changed', () => {
    const { group, state } = msiSetup(false);
    const wrong: [string, unknown][] = [['3 configs', configs(COUNT - 1)], ['5 configs', configs(COUNT + 1)], ['none', []], ['no array', undefined]];
    for (const [what, given] of wrong) {
      assertRefused(() => { group.enable(given as InterruptSourceConfig[]); }, 'EINVAL', state, `enable with ${what}`);
    }
  });

  test('enable or update with a config of the wrong kind or a malformed message: EINVAL, nothing changed', () => {
    const { group, state } = msiSetup(false);
    const malformed: unknown[] = [
      { kind: 'legacy' },
      { kind: 'msi', addressLow: -1, addressHigh: 0, data: 0x40 },
      { kind: 'msi', addressLow: 0xfee00000, addressHigh: 2 ** 32, data: 0x40 },
      { kind: 'msi', addressLow: 0xfee00000, addressHigh: 0, data: 1.5 },
      { kind: 'msi', addressLow: 0xfee00000, addressHigh: 0 },
      undefined,
    ];
    for (const config of malformed) {
      const list = configs();
      list[3] = config as InterruptSourceConfig;
      assertRefused(() => { group.enable(list); }, 'EINVAL', state, `enable with ${JSON.stringify(config)}`);
    }
    const enabled = msiSetup(true);
    for (const config of malformed) {
      assertRefused(() => { enabled.group.update(0, config as InterruptSourceConfig); }, 'EINVAL', enabled.state, `update with ${JSON.stringify(config)}`);
    }
    const machine = makeDeviceMachine();
    const legacy = machine.manager.createGroup('legacy', 3, 1);
    assertRefused(() => { legacy.enable([msiTo(0, 0x40)]); }, 'EINVAL', () => observe(machine, legacy), 'legacy enable with an MSI config');
  });

  test('update before enable: EINVAL, nothing changed', () => {
    const { group, state } = msiSetup(false);
    assertRefused(() => { group.update(0, msiTo(0, 0x50)); }, 'EINVAL', state, 'update before enable');
  });

  test('enable of an enabled group: EBUSY, nothing changed', () => {
    const { group, state } = msiSetup(true);
    assertRefused(() => { group.enable(configs()); }, 'EBUSY', state, 'second enable');
  });

  test('use after destroy: EBADF from every method but the three facts, and from a trigger view; destroying again: ENOENT', () => {
    const { machine, group, state } = msiSetup(false);
    const view = InterruptTrigger.fromDescriptor(group.triggerDescriptor(), machine.chip);
    machine.manager.destroyGroup(group);
    const calls: [string, () => unknown][] = [
      ['enable', () => { group.enable(configs()); }],
      ['disable', () => { group.disable(); }],
      ...indexedCalls(group, 0).filter(([name]) => name !== 'gsiOf'),
      ['trigger view', () => { view.trigger(0); }],
    ];
    for (const [name, call] of calls) assertRefused(call, 'EBADF', state, `${name} after destroy`);
    assertRefused(() => { machine.manager.destroyGroup(group); }, 'ENOENT', state, 'destroyGroup again');
    if (group.len() !== COUNT || group.base() !== 0 || group.interruptType() !== 'msi') throw new Error('the facts stay readable');
  });

  test('destroying an enabled group: EBUSY; a group of another manager: ENOENT', () => {
    const { machine, group, state } = msiSetup(true);
    assertRefused(() => { machine.manager.destroyGroup(group); }, 'EBUSY', state, 'destroy while enabled');
    const other = new InterruptManager({ chip: machine.chip, gsis: machine.allocator });
    assertRefused(() => { other.destroyGroup(group); }, 'ENOENT', state, 'destroy through another manager');
  });

  test('device budget spent: unmask is ENOSPC and changes nothing; enable is all or nothing', () => {
    const machine = makeDeviceMachine({ gsiBudget: 2 });
    const group = machine.manager.createGroup('msi', 0, COUNT);
    const state = () => observe(machine, group);
    for (const index of [2, 3]) group.mask(index);
    group.enable(configs());
    group.trigger(3);
    assertRefused(() => { group.unmask(3); }, 'ENOSPC', state, 'unmask past the device budget');
    const fresh = makeDeviceMachine({ gsiBudget: 2 });
    const all = fresh.manager.createGroup('msi', 0, COUNT);
    assertRefused(() => { all.enable(configs()); }, 'ENOSPC', () => observe(fresh, all), 'enable of four unmasked sources with two GSIs');
  });

  test('VM budget spent (the allocator\'s): ENOSPC for an unmask and for a new irqfd route', () => {
    const machine = makeDeviceMachine({ vmGsiBudget: 1 });
    const group = machine.manager.createGroup('msi', 0, 2);
    group.mask(1);
    group.enable(configs(2));
    assertRefused(() => { group.unmask(1); }, 'ENOSPC', () => observe(machine, group), 'unmask past the VM budget');
    assertRefused(() => machine.manager.newIrqFdRoute(), 'ENOSPC', () => observe(machine, group), 'irqfd route past the VM budget');
  });
});

describe('misuse of the interrupt manager', () => {
  test('createGroup with a bad type, size or base: EINVAL; overlapping a group of the same type: EEXIST', () => {
    const machine = makeDeviceMachine();
    machine.manager.createGroup('msi', 0, 8);
    machine.manager.createGroup('legacy', 10, 1);
    const state = () => ({ routes: machine.chip.routes(), counters: machine.manager.counters() });
    const bad: [InterruptSourceType, number, number, string][] = [
      ['msix' as InterruptSourceType, 0, 1, 'EINVAL'],
      ['msi', 100, 0, 'EINVAL'],
      ['msi', 100, 2049, 'EINVAL'],
      ['msi', 100, 1.5, 'EINVAL'],
      ['msi', -1, 1, 'EINVAL'],
      ['legacy', 24, 1, 'EINVAL'],
      ['legacy', 3, 2, 'EINVAL'],
      ['msi', 7, 2, 'EEXIST'],
      ['legacy', 10, 1, 'EEXIST'],
    ];
    for (const [type, base, count, code] of bad) {
      assertRefused(() => machine.manager.createGroup(type, base, count), code, state, `createGroup(${type}, ${base}, ${count})`);
    }
    machine.manager.createGroup('msi', 8, 8); // adjacent, not overlapping
    machine.manager.createGroup('legacy', 0, 1); // another type at an MSI group's base
  });

  test('a trigger view from a descriptor that is not one: EINVAL', () => {
    const { chip } = makeDeviceMachine();
    const bad = [{ kind: 'memory', state: new SharedArrayBuffer(8) }, { kind: 'interrupt-trigger', state: new ArrayBuffer(8) }];
    for (const descriptor of bad) {
      assertRefused(() => InterruptTrigger.fromDescriptor(descriptor as unknown as InterruptTriggerDescriptor, chip), 'EINVAL', () => chip.routes(), descriptor.kind);
    }
  });
});

describe('misuse of an irqfd route', () => {
  function routeSetup() {
    const machine = makeDeviceMachine();
    const route = machine.manager.newIrqFdRoute();
    route.setMsi(0xfee01000n, 0x45);
    route.event().signal();
    route.mask();
    const event = route.event();
    const state = () => ({
      routes: machine.chip.routes(),
      events: machine.chip.irqEventTokens().length,
      counters: machine.manager.counters(),
      count: event.readCount(),
      delivered: takenVectors(machine),
    });
    return { machine, route, state };
  }

  test('setMsi with an address that is not a u64 bigint, or data that is not a u32: EINVAL, nothing changed', () => {
    const { route, state } = routeSetup();
    const bad: [unknown, unknown][] = [
      [0xfee00000, 0x40],
      [-1n, 0x40],
      [1n << 64n, 0x40],
      [0xfee00000n, -1],
      [0xfee00000n, 2 ** 32],
      [0xfee00000n, 0.5],
      [0xfee00000n, 0x40n],
    ];
    for (const [address, data] of bad) {
      assertRefused(() => { route.setMsi(address as bigint, data as number); }, 'EINVAL', state, `setMsi(${String(address)}, ${String(data)})`);
    }
  });

  test('use after dispose: EBADF from every method, nothing changed', () => {
    const { route, state } = routeSetup();
    route.dispose();
    const calls: [string, (subject: IrqFdRoute) => unknown][] = [
      ['event', (subject) => subject.event()],
      ['setMsi', (subject) => { subject.setMsi(0xfee00000n, 0x41); }],
      ['clearMsi', (subject) => { subject.clearMsi(); }],
      ['mask', (subject) => { subject.mask(); }],
      ['unmask', (subject) => { subject.unmask(); }],
      ['consumePending', (subject) => subject.consumePending()],
    ];
    for (const [name, call] of calls) assertRefused(() => call(route), 'EBADF', state, `${name} after dispose`);
  });
});
