/**
 * MSI and MSI-X through VfioIrqs (seed-apis.md §5.4, §6 items 13–16): enable, re-bind, -1,
 * NORESIZE growth, dynamic MSI-X, partial-failure rollback, loopback vs disable, raises and the
 * pending bit; then ERR/REQ (§5.5) and GET_IRQ_INFO (§5.6).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Event } from '../event/event.ts';
import { drainCounts, rig, TYPICAL_FUNCTION } from './vfio-test-support.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { VfioIrqs } from './vfio-irqs.ts';
import { VfioFdTable } from './vfio-fd-table.ts';
import {
  decodeIrqInfo,
  encodeIrqInfo,
  irqSetBools,
  irqSetEventfds,
  irqSetNone,
  VFIO_IRQ_INFO_AUTOMASKED as AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD as INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE as MASKABLE,
  VFIO_IRQ_INFO_NORESIZE as NORESIZE,
  VFIO_IRQ_SET_ACTION_TRIGGER as TRIGGER,
  VFIO_PCI_ERR_IRQ_INDEX as ERR,
  VFIO_PCI_INTX_IRQ_INDEX as INTX,
  VFIO_PCI_MSI_IRQ_INDEX as MSI,
  VFIO_PCI_MSIX_IRQ_INDEX as MSIX,
  VFIO_PCI_REQ_IRQ_INDEX as REQ,
} from './vfio-uapi.ts';

const TABLE_SIZE = TYPICAL_FUNCTION.msixVectors;
const NONE_FD = -1;
const UNKNOWN_FD = 999;

/** `count` fds of -1, with `bound` placed at their positions. */
function fdArray(count: number, bound: Readonly<Record<number, number>> = {}): number[] {
  return Array.from({ length: count }, (_, vector) => bound[vector] ?? NONE_FD);
}

describe('MSI-X enable and NORESIZE', () => {
  test('enabling allocates exactly start + count host vectors and binds the given fds', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, NONE_FD, fds[1] ?? NONE_FD]));
    const state = irqs.state();
    assert.equal(state.activeIndex, MSIX);
    assert.deepEqual(state.allocatedVectors, [0, 1, 2]);
    assert.deepEqual([...state.vectorTriggers], [[0, events[0]], [2, events[1]]]);
  });

  test('§6.13 crosvm: a throwaway fd on vector 0 with table-size entries, then the same with -1: MSI-X on, all allocated, none bound', () => {
    const { irqs, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fdArray(TABLE_SIZE, { 0: fds[3] ?? NONE_FD })));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fdArray(TABLE_SIZE)));
    const state = irqs.state();
    assert.equal(state.activeIndex, MSIX);
    assert.equal(state.allocatedVectors.length, TABLE_SIZE);
    assert.equal(state.vectorTriggers.size, 0);
  });

  test('§6.13 QEMU: vector 0 with fd -1 enables MSI-X with one vector and nothing bound', () => {
    const { irqs } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [NONE_FD]));
    assert.deepEqual([irqs.state().activeIndex, irqs.state().allocatedVectors], [MSIX, [0]]);
  });

  test('§6.14 NORESIZE: binding past the enabled vectors is EINVAL; disable and re-enable with more grows', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD]));
    assert.throws(() => {
      irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 3, [fds[1] ?? NONE_FD]));
    }, rejectsWith('EINVAL'));
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fdArray(4, { 0: fds[0] ?? NONE_FD, 3: fds[1] ?? NONE_FD })));
    assert.deepEqual([...irqs.state().vectorTriggers], [[0, events[0]], [3, events[1]]]);
  });

  test('fd -1 past the enabled vectors is accepted and changes nothing (nothing to release)', () => {
    const { irqs, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD]));
    const before = irqs.state();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 5, [NONE_FD, NONE_FD]));
    assert.deepEqual(irqs.state(), before);
  });

  test('dynamic MSI-X: binding past the enabled vectors allocates that vector, which stays allocated until disable', () => {
    const { irqs, events, fds } = rig({ ...TYPICAL_FUNCTION, dynamicMsix: true });
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 9, [fds[2] ?? NONE_FD]));
    assert.equal(irqs.state().vectorTriggers.get(9), events[2]);
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 9, [NONE_FD]));
    assert.deepEqual(irqs.state().allocatedVectors, [0, 9]);
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
    assert.deepEqual(irqs.state().allocatedVectors, []);
  });

  test('dynamic MSI-X still counts host vectors: the one past the budget is ENOSPC', () => {
    const { irqs, fds } = rig({ ...TYPICAL_FUNCTION, dynamicMsix: true, hostVectors: 2 });
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 4, [fds[1] ?? NONE_FD]));
    assert.throws(() => {
      irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 5, [fds[2] ?? NONE_FD]));
    }, rejectsWith('ENOSPC'));
    assert.deepEqual(irqs.state().allocatedVectors, [0, 4]);
  });
});

