/**
 * The VFIO interrupt uapi, byte-exact (Linux `include/uapi/linux/vfio.h`; seed 004;
 * seed-apis.md §5.1).
 *
 * `struct vfio_irq_set` (VFIO_DEVICE_SET_IRQS), little-endian as on x86 and arm64:
 *
 *   offset  0  u32 argsz   size of the whole buffer the caller passes, header included
 *           4  u32 flags   exactly one DATA_* and one ACTION_* bit
 *           8  u32 index   which interrupt index (INTx, MSI, MSI-X, ERR, REQ, ...)
 *          12  u32 start   first sub-index (vector) concerned
 *          16  u32 count   number of sub-indexes, start .. start + count - 1
 *          20  data[]      DATA_NONE: nothing; DATA_BOOL: `count` u8; DATA_EVENTFD: `count` s32 fds
 *
 * `struct vfio_irq_info` (VFIO_DEVICE_GET_IRQ_INFO): u32 argsz, flags, index, count (16 bytes).
 *
 * Decoding never judges the request: it reads the fields as the kernel's `copy_from_user` of the
 * header does, and hands the rest of the buffer to the validator (`irq-set-validation.ts`), which
 * applies the kernel's rules. Only a buffer too short to hold the fixed part is refused here, with
 * the kernel's EFAULT: its `copy_from_user` of the fixed part faults on memory that is not there
 * (vfio_pci_core.c, `vfio_pci_ioctl_set_irqs` and `vfio_pci_ioctl_get_irq_info`). A `Uint8Array`
 * has a length, so bytes past its end are the unmapped memory.
 */

import { check, checkRange, ErrorCode } from '../base/errors.ts';
import { U32_MAX } from '../base/integers.ts';

// ---- ioctl numbers ----------------------------------------------------------------------------

/** `VFIO_TYPE`: the ioctl type byte, ASCII ';'. */
export const VFIO_TYPE = 0x3b;
/** `VFIO_BASE`: VFIO's ioctl numbers start here. */
export const VFIO_BASE = 100;

/** `_IOC_NONE`, and the bit positions of the generic ioctl encoding (asm-generic/ioctl.h). */
const IOC_NONE = 0;
const IOC_NR_SHIFT = 0;
const IOC_TYPE_SHIFT = 8;
const IOC_SIZE_SHIFT = 16;
const IOC_DIR_SHIFT = 30;
/** `_IO` encodes no argument size. */
const IOC_NO_SIZE = 0;

/**
 * `_IO(type, nr)`: an ioctl with no size and no direction encoded. VFIO declares all its ioctls
 * this way (argsz inside the structure carries the size instead).
 */
export function ioctlNumberNoArgument(type: number, number: number): number {
  checkRange(type, 0, 0xff, 'ioctl type');
  checkRange(number, 0, 0xff, 'ioctl number');
  return ((IOC_NONE << IOC_DIR_SHIFT) | (IOC_NO_SIZE << IOC_SIZE_SHIFT) | (type << IOC_TYPE_SHIFT) | (number << IOC_NR_SHIFT)) >>> 0;
}

/** VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0) = 0x3B64 (container): returns VFIO_API_VERSION. */
export const VFIO_GET_API_VERSION = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 0);
/** VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1) = 0x3B65 (container): arg is the extension by value; > 0 when supported. */
export const VFIO_CHECK_EXTENSION = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 1);
/** VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2) = 0x3B66 (container): arg is the IOMMU type by value. */
export const VFIO_SET_IOMMU = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 2);
/** VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3) = 0x3B67 (group): fills `struct vfio_group_status`. */
export const VFIO_GROUP_GET_STATUS = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 3);
/** VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4) = 0x3B68 (group): arg points to the container fd (s32). */
export const VFIO_GROUP_SET_CONTAINER = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 4);
/** VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6) = 0x3B6A (group): arg points to the NUL-terminated device name; returns its fd. */
export const VFIO_GROUP_GET_DEVICE_FD = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 6);
/** VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9) = 0x3B6D. */
export const VFIO_DEVICE_GET_IRQ_INFO = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 9);
/** VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10) = 0x3B6E. */
export const VFIO_DEVICE_SET_IRQS = ioctlNumberNoArgument(VFIO_TYPE, VFIO_BASE + 10);

// ---- container and group -------------------------------------------------------------------

/** `VFIO_API_VERSION`: what VFIO_GET_API_VERSION returns for the uapi this file describes. */
export const VFIO_API_VERSION = 0;
/** IOMMU types for VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU (`VFIO_TYPE1_IOMMU`, `VFIO_TYPE1v2_IOMMU`). */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_TYPE1v2_IOMMU = 3;
/** `struct vfio_group_status`: u32 argsz, u32 flags. */
export const VFIO_GROUP_STATUS_BYTES = 8;
/** Group status flag: every device in the group is bound to a VFIO driver (or none at all). */
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
/** Group status flag: the group is already attached to a container. */
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

// ---- vfio_irq_set flags -----------------------------------------------------------------------

