/**
 * Whether KVM can be used here: tests and benchmarks that need it skip, saying why, where it
 * cannot (a machine without /dev/kvm, or without permission to open it).
 */

import { addon } from './addon.ts';
import { KVM_DEVICE_PATH } from './kvm-vm.ts';
import { O_CLOEXEC, O_RDWR, errnoName } from './linux.ts';

/** undefined when /dev/kvm opens read-write; otherwise why it does not. */
export function kvmUnavailableReason(): string | undefined {
  const fd = addon.open(KVM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
  if (fd < 0) return `cannot open ${KVM_DEVICE_PATH}: ${errnoName(-fd)}`;
  addon.close(fd);
  return undefined;
}