describe('MSI-X re-binding and rollback', () => {
  test('re-binding a range replaces only that range; -1 unbinds; vectors outside keep their triggers', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, fds[1] ?? NONE_FD, fds[2] ?? NONE_FD, fds[3] ?? NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 1, [fds[3] ?? NONE_FD, NONE_FD]));
    assert.deepEqual([...irqs.state().vectorTriggers], [[0, events[0]], [1, events[3]], [3, events[3]]]);
  });

  test('§6.16 a failing vector unbinds every vector processed in that call (the failing one too); later ones keep theirs', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, fds[1] ?? NONE_FD, fds[2] ?? NONE_FD, fds[3] ?? NONE_FD, fds[0] ?? NONE_FD]));
    assert.throws(() => {
      irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 1, [fds[3] ?? NONE_FD, UNKNOWN_FD, fds[3] ?? NONE_FD]));
    }, rejectsWith('EBADF'));
    // Vector 1 was re-bound then unbound by the rollback, vector 2 failed, vector 3 was not reached.
    assert.deepEqual([...irqs.state().vectorTriggers], [[0, events[0]], [3, events[3]], [4, events[0]]]);
    assert.equal(irqs.state().activeIndex, MSIX, 'an index that was already enabled stays enabled');
  });

  test('a failure in the call that enabled the index disables it again', () => {
    const { irqs, fds } = rig();
    assert.throws(() => {
      irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, UNKNOWN_FD]));
    }, rejectsWith('EBADF'));
    assert.deepEqual([irqs.state().activeIndex, irqs.state().allocatedVectors, irqs.state().vectorTriggers.size], [null, [], 0]);
  });

  test('closing an fd after binding does not unbind: the kernel holds the eventfd, not the number', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD]));
    irqs.fds.close(fds[0] ?? NONE_FD);
    irqs.raise(MSIX, 0);
    assert.equal(events[0]?.tryRead(), 1n);
  });
});

describe('MSI-X loopback versus disable (§6.15)', () => {
  test('DATA_NONE with count > 0 fires every bound vector of the range and skips unbound ones; it does not disable', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, NONE_FD, fds[1] ?? NONE_FD, fds[2] ?? NONE_FD]));
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 3));
    assert.deepEqual(drainCounts(events), [1n, 1n, 0n, 0n]);
    assert.equal(irqs.state().activeIndex, MSIX);
  });

  test('DATA_BOOL fires only the vectors whose byte is non-zero', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, fds[1] ?? NONE_FD, fds[2] ?? NONE_FD]));
    irqs.setIrqs(irqSetBools(TRIGGER, MSIX, 0, [true, false, true]));
    assert.deepEqual(drainCounts(events), [1n, 0n, 1n, 0n]);
  });

  test('DATA_NONE with count 0 disables: every binding and allocation goes', () => {
    const { irqs, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD, fds[1] ?? NONE_FD]));
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
    assert.deepEqual([irqs.state().activeIndex, irqs.state().allocatedVectors, irqs.state().vectorTriggers.size], [null, [], 0]);
  });
});

describe('MSI', () => {
  test('MSI enables, fires and disables like MSI-X; then MSI-X can be enabled', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSI, 0, [fds[0] ?? NONE_FD, fds[1] ?? NONE_FD]));
    irqs.raise(MSI, 1);
    assert.deepEqual(drainCounts(events), [0n, 1n, 0n, 0n]);
    assert.throws(() => {
      irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[2] ?? NONE_FD]));
    }, rejectsWith('EINVAL'));
    irqs.setIrqs(irqSetNone(TRIGGER, MSI, 0, 0));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[2] ?? NONE_FD]));
    assert.equal(irqs.state().activeIndex, MSIX);
  });

  test('an eventfd call with start 3 and count 0 enables MSI with 3 vectors and binds none', () => {
    const { irqs } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSI, 3, []));
    assert.deepEqual([irqs.state().activeIndex, irqs.state().allocatedVectors, irqs.state().vectorTriggers.size], [MSI, [0, 1, 2], 0]);
  });
});

