/**
 * What a caller does wrong through the chip's API: each mistake throws `IrqChipError` with its
 * code, and changes nothing (the whole chip's snapshot, the routes and the registered events are
 * as before).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { IrqSourceChip, msiIrqRoute, type IrqRoute } from '../routing/irq-route.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { ScriptedVcpu, TEST_SOURCE, makeMachine, registerEdge, registerLevel, type TestMachine } from './chip-test-support.ts';
import type { MPState } from './types.ts';
import { UserspaceIrqChip, type UserspaceIrqChipDescriptor } from './userspace-irq-chip.ts';

/**
 * Runs `misuse` on a machine with an edge and a level event registered (and whatever `prepare`
 * adds); expects `code` and no change.
 */
function assertMisuse(code: string, misuse: (machine: TestMachine) => unknown, prepare: (machine: TestMachine) => void = () => undefined): void {
  const machine = makeMachine();
  registerEdge(machine, 4);
  registerLevel(machine, 10);
  prepare(machine);
  const { chip } = machine;
  const before = { state: chip.snapshot(), tokens: chip.irqEventTokens().map((token) => token.index) };
  assert.throws(() => misuse(machine), rejectsWith(code));
  assert.deepEqual({ state: chip.snapshot(), tokens: chip.irqEventTokens().map((token) => token.index) }, before);
}

const badGsis = [-1, 4096, 2.5, Number.NaN];

describe('bad GSIs and indexes: EINVAL', () => {
  for (const gsi of badGsis) {
    test(`GSI ${gsi}: registering an edge or level event, or serviceIrq, is EINVAL`, () => {
      assertMisuse('EINVAL', ({ chip }) => chip.registerEdgeIrqEvent(gsi, new IrqEdgeEvent(), TEST_SOURCE));
      assertMisuse('EINVAL', ({ chip }) => chip.registerLevelIrqEvent(gsi, new IrqLevelEvent(), TEST_SOURCE));
      assertMisuse('EINVAL', ({ chip }) => chip.serviceIrq(gsi, true));
    });
  }

  test('serviceIrq with a level that is not a boolean is EINVAL', () => {
    assertMisuse('EINVAL', ({ chip }) => chip.serviceIrq(4, 1 as unknown as boolean));
  });

  test('serviceIrqEvent with a negative or fractional index is EINVAL; an index never used is a no-op', () => {
    assertMisuse('EINVAL', ({ chip }) => {
      chip.serviceIrqEvent(-1);
    });
    assertMisuse('EINVAL', ({ chip }) => {
      chip.serviceIrqEvent(0.5);
    });
    const { chip } = makeMachine();
    const before = chip.snapshot();
    chip.serviceIrqEvent(99);
    assert.deepEqual(chip.snapshot(), before);
  });

  const badRoutes: readonly [string, IrqRoute][] = [
    ['an IOAPIC pin past 23', { gsi: 5, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 24 } }],
    ['a PIC pin past 7', { gsi: 5, source: { kind: 'irqchip', chip: IrqSourceChip.PicPrimary, pin: 8 } }],
    ['GSI 4096', { gsi: 4096, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 1 } }],
    ['an MSI address wider than 64 bits', msiIrqRoute(40, 1n << 64n, 0x40)],
  ];
  for (const [what, route] of badRoutes) {
    test(`routeIrq and setIrqRoutes with ${what} are EINVAL`, () => {
      assertMisuse('EINVAL', ({ chip }) => {
        chip.routeIrq(route);
      });
      assertMisuse('EINVAL', ({ chip }) => {
        chip.setIrqRoutes([msiIrqRoute(50, 0xfee00000n, 0x50), route]);
      });
    });
  }

  test('routeIrq of an MSI on a GSI with pin routes (or a pin on an MSI GSI) is EINVAL', () => {
    assertMisuse('EINVAL', ({ chip }) => {
      chip.routeIrq(msiIrqRoute(5, 0xfee00000n, 0x40));
    });
    assertMisuse(
      'EINVAL',
      ({ chip }) => {
        chip.routeIrq({ gsi: 40, source: { kind: 'irqchip', chip: IrqSourceChip.Ioapic, pin: 3 } });
      },
      ({ chip }) => {
        chip.routeIrq(msiIrqRoute(40, 0xfee00000n, 0x40));
      },
    );
  });

  test('broadcastEoi of a vector past 255 is EINVAL', () => {
    assertMisuse('EINVAL', ({ chip }) => {
      chip.broadcastEoi(256);
    });
  });
});