/** No payload: act on every sub-index of the range now. */
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
/** Payload: one u8 per sub-index; act where it is non-zero. */
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
/** Payload: one s32 eventfd per sub-index; -1 de-assigns (or skips an unassigned one). */
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
/** User → kernel: mask. */
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
/** User → kernel: unmask. */
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
/** Kernel → user: the interrupt is signalled to the caller's eventfd. */
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

// ---- vfio-pci interrupt indexes ---------------------------------------------------------------

export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
/** AER error notification (PCI Express functions only). */
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
/** Device request: the host wants the device back (hot-unplug request). */
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
/** Number of vfio-pci indexes; indexes from here on are device-specific. */
export const VFIO_PCI_NUM_IRQS = 5;

// ---- vfio_irq_info flags ----------------------------------------------------------------------

/** The index can signal through an eventfd. */
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
/** The index accepts ACTION_MASK / ACTION_UNMASK. */
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
/** Each trigger masks the interrupt until user space unmasks it (level semantics). */
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
/** The sub-indexes form a set: adding one needs the whole index disabled and re-enabled. */
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

// ---- struct layouts ---------------------------------------------------------------------------

/** `offsetofend(struct vfio_irq_set, count)`: the fixed part the kernel always reads. */
export const VFIO_IRQ_SET_HEADER_BYTES = 20;
/** `sizeof(struct vfio_irq_info)`, which is also its `minsz`. */
export const VFIO_IRQ_INFO_BYTES = 16;
/** Payload bytes per sub-index. */
export const VFIO_IRQ_SET_BOOL_BYTES = 1;
export const VFIO_IRQ_SET_EVENTFD_BYTES = 4;
/** The fd value that de-assigns (or skips an unassigned sub-index). */
export const VFIO_EVENTFD_NONE = -1;

const ARGSZ_OFFSET = 0;
const FLAGS_OFFSET = 4;
const INDEX_OFFSET = 8;
const START_OFFSET = 12;
const COUNT_OFFSET = 16;
/** `struct vfio_irq_info` puts `count` where `vfio_irq_set` puts `start`. */
const INFO_COUNT_OFFSET = 12;
const LITTLE_ENDIAN = true;
const S32_MIN = -0x80000000;
const S32_MAX = 0x7fffffff;

/** `struct vfio_irq_set` as decoded: header fields (u32) and the bytes that follow them. */
export interface VfioIrqSet {
  readonly argsz: number;
  readonly flags: number;
  readonly index: number;
  readonly start: number;
  readonly count: number;
  /**
   * Every byte after the header, whatever `argsz` says. The kernel copies only the payload the
   * data type and `count` need; bytes beyond are ignored, bytes missing are a fault.
   */
  readonly data: Uint8Array;
}

