/**
 * KVM's in-kernel PIT on this host: created after KVM's irqchip only, once per VM, and its
 * re-injection switch. What it does for a guest (ticks, re-injection against coalescing) is
 * src/vmm/devices/pit-guest.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../base/errors.ts';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { KvmIoctl } from './kvm-abi.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { createKvmPit, setKvmPitReinject } from './kvm-pit.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { KvmVm } from './kvm-vm.ts';
import { KvmError } from './linux.ts';

const skip = kvmSkipReason('KVM PIT');
const MEMORY_BYTES = 1 << 20;

function withVm(body: (vm: KvmVm) => void): void {
  const vm = KvmVm.create({ memoryBytes: MEMORY_BYTES });
  try {
    body(vm);
  } finally {
    vm.close();
  }
}

describe('KVM_CREATE_PIT2', { skip }, () => {
  test('needs KVM irqchip first: ENOENT before KVM_CREATE_IRQCHIP (this kernel), then it succeeds once; EEXIST after', () => {
    withVm((vm) => {
      assertIrqChipError(() => {
        createKvmPit(vm);
      }, ErrorCode.ENOENT);
      vm.ioctl(KvmIoctl.CREATE_IRQCHIP, 0, 'KVM_CREATE_IRQCHIP');
      createKvmPit(vm);
      assertIrqChipError(() => {
        createKvmPit(vm);
      }, ErrorCode.EEXIST);
    });
  });

  test("the kernel chip's VM has KVM's PIT already (a second is EEXIST)", () => {
    withVm((vm) => {
      KvmKernelIrqChip.create(vm, { vcpuCount: 1 });
      assertIrqChipError(() => {
        createKvmPit(vm);
      }, ErrorCode.EEXIST);
    });
  });
});

describe('KVM_REINJECT_CONTROL', { skip }, () => {
  test('switches re-injection off and on with a PIT; without one KVM answers ENXIO (a KvmError)', () => {
    withVm((vm) => {
      vm.ioctl(KvmIoctl.CREATE_IRQCHIP, 0, 'KVM_CREATE_IRQCHIP');
      assert.throws(
        () => {
          setKvmPitReinject(vm, false);
        },
        (error: unknown) => error instanceof KvmError && error.code === 'ENXIO',
      );
      createKvmPit(vm);
      setKvmPitReinject(vm, false);
      setKvmPitReinject(vm, true);
    });
  });
});
