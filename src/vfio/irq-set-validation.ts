/**
 * The generic SET_IRQS checks (Linux `drivers/vfio/vfio_main.c`,
 * `vfio_set_irqs_validate_and_prepare`; seed-apis.md §5.2), applied before any handler runs and
 * before anything changes. Each failure is EINVAL, in the kernel's order:
 *
 * 1. argsz below the 20-byte header, index at or above the number of index types, `count` at or
 *    above `U32_MAX - start` (the kernel's u32 overflow guard, which also refuses
 *    start = 0, count = U32_MAX), or a flag bit outside DATA_TYPE_MASK | ACTION_TYPE_MASK;
 * 2. `start` at or beyond the index's count, or `start + count` beyond it (so an index with no
 *    sub-index refuses every call, even a count-0 disable);
 * 3. the data type is not exactly one of NONE, BOOL, EVENTFD (none, or several);
 * 4. for BOOL and EVENTFD, `argsz - 20` smaller than `count` entries. A larger argsz is fine.
 *
 * The action bits are not judged here: a missing, doubled or unsupported action is the dispatcher's
 * ENOTTY (vfio-pci's `vfio_pci_set_irqs_ioctl`).
 *
 * After these checks the kernel copies the payload from the caller's memory (`memdup_user` of
 * `count` entries, vfio_pci_core.c), which faults with EFAULT when the memory is not there. A
 * `Uint8Array` has a length, so a payload that runs past the end of the given bytes is that fault:
 * EFAULT, checked last, as the copy comes after the validation. (An argsz too small for the
 * payload is the validation's EINVAL: the kernel trusts argsz, not the memory, for that check.)
 */

import { check, ErrorCode } from '../base/errors.ts';
import { isU32, U32_MAX } from '../base/integers.ts';
import {
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_BOOL_BYTES,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK,
  VFIO_IRQ_SET_EVENTFD_BYTES,
  VFIO_IRQ_SET_HEADER_BYTES,
  type VfioIrqSet,
} from './vfio-uapi.ts';

const KNOWN_FLAGS = VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK;

/** Payload bytes per sub-index for a data type, or undefined when the data bits are not exactly one type. */
function entryBytes(dataType: number): number | undefined {
  switch (dataType) {
    case VFIO_IRQ_SET_DATA_NONE:
      return 0;
    case VFIO_IRQ_SET_DATA_BOOL:
      return VFIO_IRQ_SET_BOOL_BYTES;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      return VFIO_IRQ_SET_EVENTFD_BYTES;
    default:
      return undefined;
  }
}

/**
 * Validates `set` for an index with `subIndexCount` sub-indexes, among `indexTypes` indexes.
 * Returns the payload size in bytes; throws EINVAL as the kernel does, and EFAULT when the bytes end
 * before the payload does.
 */
export function validateIrqSet(set: VfioIrqSet, subIndexCount: number, indexTypes: number): number {
  // Decoded bytes always hold u32 fields; a request built by hand might not.
  check([set.argsz, set.flags, set.index, set.start, set.count].every(isU32), ErrorCode.EINVAL, 'vfio_irq_set header fields are u32');
  check(set.argsz >= VFIO_IRQ_SET_HEADER_BYTES, ErrorCode.EINVAL, () => `argsz ${set.argsz} is below the ${VFIO_IRQ_SET_HEADER_BYTES}-byte header`);
  check(set.index < indexTypes, ErrorCode.EINVAL, () => `index ${set.index} is not below ${indexTypes}`);
  check(set.count < U32_MAX - set.start, ErrorCode.EINVAL, () => `start ${set.start} + count ${set.count} overflows u32`);
  check((set.flags & ~KNOWN_FLAGS) === 0, ErrorCode.EINVAL, () => `flags 0x${set.flags.toString(16)} has unknown bits`);
  check(set.start < subIndexCount, ErrorCode.EINVAL, () => `start ${set.start} is not below the index's ${subIndexCount} sub-indexes`);
  check(set.start + set.count <= subIndexCount, ErrorCode.EINVAL, () =>
    `start ${set.start} + count ${set.count} passes the index's ${subIndexCount} sub-indexes`,
  );
  const bytesPerEntry = entryBytes(set.flags & VFIO_IRQ_SET_DATA_TYPE_MASK);
  check(bytesPerEntry !== undefined, ErrorCode.EINVAL, 'the flags must name exactly one data type');
  const payloadBytes = set.count * bytesPerEntry;
  check(set.argsz - VFIO_IRQ_SET_HEADER_BYTES >= payloadBytes, ErrorCode.EINVAL, () =>
    `argsz ${set.argsz} leaves less than the ${payloadBytes} payload bytes ${set.count} entries need`,
  );
  check(set.data.byteLength >= payloadBytes, ErrorCode.EFAULT, () =>
    `the buffer holds ${set.data.byteLength} payload bytes, ${payloadBytes} are needed`,
  );
  return payloadBytes;
}
