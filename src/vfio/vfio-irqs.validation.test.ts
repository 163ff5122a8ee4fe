/**
 * Every SET_IRQS validation rule, one row each: the request, the state it is made in, the errno the
 * kernel answers (vfio_main.c `vfio_set_irqs_validate_and_prepare`, vfio_pci_intrs.c handlers,
 * vfio_pci_core.c dispatch), and that nothing observable changed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertRejectedUnchanged, rig, TYPICAL_FUNCTION, type Rig } from './vfio-test-support.ts';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import type { VfioIrqsConfig } from './vfio-irqs.ts';
import { VfioVectorShortageError } from './vfio-irqs.ts';
import {
  encodeIrqSet,
  irqSetBools,
  irqSetEventfds,
  irqSetNone,
  VFIO_IRQ_SET_ACTION_MASK as MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER as TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK as UNMASK,
  VFIO_IRQ_SET_DATA_BOOL as BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD as EVENTFD,
  VFIO_IRQ_SET_DATA_NONE as NONE,
  VFIO_PCI_ERR_IRQ_INDEX as ERR,
  VFIO_PCI_INTX_IRQ_INDEX as INTX,
  VFIO_PCI_MSI_IRQ_INDEX as MSI,
  VFIO_PCI_MSIX_IRQ_INDEX as MSIX,
  VFIO_PCI_REQ_IRQ_INDEX as REQ,
} from './vfio-uapi.ts';

const U32_MAX = 0xffffffff;
/** An fd number the rig never installs. */
const UNKNOWN_FD = 999;

interface Row {
  readonly rule: string;
  readonly code: 'EINVAL' | 'ENOTTY' | 'EBUSY' | 'EBADF' | 'ENOSPC' | 'ERANGE' | 'EFAULT' | 'ENODEV';
  readonly config?: VfioIrqsConfig;
  /** Brings the engine into the state the rule needs (applied requests). */
  readonly setup?: (rig: Rig) => void;
  readonly request: (rig: Rig) => Uint8Array;
}

const enableIntx = ({ irqs, fds }: Rig): void => {
  irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [fds[0] ?? -1]));
};
const enableMsi = ({ irqs, fds }: Rig): void => {
  irqs.setIrqs(irqSetEventfds(TRIGGER, MSI, 0, [fds[0] ?? -1, fds[1] ?? -1]));
};
const enableMsix = ({ irqs, fds }: Rig): void => {
  irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? -1, -1]));
};