describe('raises from the device: delivery, pending, undeliverable', () => {
  test('a raise on an allocated, unbound vector is held pending and delivered when a trigger is bound', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fdArray(4)));
    irqs.raise(MSIX, 2);
    irqs.raise(MSIX, 2);
    assert.deepEqual(irqs.state().pendingVectors.msix, [2]);
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 2, [fds[1] ?? NONE_FD]));
    assert.equal(events[1]?.tryRead(), 1n, 'one pending bit: one message');
    assert.deepEqual(irqs.state().pendingVectors.msix, []);
  });

  test('an MSI-X entry with no host vector is masked in the table: its raise is held by the device too', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD]));
    irqs.raise(MSIX, 7);
    assert.deepEqual(irqs.state().pendingVectors.msix, [7]);
    assert.equal(irqs.counters().undeliverableRaises, 0);
    // NORESIZE: the VMM grows by disable and re-enable; the bit outlives the disable.
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
    assert.deepEqual(irqs.state().pendingVectors.msix, [7]);
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fdArray(8, { 0: fds[0] ?? NONE_FD, 7: fds[1] ?? NONE_FD })));
    assert.deepEqual(drainCounts(events), [0n, 1n, 0n, 0n]);
    assert.deepEqual(irqs.state().pendingVectors.msix, []);
  });

  test('pending bits are per index: MSI-X bits are not sent to MSI vectors', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, fdArray(2)));
    irqs.raise(MSIX, 1);
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSI, 0, [NONE_FD, fds[0] ?? NONE_FD]));
    assert.equal(events[0]?.tryRead(), 0n);
    assert.deepEqual(irqs.state().pendingVectors, { msi: [], msix: [1] });
  });

  test('raises with nowhere to go are counted: index disabled, MSI vector past the allocation', () => {
    const { irqs, fds } = rig();
    irqs.raise(MSIX, 0);
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSI, 0, [fds[0] ?? NONE_FD]));
    irqs.raise(MSI, 7);
    irqs.raise(MSIX, 0);
    assert.equal(irqs.counters().undeliverableRaises, 3);
    assert.deepEqual(irqs.state().pendingVectors, { msi: [], msix: [] });
  });

  test('with dynamic MSI-X a raise past the allocation is pending and delivered when that vector is bound', () => {
    const { irqs, events, fds } = rig({ ...TYPICAL_FUNCTION, dynamicMsix: true });
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [NONE_FD]));
    irqs.raise(MSIX, 12);
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 12, [fds[0] ?? NONE_FD]));
    assert.equal(events[0]?.tryRead(), 1n);
  });

  test('a vector outside the index, or an index the function lacks, is a caller error: EINVAL', () => {
    const { irqs } = rig({ ...TYPICAL_FUNCTION, pcie: false });
    for (const [index, vector] of [[MSIX, TABLE_SIZE], [MSI, -1], [ERR, 0], [REQ, 1], [7, 0], [MSIX, 0.5]] as const) {
      assert.throws(() => {
        irqs.raise(index, vector);
      }, rejectsWith('EINVAL'), `raise(${index}, ${vector})`);
    }
  });
});

describe('ERR and REQ (§5.5)', () => {
  test('bind, loop back with DATA_NONE and DATA_BOOL, and a device raise signal the bound event', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, ERR, 0, [fds[0] ?? NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, REQ, 0, [fds[1] ?? NONE_FD]));
    irqs.setIrqs(irqSetNone(TRIGGER, ERR, 0, 1));
    irqs.setIrqs(irqSetBools(TRIGGER, REQ, 0, [false]));
    irqs.setIrqs(irqSetBools(TRIGGER, REQ, 0, [true]));
    irqs.raise(REQ);
    irqs.raise(ERR);
    assert.deepEqual(drainCounts(events), [2n, 2n, 0n, 0n]);
  });

  test('DATA_NONE count 0 and fd -1 release; another negative fd is a successful no-op', () => {
    const { irqs, events, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, ERR, 0, [fds[0] ?? NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, REQ, 0, [fds[1] ?? NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, REQ, 0, [-2]));
    assert.equal(irqs.state().reqTrigger, events[1]);
    irqs.setIrqs(irqSetNone(TRIGGER, ERR, 0, 0));
    irqs.setIrqs(irqSetEventfds(TRIGGER, REQ, 0, [NONE_FD]));
    assert.deepEqual([irqs.state().errTrigger, irqs.state().reqTrigger], [null, null]);
  });

  test('ERR and REQ are independent of the INTx/MSI/MSI-X type', () => {
    const { irqs, fds } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? NONE_FD]));
    irqs.setIrqs(irqSetEventfds(TRIGGER, REQ, 0, [fds[1] ?? NONE_FD]));
    irqs.setIrqs(irqSetNone(TRIGGER, MSIX, 0, 0));
    assert.notEqual(irqs.state().reqTrigger, null);
  });

  test('a raise with no trigger bound is counted as undeliverable', () => {
    const { irqs } = rig();
    irqs.raise(REQ);
    assert.equal(irqs.counters().undeliverableRaises, 1);
  });
});