describe('unknown vCPUs: ENOENT; a mismatched one: EINVAL', () => {
  const unknownVcpuCalls: readonly [string, (chip: UserspaceIrqChip) => unknown][] = [
    ['getMpState', (chip) => chip.getMpState(2)],
    ['setMpState', (chip) => {
      chip.setMpState(7, 'runnable');
    }],
    ['halted', (chip) => {
      chip.halted(-1);
    }],
    ['injectInterrupts', (chip) => {
      chip.injectInterrupts(new ScriptedVcpu(2));
    }],
    ['addVcpu', (chip) => {
      chip.addVcpu(2, new ScriptedVcpu(2));
    }],
    ['localApic', (chip) => chip.localApic(1.5)],
  ];
  for (const [name, call] of unknownVcpuCalls) {
    test(`${name} of a vCPU the chip does not have is ENOENT`, () => {
      assertMisuse('ENOENT', ({ chip }) => call(chip));
    });
  }

  test('waitUntilRunnableAsync of an unknown vCPU rejects with ENOENT', async () => {
    const { chip } = makeMachine();
    await assert.rejects(chip.waitUntilRunnableAsync(new ScriptedVcpu(3)), rejectsWith('ENOENT'));
  });

  test('addVcpu of a vCPU whose id is not the slot is EINVAL', () => {
    assertMisuse('EINVAL', ({ chip }) => {
      chip.addVcpu(1, new ScriptedVcpu(0));
    });
  });

  test("setMpState 'stopped' (s390 only) or an unknown state is EINVAL", () => {
    assertMisuse('EINVAL', ({ chip }) => {
      chip.setMpState(1, 'stopped');
    });
    assertMisuse('EINVAL', ({ chip }) => {
      chip.setMpState(1, 'running' as MPState);
    });
  });
});

describe('registration rules', () => {
  test('registering or unregistering on a view is ENOTTY: only the owner registers', () => {
    assertMisuse('ENOTTY', ({ chip, clock }) => UserspaceIrqChip.fromDescriptor(chip.createView(), { clock }).registerEdgeIrqEvent(4, new IrqEdgeEvent(), TEST_SOURCE));
    assertMisuse('ENOTTY', ({ chip, clock }) => UserspaceIrqChip.fromDescriptor(chip.createView(), { clock }).registerLevelIrqEvent(4, new IrqLevelEvent(), TEST_SOURCE));
    assertMisuse('ENOTTY', ({ chip, clock }) => {
      const view = UserspaceIrqChip.fromDescriptor(chip.createView(), { clock });
      view.unregisterLevelIrqEvent(10, new IrqLevelEvent());
    });
  });

  test('a view cannot make views (ENOTTY)', () => {
    assertMisuse('ENOTTY', ({ chip, clock }) => UserspaceIrqChip.fromDescriptor(chip.createView(), { clock }).createView());
  });

  test('registering a trigger that is already registered, on any GSI, is EBUSY (KVM: one eventfd, one irqfd)', () => {
    const edge = new IrqEdgeEvent();
    const prepare = ({ chip }: TestMachine): void => {
      // Unregistered, it may be registered again.
      chip.registerEdgeIrqEvent(4, edge, TEST_SOURCE);
      chip.unregisterEdgeIrqEvent(4, edge);
      chip.registerEdgeIrqEvent(5, edge, TEST_SOURCE);
    };
    assertMisuse('EBUSY', ({ chip }) => chip.registerEdgeIrqEvent(5, edge, TEST_SOURCE), prepare);
    assertMisuse('EBUSY', ({ chip }) => chip.registerEdgeIrqEvent(6, edge.tryClone(), TEST_SOURCE), prepare);
    assertMisuse(
      'EBUSY',
      ({ chip }) => chip.registerLevelIrqEvent(6, IrqLevelEvent.fromEventPair(edge.getTrigger(), new IrqLevelEvent().getResample()), TEST_SOURCE),
      prepare,
    );
  });

  test('a descriptor that is not a chip descriptor is EINVAL', () => {
    assert.throws(() => UserspaceIrqChip.fromDescriptor({ kind: 'pic-pair' } as unknown as UserspaceIrqChipDescriptor), rejectsWith('EINVAL'));
  });

  test('waitUntilRunnable would block the main thread: EAGAIN', () => {
    assertMisuse('EAGAIN', ({ chip }) => chip.waitUntilRunnable(new ScriptedVcpu(0)));
  });
});