const rows: readonly Row[] = [
  // vfio_set_irqs_validate_and_prepare, first check
  { rule: 'argsz below the 20-byte header', code: 'EINVAL', request: () => encodeIrqSet({ flags: NONE | TRIGGER, index: MSI, start: 0, count: 0, argsz: 19 }) },
  { rule: 'argsz 0', code: 'EINVAL', request: () => encodeIrqSet({ flags: NONE | TRIGGER, index: REQ, start: 0, count: 1, argsz: 0 }) },
  { rule: 'index 5, the first past REQ', code: 'EINVAL', request: () => irqSetNone(TRIGGER, 5, 0, 1) },
  { rule: 'index 0xFFFFFFFF', code: 'EINVAL', request: () => irqSetNone(TRIGGER, U32_MAX, 0, 1) },
  { rule: 'count U32_MAX with start 0 (overflow guard)', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSIX, 0, U32_MAX) },
  { rule: 'count = U32_MAX - start (overflow guard, >=)', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSIX, 1, U32_MAX - 1) },
  { rule: 'start U32_MAX with count 0 (overflow guard)', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSIX, U32_MAX, 0) },
  { rule: 'flag bit 6, outside both masks', code: 'EINVAL', request: () => irqSetNone(TRIGGER | (1 << 6), MSIX, 0, 1) },
  { rule: 'flag bit 31', code: 'EINVAL', request: () => irqSetNone((TRIGGER | (1 << 31)) >>> 0, MSIX, 0, 1) },
  // second check: the range against the index's count
  { rule: 'start equal to the MSI count', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSI, 8, 0) },
  { rule: 'start + count past the MSI-X table', code: 'EINVAL', request: ({ fds }) => irqSetEventfds(TRIGGER, MSIX, 10, Array<number>(7).fill(fds[0] ?? -1)) },
  { rule: 'INTx on a function without a pin, even a count-0 disable', code: 'EINVAL', config: { ...TYPICAL_FUNCTION, intx: false }, request: () => irqSetNone(TRIGGER, INTX, 0, 0) },
  { rule: 'MSI on a function without the capability', code: 'EINVAL', config: { ...TYPICAL_FUNCTION, msiVectors: 0 }, request: ({ fds }) => irqSetEventfds(TRIGGER, MSI, 0, [fds[0] ?? -1]) },
  { rule: 'ERR on a conventional PCI function (count 0)', code: 'EINVAL', config: { ...TYPICAL_FUNCTION, pcie: false }, request: ({ fds }) => irqSetEventfds(TRIGGER, ERR, 0, [fds[0] ?? -1]) },
  { rule: 'ERR count 2', code: 'EINVAL', request: () => irqSetNone(TRIGGER, ERR, 0, 2) },
  // third check: exactly one data type
  { rule: 'no data type bit', code: 'EINVAL', request: () => encodeIrqSet({ flags: TRIGGER, index: MSIX, start: 0, count: 1 }) },
  { rule: 'DATA_NONE | DATA_BOOL', code: 'EINVAL', request: () => encodeIrqSet({ flags: NONE | BOOL | TRIGGER, index: MSIX, start: 0, count: 1 }, new Uint8Array(1)) },
  { rule: 'all three data type bits', code: 'EINVAL', request: () => encodeIrqSet({ flags: NONE | BOOL | EVENTFD | TRIGGER, index: MSIX, start: 0, count: 1 }, new Uint8Array(4)) },
  // fourth check: argsz covers the payload
  { rule: 'argsz one byte short of two fds', code: 'EINVAL', request: () => encodeIrqSet({ flags: EVENTFD | TRIGGER, index: MSIX, start: 0, count: 2, argsz: 27 }, new Uint8Array(8)) },
  { rule: 'argsz one byte short of three bools', code: 'EINVAL', setup: enableMsix, request: () => encodeIrqSet({ flags: BOOL | TRIGGER, index: MSIX, start: 0, count: 3, argsz: 22 }, new Uint8Array(3)) },
  // the copies from the caller's memory: the header first, the payload after the validation
  { rule: 'argsz claims the payload but the buffer ends early: memdup_user faults', code: 'EFAULT', request: () => encodeIrqSet({ flags: EVENTFD | TRIGGER, index: MSIX, start: 0, count: 2, argsz: 28 }, new Uint8Array(4)) },
  { rule: 'a buffer shorter than the header: copy_from_user faults', code: 'EFAULT', request: () => new Uint8Array(12) },
  { rule: 'a short header faults before argsz 0 is judged', code: 'EFAULT', request: () => new Uint8Array(19) },
  { rule: 'argsz too small comes before the short payload: EINVAL, not EFAULT', code: 'EINVAL', request: () => encodeIrqSet({ flags: EVENTFD | TRIGGER, index: MSIX, start: 0, count: 2, argsz: 24 }, new Uint8Array(4)) },
  // dispatch on (index, action)
  { rule: 'no action bit', code: 'ENOTTY', request: () => encodeIrqSet({ flags: NONE, index: INTX, start: 0, count: 1 }) },
  { rule: 'two action bits (MASK | UNMASK)', code: 'ENOTTY', setup: enableIntx, request: () => irqSetNone(MASK | UNMASK, INTX, 0, 1) },
  { rule: 'all three action bits', code: 'ENOTTY', request: () => irqSetNone(MASK | UNMASK | TRIGGER, MSIX, 0, 1) },
  { rule: 'MSI MASK', code: 'ENOTTY', setup: enableMsi, request: () => irqSetNone(MASK, MSI, 0, 1) },
  { rule: 'MSI UNMASK', code: 'ENOTTY', setup: enableMsi, request: () => irqSetNone(UNMASK, MSI, 0, 1) },
  { rule: 'MSI-X MASK with a bool', code: 'ENOTTY', setup: enableMsix, request: () => irqSetBools(MASK, MSIX, 0, [true]) },
  { rule: 'MSI-X UNMASK with an eventfd', code: 'ENOTTY', setup: enableMsix, request: ({ fds }) => irqSetEventfds(UNMASK, MSIX, 0, [fds[1] ?? -1]) },
  { rule: 'ERR MASK', code: 'ENOTTY', request: () => irqSetNone(MASK, ERR, 0, 1) },
  { rule: 'REQ UNMASK', code: 'ENOTTY', request: () => irqSetNone(UNMASK, REQ, 0, 1) },
  // INTx handlers
  { rule: 'INTx MASK with an eventfd (not implemented)', code: 'ENOTTY', setup: enableIntx, request: ({ fds }) => irqSetEventfds(MASK, INTX, 0, [fds[1] ?? -1]) },
  { rule: 'INTx MASK with an eventfd while INTx is disabled: EINVAL comes first', code: 'EINVAL', request: ({ fds }) => irqSetEventfds(MASK, INTX, 0, [fds[1] ?? -1]) },
  { rule: 'INTx MASK while INTx is disabled', code: 'EINVAL', request: () => irqSetNone(MASK, INTX, 0, 1) },
  { rule: 'INTx UNMASK while INTx is disabled', code: 'EINVAL', request: () => irqSetNone(UNMASK, INTX, 0, 1) },
  { rule: 'INTx UNMASK count 0', code: 'EINVAL', setup: enableIntx, request: () => irqSetNone(UNMASK, INTX, 0, 0) },
  { rule: 'INTx count-0 disable while INTx is disabled', code: 'EINVAL', request: () => irqSetNone(TRIGGER, INTX, 0, 0) },
  { rule: 'INTx count-0 DATA_BOOL (only DATA_NONE disables)', code: 'EINVAL', setup: enableIntx, request: () => irqSetBools(TRIGGER, INTX, 0, []) },
  { rule: 'INTx loopback while INTx is disabled', code: 'EINVAL', request: () => irqSetNone(TRIGGER, INTX, 0, 1) },
  { rule: 'INTx enable while MSI is enabled', code: 'EINVAL', setup: enableMsi, request: ({ fds }) => irqSetEventfds(TRIGGER, INTX, 0, [fds[2] ?? -1]) },
  { rule: 'INTx trigger with an fd that is not open', code: 'EBADF', request: () => irqSetEventfds(TRIGGER, INTX, 0, [UNKNOWN_FD]) },
  { rule: 'INTx unmask eventfd that is not open', code: 'EBADF', setup: enableIntx, request: () => irqSetEventfds(UNMASK, INTX, 0, [UNKNOWN_FD]) },
  { rule: 'INTx enable on a pin with no host IRQ routed', code: 'ENODEV', config: { ...TYPICAL_FUNCTION, intxHostIrq: false }, request: ({ fds }) => irqSetEventfds(TRIGGER, INTX, 0, [fds[0] ?? -1]) },
  { rule: 'INTx enable with fd -1 on a pin with no host IRQ routed', code: 'ENODEV', config: { ...TYPICAL_FUNCTION, intxHostIrq: false }, request: () => irqSetEventfds(TRIGGER, INTX, 0, [-1]) },
  { rule: 'a bad fd is found before the missing host IRQ (the fd is resolved first)', code: 'EBADF', config: { ...TYPICAL_FUNCTION, intxHostIrq: false }, request: () => irqSetEventfds(TRIGGER, INTX, 0, [UNKNOWN_FD]) },
  {
    rule: 'a second INTx unmask eventfd while one is installed',
    code: 'EBUSY',
    setup: (r) => {
      enableIntx(r);
      r.irqs.setIrqs(irqSetEventfds(UNMASK, INTX, 0, [r.fds[1] ?? -1]));
    },
    request: ({ fds }) => irqSetEventfds(UNMASK, INTX, 0, [fds[2] ?? -1]),
  },
  // MSI / MSI-X handlers
  { rule: 'MSI enable while INTx is enabled', code: 'EINVAL', setup: enableIntx, request: ({ fds }) => irqSetEventfds(TRIGGER, MSI, 0, [fds[1] ?? -1]) },
  { rule: 'MSI-X enable while MSI is enabled', code: 'EINVAL', setup: enableMsi, request: ({ fds }) => irqSetEventfds(TRIGGER, MSIX, 0, [fds[2] ?? -1]) },
  { rule: 'MSI count-0 disable while MSI is disabled', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSI, 0, 0) },
  { rule: 'MSI-X loopback while MSI-X is disabled', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSIX, 0, 4) },
  { rule: 'MSI-X bool loopback while MSI is the enabled index', code: 'EINVAL', setup: enableMsi, request: () => irqSetBools(TRIGGER, MSIX, 0, [true]) },
  { rule: 'MSI-X enable with start 0, count 0 + DATA_EVENTFD: pci_alloc_irq_vectors(1, 0)', code: 'ERANGE', request: () => irqSetEventfds(TRIGGER, MSIX, 0, []) },
  { rule: 'MSI enable with start 0, count 0 + DATA_EVENTFD', code: 'ERANGE', request: () => irqSetEventfds(TRIGGER, MSI, 0, []) },
  { rule: 'MSI-X start 0, count 0 + DATA_NONE while disabled: not a disable, not an enable', code: 'EINVAL', request: () => irqSetNone(TRIGGER, MSIX, 0, 0) },
  { rule: 'MSI-X enable whose only fd is not open: enabled, then disabled again', code: 'EBADF', request: () => irqSetEventfds(TRIGGER, MSIX, 0, [UNKNOWN_FD]) },
  { rule: 'NORESIZE: binding MSI-X vector 5 when 2 are enabled', code: 'EINVAL', setup: enableMsix, request: ({ fds }) => irqSetEventfds(TRIGGER, MSIX, 5, [fds[2] ?? -1]) },
  { rule: 'MSI-X enable asking more host vectors than the host has', code: 'ENOSPC', config: { ...TYPICAL_FUNCTION, hostVectors: 4 }, request: ({ fds }) => irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? -1, -1, -1, -1, -1, -1]) },
  { rule: 'MSI enable with no host vector left', code: 'ENOSPC', config: { ...TYPICAL_FUNCTION, hostVectors: 0 }, request: ({ fds }) => irqSetEventfds(TRIGGER, MSI, 0, [fds[0] ?? -1]) },
  // ERR / REQ handler
  { rule: 'ERR DATA_NONE loopback with no trigger bound', code: 'EINVAL', request: () => irqSetNone(TRIGGER, ERR, 0, 1) },
  { rule: 'REQ DATA_NONE release (count 0) with no trigger bound', code: 'EINVAL', request: () => irqSetNone(TRIGGER, REQ, 0, 0) },
  { rule: 'ERR DATA_BOOL count 0', code: 'EINVAL', request: () => irqSetBools(TRIGGER, ERR, 0, []) },
  { rule: 'REQ DATA_EVENTFD count 0', code: 'EINVAL', request: () => irqSetEventfds(TRIGGER, REQ, 0, []) },
  { rule: 'REQ eventfd that is not open', code: 'EBADF', request: () => irqSetEventfds(TRIGGER, REQ, 0, [UNKNOWN_FD]) },
];