describe('VFIO_DEVICE_GET_IRQ_INFO (§5.6)', () => {
  test('flags and counts per index: INTx maskable and automasked, the others NORESIZE', () => {
    const irqs = new VfioIrqs(TYPICAL_FUNCTION);
    assert.deepEqual(
      [INTX, MSI, MSIX, ERR, REQ].map((index) => irqs.irqInfo(index)),
      [
        { argsz: 16, flags: INFO_EVENTFD | MASKABLE | AUTOMASKED, index: INTX, count: 1 },
        { argsz: 16, flags: INFO_EVENTFD | NORESIZE, index: MSI, count: 8 },
        { argsz: 16, flags: INFO_EVENTFD | NORESIZE, index: MSIX, count: 16 },
        { argsz: 16, flags: INFO_EVENTFD | NORESIZE, index: ERR, count: 1 },
        { argsz: 16, flags: INFO_EVENTFD | NORESIZE, index: REQ, count: 1 },
      ],
    );
  });

  test('dynamic MSI-X clears NORESIZE for MSI-X only; a pinless function reports INTx count 0', () => {
    const irqs = new VfioIrqs({ ...TYPICAL_FUNCTION, intx: false, dynamicMsix: true });
    assert.equal(irqs.irqInfo(MSIX).flags, INFO_EVENTFD);
    assert.equal(irqs.irqInfo(MSI).flags, INFO_EVENTFD | NORESIZE);
    assert.equal(irqs.irqInfo(INTX).count, 0);
  });

  test('the byte interface answers in place: argsz kept, bytes past 16 untouched', () => {
    const irqs = new VfioIrqs(TYPICAL_FUNCTION);
    const request = new Uint8Array(24).fill(0xaa);
    request.set(encodeIrqInfo({ argsz: 24, index: MSIX }));
    const answer = irqs.getIrqInfo(request);
    assert.deepEqual(decodeIrqInfo(answer), { argsz: 24, flags: INFO_EVENTFD | NORESIZE, index: MSIX, count: 16 });
    assert.deepEqual([...answer.subarray(16)], Array<number>(8).fill(0xaa));
  });

  test('argsz below 16, index 5, ERR on a conventional PCI function: EINVAL; a buffer shorter than 16 bytes: EFAULT', () => {
    const irqs = new VfioIrqs({ ...TYPICAL_FUNCTION, pcie: false });
    for (const request of [encodeIrqInfo({ argsz: 15, index: MSI }), encodeIrqInfo({ index: 5 }), encodeIrqInfo({ index: ERR })]) {
      assert.throws(() => irqs.getIrqInfo(request), rejectsWith('EINVAL'));
    }
    assert.throws(() => irqs.getIrqInfo(new Uint8Array(8)), rejectsWith('EFAULT'));
  });
});

describe('configuration and the fd table', () => {
  test('impossible configurations are EINVAL: 3 MSI vectors, a 2049-entry MSI-X table, negative host vectors', () => {
    for (const config of [
      { ...TYPICAL_FUNCTION, msiVectors: 3 },
      { ...TYPICAL_FUNCTION, msixVectors: 2049 },
      { ...TYPICAL_FUNCTION, hostVectors: -1 },
    ]) {
      assert.throws(() => new VfioIrqs(config), rejectsWith('EINVAL'));
    }
  });

  test('fds are the lowest free numbers; a closed number is reused; closing twice is ENOENT', () => {
    const table = new VfioFdTable();
    const [a, b, c] = [Event.create(), Event.create(), Event.create()];
    assert.deepEqual([table.install(a), table.install(b)], [0, 1]);
    table.close(0);
    assert.equal(table.install(c), 0);
    assert.equal(table.resolve(0), c);
    table.close(1);
    assert.equal(table.isOpen(1), false);
    assert.throws(() => {
      table.close(1);
    }, rejectsWith('ENOENT'));
    assert.throws(() => table.resolve(-1), rejectsWith('EINVAL'));
  });

  test('engines can share one fd table, as the devices of one process do', () => {
    const fds = new VfioFdTable();
    const event = Event.create();
    const fd = fds.install(event);
    const first = new VfioIrqs({ ...TYPICAL_FUNCTION, fds });
    const second = new VfioIrqs({ ...TYPICAL_FUNCTION, fds });
    first.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fd]));
    second.setIrqs(irqSetEventfds(TRIGGER, MSI, 0, [fd]));
    first.raise(MSIX, 0);
    second.raise(MSI, 0);
    assert.equal(event.tryRead(), 2n);
  });
});