/** `struct vfio_irq_info`. */
export interface VfioIrqInfo {
  readonly argsz: number;
  readonly flags: number;
  readonly index: number;
  readonly count: number;
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkU32(value: number, what: string): void {
  checkRange(value, 0, U32_MAX, what);
}

/**
 * Reads a `vfio_irq_set` from `bytes` (a view, not a copy: `data` aliases `bytes`). EFAULT when
 * fewer than 20 bytes are given; every other judgement is the validator's.
 */
export function decodeIrqSet(bytes: Uint8Array): VfioIrqSet {
  check(bytes.byteLength >= VFIO_IRQ_SET_HEADER_BYTES, ErrorCode.EFAULT, () =>
    `a vfio_irq_set needs ${VFIO_IRQ_SET_HEADER_BYTES} bytes of header, got ${bytes.byteLength}`,
  );
  const view = viewOf(bytes);
  return {
    argsz: view.getUint32(ARGSZ_OFFSET, LITTLE_ENDIAN),
    flags: view.getUint32(FLAGS_OFFSET, LITTLE_ENDIAN),
    index: view.getUint32(INDEX_OFFSET, LITTLE_ENDIAN),
    start: view.getUint32(START_OFFSET, LITTLE_ENDIAN),
    count: view.getUint32(COUNT_OFFSET, LITTLE_ENDIAN),
    data: bytes.subarray(VFIO_IRQ_SET_HEADER_BYTES),
  };
}

/** The header fields of a `vfio_irq_set`; `argsz` defaults to header + payload. */
export interface IrqSetFields {
  readonly flags: number;
  readonly index: number;
  readonly start: number;
  readonly count: number;
  readonly argsz?: number;
}

/**
 * Writes a `vfio_irq_set`: the header, then `payload` verbatim. Any u32 header is accepted (so
 * tests can build requests the kernel refuses); values outside u32 throw EINVAL.
 */
export function encodeIrqSet(fields: IrqSetFields, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(VFIO_IRQ_SET_HEADER_BYTES + payload.byteLength);
  const argsz = fields.argsz ?? bytes.byteLength;
  for (const [value, what] of [
    [argsz, 'argsz'],
    [fields.flags, 'flags'],
    [fields.index, 'index'],
    [fields.start, 'start'],
    [fields.count, 'count'],
  ] as const) {
    checkU32(value, what);
  }
  const view = viewOf(bytes);
  view.setUint32(ARGSZ_OFFSET, argsz, LITTLE_ENDIAN);
  view.setUint32(FLAGS_OFFSET, fields.flags, LITTLE_ENDIAN);
  view.setUint32(INDEX_OFFSET, fields.index, LITTLE_ENDIAN);
  view.setUint32(START_OFFSET, fields.start, LITTLE_ENDIAN);
  view.setUint32(COUNT_OFFSET, fields.count, LITTLE_ENDIAN);
  bytes.set(payload, VFIO_IRQ_SET_HEADER_BYTES);
  return bytes;
}

/** DATA_NONE: `action` on sub-indexes start .. start + count - 1 (count 0 with TRIGGER disables). */
export function irqSetNone(action: number, index: number, start: number, count: number): Uint8Array {
  return encodeIrqSet({ flags: (VFIO_IRQ_SET_DATA_NONE | action) >>> 0, index, start, count });
}

/** DATA_BOOL: `action` on each sub-index from `start` whose entry is true. */
export function irqSetBools(action: number, index: number, start: number, values: readonly boolean[]): Uint8Array {
  const payload = Uint8Array.from(values, (value) => (value ? 1 : 0));
  return encodeIrqSet({ flags: (VFIO_IRQ_SET_DATA_BOOL | action) >>> 0, index, start, count: values.length }, payload);
}

/** DATA_EVENTFD: bind `action` of each sub-index from `start` to an fd (-1: de-assign or skip). */
export function irqSetEventfds(action: number, index: number, start: number, fds: readonly number[]): Uint8Array {
  const payload = new Uint8Array(fds.length * VFIO_IRQ_SET_EVENTFD_BYTES);
  const view = viewOf(payload);
  fds.forEach((fd, position) => {
    checkRange(fd, S32_MIN, S32_MAX, 'eventfd');
    view.setInt32(position * VFIO_IRQ_SET_EVENTFD_BYTES, fd, LITTLE_ENDIAN);
  });
  return encodeIrqSet({ flags: (VFIO_IRQ_SET_DATA_EVENTFD | action) >>> 0, index, start, count: fds.length }, payload);
}

/** Reads the DATA_BOOL entry of sub-index `position` (0-based from `start`). */
export function irqSetBool(set: VfioIrqSet, position: number): boolean {
  return set.data[position] !== 0;
}

/** Reads the DATA_EVENTFD entry of sub-index `position` (0-based from `start`). */
export function irqSetEventfd(set: VfioIrqSet, position: number): number {
  return viewOf(set.data).getInt32(position * VFIO_IRQ_SET_EVENTFD_BYTES, LITTLE_ENDIAN);
}

/** Reads a `vfio_irq_info`; EFAULT when fewer than 16 bytes are given (the kernel's copy of minsz faults). */
export function decodeIrqInfo(bytes: Uint8Array): VfioIrqInfo {
  check(bytes.byteLength >= VFIO_IRQ_INFO_BYTES, ErrorCode.EFAULT, () =>
    `a vfio_irq_info needs ${VFIO_IRQ_INFO_BYTES} bytes, got ${bytes.byteLength}`,
  );
  const view = viewOf(bytes);
  return {
    argsz: view.getUint32(ARGSZ_OFFSET, LITTLE_ENDIAN),
    flags: view.getUint32(FLAGS_OFFSET, LITTLE_ENDIAN),
    index: view.getUint32(INDEX_OFFSET, LITTLE_ENDIAN),
    count: view.getUint32(INFO_COUNT_OFFSET, LITTLE_ENDIAN),
  };
}

/** Writes a `vfio_irq_info` (a request carries argsz and index; the answer fills flags and count). */
export function encodeIrqInfo(info: Partial<VfioIrqInfo> & { readonly index: number }): Uint8Array {
  const fields = { argsz: VFIO_IRQ_INFO_BYTES, flags: 0, count: 0, ...info };
  for (const [value, what] of [
    [fields.argsz, 'argsz'],
    [fields.flags, 'flags'],
    [fields.index, 'index'],
    [fields.count, 'count'],
  ] as const) {
    checkU32(value, what);
  }
  const bytes = new Uint8Array(VFIO_IRQ_INFO_BYTES);
  writeIrqInfo(bytes, fields);
  return bytes;
}

/** Overwrites the 16 bytes of `vfio_irq_info` at the start of `bytes` (the kernel's copy_to_user of minsz). */
export function writeIrqInfo(bytes: Uint8Array, info: VfioIrqInfo): void {
  const view = viewOf(bytes);
  view.setUint32(ARGSZ_OFFSET, info.argsz, LITTLE_ENDIAN);
  view.setUint32(FLAGS_OFFSET, info.flags, LITTLE_ENDIAN);
  view.setUint32(INDEX_OFFSET, info.index, LITTLE_ENDIAN);
  view.setUint32(INFO_COUNT_OFFSET, info.count, LITTLE_ENDIAN);
}