describe('SET_IRQS validation: each rule answers the kernel errno and changes nothing', () => {
  for (const row of rows) {
    test(`${row.code}: ${row.rule}`, () => {
      const subject = rig(row.config ?? TYPICAL_FUNCTION);
      row.setup?.(subject);
      const request = row.request(subject);
      const rejectedBefore = subject.irqs.counters().setIrqsRejected;
      assertRejectedUnchanged(subject.irqs, row.code, () => {
        subject.irqs.setIrqs(request);
      }, row.rule);
      assert.equal(subject.irqs.counters().setIrqsRejected, rejectedBefore + 1, 'the rejection is counted');
    });
  }
});

describe('SET_IRQS validation: what the rules allow', () => {
  test('argsz larger than the payload is accepted (openvmm passes room for 256 fds)', () => {
    const { irqs, fds, events } = rig();
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setInt32(0, fds[0] ?? -1, true);
    irqs.setIrqs(encodeIrqSet({ flags: EVENTFD | TRIGGER, index: MSIX, start: 0, count: 1, argsz: 20 + 4 * 256 }, payload));
    assert.equal(irqs.state().vectorTriggers.get(0), events[0]);
  });

  test('bytes beyond argsz and beyond the payload are ignored', () => {
    const { irqs, events } = rig();
    irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [0, 1]));
    const padded = new Uint8Array(64);
    padded.set(irqSetBools(TRIGGER, MSIX, 0, [false, true]));
    padded.fill(0xff, 22);
    irqs.setIrqs(padded);
    assert.deepEqual([events[0]?.tryRead(), events[1]?.tryRead()], [0n, 1n]);
  });

  test('a short host allocation reports how many vectors were available, like the positive ioctl result', () => {
    const { irqs, fds } = rig({ ...TYPICAL_FUNCTION, hostVectors: 3 });
    assert.throws(
      () => {
        irqs.setIrqs(irqSetEventfds(TRIGGER, MSIX, 0, [fds[0] ?? -1, -1, -1, -1]));
      },
      (error: unknown) => error instanceof VfioVectorShortageError && error.available === 3 && error.requested === 4,
    );
  });

  test('a hand-built request with a field outside u32 is EINVAL and changes nothing', () => {
    const { irqs } = rig();
    for (const start of [-1, 0.5, 2 ** 32]) {
      assertRejectedUnchanged(irqs, 'EINVAL', () => {
        irqs.applyIrqSet({ argsz: 20, flags: NONE | TRIGGER, index: REQ, start, count: 0, data: new Uint8Array(0) });
      });
    }
  });

  test('a closed fd is EBADF: the number no longer names the event it named', () => {
    const { irqs, fds } = rig();
    irqs.fds.close(fds[0] ?? -1);
    assert.throws(() => {
      irqs.setIrqs(irqSetEventfds(TRIGGER, INTX, 0, [fds[0] ?? -1]));
    }, rejectsWith('EBADF'));
  });

  test('a pin with no host IRQ still reports INTx count 1 (the kernel answers ENODEV only at enable)', () => {
    const { irqs } = rig({ ...TYPICAL_FUNCTION, intxHostIrq: false });
    assert.equal(irqs.irqInfo(INTX).count, 1);
  });
});
