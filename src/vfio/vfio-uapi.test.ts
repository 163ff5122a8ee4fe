import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import {
  decodeIrqInfo,
  decodeIrqSet,
  encodeIrqInfo,
  encodeIrqSet,
  ioctlNumberNoArgument,
  irqSetBool,
  irqSetBools,
  irqSetEventfd,
  irqSetEventfds,
  irqSetNone,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_INFO_AUTOMASKED,
  VFIO_IRQ_INFO_EVENTFD,
  VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
} from './vfio-uapi.ts';

describe('vfio uapi constants (include/uapi/linux/vfio.h)', () => {
  test('SET_IRQS flags: DATA_NONE/BOOL/EVENTFD bits 0-2, ACTION_MASK/UNMASK/TRIGGER bits 3-5, masks 0x7 and 0x38', () => {
    assert.deepEqual(
      [VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD],
      [0x1, 0x2, 0x4],
    );
    assert.deepEqual([VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_ACTION_TRIGGER], [0x8, 0x10, 0x20]);
    assert.equal(VFIO_IRQ_SET_DATA_TYPE_MASK, 0x7);
    assert.equal(VFIO_IRQ_SET_ACTION_TYPE_MASK, 0x38);
  });

  test('vfio-pci indexes: INTx 0, MSI 1, MSI-X 2, ERR 3, REQ 4, NUM_IRQS 5', () => {
    assert.deepEqual(
      [VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX, VFIO_PCI_NUM_IRQS],
      [0, 1, 2, 3, 4, 5],
    );
  });

  test('irq_info flags: EVENTFD 1, MASKABLE 2, AUTOMASKED 4, NORESIZE 8', () => {
    assert.deepEqual([VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE, VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_NORESIZE], [1, 2, 4, 8]);
  });

  test('ioctl numbers: _IO(\';\', 100 + 9) = 0x3B6D (GET_IRQ_INFO), _IO(\';\', 100 + 10) = 0x3B6E (SET_IRQS)', () => {
    assert.equal(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
    assert.equal(VFIO_DEVICE_SET_IRQS, 0x3b6e);
    // VFIO_GET_API_VERSION = _IO(';', 100), a value every VFIO user can check against the header.
    assert.equal(ioctlNumberNoArgument(0x3b, 100), 0x3b64);
  });

  test('ioctl number fields out of byte range are EINVAL', () => {
    assert.throws(() => ioctlNumberNoArgument(0x100, 0), rejectsWith('EINVAL'));
    assert.throws(() => ioctlNumberNoArgument(0x3b, -1), rejectsWith('EINVAL'));
  });
});

describe('struct vfio_irq_set codec', () => {
  test('eventfd request {5, -1, 7} for MSI-X vectors 0-2 encodes byte for byte, little-endian', () => {
    const bytes = irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, [5, -1, 7]);
    // prettier-ignore
    const expected = [
      0x20, 0, 0, 0, // argsz 32
      0x24, 0, 0, 0, // DATA_EVENTFD | ACTION_TRIGGER
      0x02, 0, 0, 0, // index MSI-X
      0x00, 0, 0, 0, // start 0
      0x03, 0, 0, 0, // count 3
      0x05, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07, 0, 0, 0,
    ];
    assert.deepEqual([...bytes], expected);
  });

  test('bool request (mask [0,1] and [0,3], not [0,2]) carries one byte per sub-index', () => {
    const bytes = irqSetBools(VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_INTX_IRQ_INDEX, 1, [true, false, true]);
    assert.deepEqual([...bytes], [23, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 1]);
    const decoded = decodeIrqSet(bytes);
    assert.deepEqual([0, 1, 2].map((position) => irqSetBool(decoded, position)), [true, false, true]);
  });

  test('DATA_NONE disable request (TRIGGER, count 0) is the 20-byte header alone', () => {
    const bytes = irqSetNone(VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSI_IRQ_INDEX, 0, 0);
    assert.deepEqual([...bytes], [20, 0, 0, 0, 0x21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  test('an explicit argsz larger than the buffer is encoded as given (openvmm passes 256 fds of room)', () => {
    const bytes = encodeIrqSet({ flags: 0x24, index: 2, start: 0, count: 1, argsz: 20 + 4 * 256 }, new Uint8Array(4));
    assert.equal(bytes.byteLength, 24);
    assert.equal(decodeIrqSet(bytes).argsz, 1044);
  });

  test('decode reads the header fields as u32 (all-ones stays 0xFFFFFFFF) and keeps every following byte', () => {
    const bytes = new Uint8Array(27).fill(0xff);
    const decoded = decodeIrqSet(bytes);
    assert.deepEqual(
      [decoded.argsz, decoded.flags, decoded.index, decoded.start, decoded.count],
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    );
    assert.equal(decoded.data.byteLength, 7);
    assert.equal(irqSetEventfd(decoded, 0), -1);
  });

  test('decode of an unaligned view reads the right bytes', () => {
    const backing = new Uint8Array(1 + 24);
    backing.set(irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, 1, 3, [42]), 1);
    const decoded = decodeIrqSet(backing.subarray(1));
    assert.deepEqual([decoded.index, decoded.start, decoded.count, irqSetEventfd(decoded, 0)], [1, 3, 1, 42]);
  });

  test('fewer than 20 bytes cannot be decoded: EFAULT, as the kernel\'s copy of the header faults', () => {
    for (const length of [0, 1, 19]) assert.throws(() => decodeIrqSet(new Uint8Array(length)), rejectsWith('EFAULT'));
  });

  test('encode refuses header values outside u32 and fds outside s32 with EINVAL', () => {
    assert.throws(() => encodeIrqSet({ flags: -1, index: 0, start: 0, count: 0 }), rejectsWith('EINVAL'));
    assert.throws(() => encodeIrqSet({ flags: 0, index: 2 ** 32, start: 0, count: 0 }), rejectsWith('EINVAL'));
    assert.throws(() => irqSetEventfds(VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, [2 ** 31]), rejectsWith('EINVAL'));
  });

  test('property: encode then decode gives back every header field and fd', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(u32, u32, u32, fc.array(fc.integer({ min: -0x80000000, max: 0x7fffffff }), { maxLength: 40 }), (action, index, start, fds) => {
        const decoded = decodeIrqSet(irqSetEventfds(action, index, start, fds));
        assert.equal(decoded.flags, (VFIO_IRQ_SET_DATA_EVENTFD | action) >>> 0);
        assert.deepEqual([decoded.index, decoded.start, decoded.count, decoded.argsz], [index, start, fds.length, 20 + 4 * fds.length]);
        assert.deepEqual(
          fds.map((_, position) => irqSetEventfd(decoded, position)),
          fds,
        );
      }),
    );
  });
});

describe('struct vfio_irq_info codec', () => {
  test('a request for MSI-X encodes to 16 bytes: argsz 16, flags 0, index 2, count 0', () => {
    assert.deepEqual([...encodeIrqInfo({ index: 2 })], [16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
  });

  test('decode reads argsz, flags, index, count in that order', () => {
    const bytes = encodeIrqInfo({ argsz: 32, flags: 9, index: 1, count: 8 });
    assert.deepEqual(decodeIrqInfo(bytes), { argsz: 32, flags: 9, index: 1, count: 8 });
  });

  test('fewer than 16 bytes cannot be decoded: EFAULT', () => {
    assert.throws(() => decodeIrqInfo(new Uint8Array(15)), rejectsWith('EFAULT'));
  });
});
