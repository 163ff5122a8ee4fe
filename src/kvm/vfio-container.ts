/**
 * Opening a PCI device bound to vfio-pci through the container/group interface (Linux
 * Documentation/driver-api/vfio.rst, "VFIO Usage Example"; uapi in vfio-uapi.ts):
 *
 * 1. open /dev/vfio/vfio (the container); VFIO_GET_API_VERSION must be VFIO_API_VERSION (0), and
 *    VFIO_CHECK_EXTENSION must report an IOMMU type: Type1v2, else Type1;
 * 2. open /dev/vfio/<group> (the device's IOMMU group); VFIO_GROUP_GET_STATUS must say VIABLE
 *    (every device of the group is bound to vfio-pci or to nothing);
 * 3. VFIO_GROUP_SET_CONTAINER, then VFIO_SET_IOMMU (the container needs a group before an IOMMU);
 * 4. VFIO_GROUP_GET_DEVICE_FD with the device's PCI address.
 *
 * A failed step throws (the kernel's errno through linux.ts; ENODEV for an unviable group or a
 * container with no Type1 IOMMU, EINVAL for a wrong API version) and closes what was opened.
 * DMA mappings are not made: interrupts need none.
 */

import { readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { check as checkCondition, checkRange, ErrorCode, IrqChipError } from '../base/errors.ts';
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_STATUS_BYTES,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
} from '../vfio/vfio-uapi.ts';
import { addon } from './addon.ts';
import { check, O_CLOEXEC, O_RDWR } from './linux.ts';
import { RealVfioDevice, type VfioSystemCalls } from './real-vfio-device.ts';

export const VFIO_DIRECTORY = '/dev/vfio';
/** The container node's name in the VFIO directory. */
const CONTAINER_NODE = 'vfio';
/** IOMMU types in order of preference: v2 fixes Type1's unmap semantics. */
const IOMMU_TYPES = [VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU] as const;
/** A PCI address as the kernel names the device: domain:bus:slot.function, lower-case hex. */
const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/;
const GROUP_FLAGS_OFFSET = 4;
const LITTLE_ENDIAN = true;

export interface VfioDeviceOptions {
  /** The device's PCI address, e.g. '0000:00:04.0'. */
  readonly device: string;
  /** Its IOMMU group number; by default read from /sys/bus/pci/devices/<device>/iommu_group. */
  readonly group?: number;
  /** Where the VFIO nodes are (default /dev/vfio). */
  readonly vfioDirectory?: string;
  /** The system calls (default: the addon's). */
  readonly system?: VfioSystemCalls;
}

/** The IOMMU group of a PCI device, from the sysfs link the kernel maintains. */
export function iommuGroupOf(device: string): number {
  checkPciAddress(device);
  const link = `/sys/bus/pci/devices/${device}/iommu_group`;
  let target: string;
  try {
    target = readlinkSync(link);
  } catch (error) {
    throw new IrqChipError(ErrorCode.ENOENT, `${device} has no IOMMU group (${link}: ${(error as Error).message})`);
  }
  return Number(basename(target));
}

/** Opens `options.device` through its group and a new container; the result owns all three files. */
export function openVfioDevice(options: VfioDeviceOptions): RealVfioDevice {
  checkPciAddress(options.device);
  const group = options.group ?? iommuGroupOf(options.device);
  checkRange(group, 0, Number.MAX_SAFE_INTEGER, 'IOMMU group');
  const system = options.system ?? addon;
  const directory = options.vfioDirectory ?? VFIO_DIRECTORY;
  const opened: number[] = [];
  try {
    const openNode = (path: string): number => {
      const fd = check(system.open(path, O_RDWR | O_CLOEXEC), `open ${path}`);
      opened.push(fd);
      return fd;
    };
    const container = openNode(`${directory}/${CONTAINER_NODE}`);
    const iommuType = checkContainer(system, container);
    const groupFd = openNode(`${directory}/${group}`);
    checkGroupViable(system, groupFd, group);
    check(system.ioctl(groupFd, VFIO_GROUP_SET_CONTAINER, Int32Array.of(container)), 'VFIO_GROUP_SET_CONTAINER');
    check(system.ioctl(container, VFIO_SET_IOMMU, iommuType), 'VFIO_SET_IOMMU');
    const name = new TextEncoder().encode(`${options.device}\0`);
    const device = check(system.ioctl(groupFd, VFIO_GROUP_GET_DEVICE_FD, name), `VFIO_GROUP_GET_DEVICE_FD ${options.device}`);
    opened.push(device);
    return new RealVfioDevice({ container, group: groupFd, device }, system);
  } catch (error) {
    for (const fd of opened.reverse()) system.close(fd);
    throw error;
  }
}

function checkPciAddress(device: string): void {
  checkCondition(PCI_ADDRESS.test(device), ErrorCode.EINVAL, () => `'${device}' is not a PCI address (dddd:bb:ss.f, lower-case hex)`);
}

/** The container speaks this uapi's version and has a Type1 IOMMU: returns the IOMMU type to set. */
function checkContainer(system: VfioSystemCalls, container: number): number {
  const version = check(system.ioctl(container, VFIO_GET_API_VERSION), 'VFIO_GET_API_VERSION');
  checkCondition(version === VFIO_API_VERSION, ErrorCode.EINVAL, () => `VFIO API version ${version}, expected ${VFIO_API_VERSION}`);
  const supported = IOMMU_TYPES.find((type) => check(system.ioctl(container, VFIO_CHECK_EXTENSION, type), 'VFIO_CHECK_EXTENSION') > 0);
  if (supported === undefined) throw new IrqChipError(ErrorCode.ENODEV, 'the VFIO container offers no Type1 IOMMU');
  return supported;
}

function checkGroupViable(system: VfioSystemCalls, groupFd: number, group: number): void {
  const status = new Uint8Array(VFIO_GROUP_STATUS_BYTES);
  const view = new DataView(status.buffer);
  view.setUint32(0, VFIO_GROUP_STATUS_BYTES, LITTLE_ENDIAN);
  check(system.ioctl(groupFd, VFIO_GROUP_GET_STATUS, status), 'VFIO_GROUP_GET_STATUS');
  checkCondition((view.getUint32(GROUP_FLAGS_OFFSET, LITTLE_ENDIAN) & VFIO_GROUP_FLAGS_VIABLE) !== 0, ErrorCode.ENODEV, () =>
    `IOMMU group ${group} is not viable: bind every device in it to vfio-pci (or unbind it)`,
  );
}
