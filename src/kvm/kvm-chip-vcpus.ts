/**
 * The vCPUs a KVM chip was given with `addVcpu`, on one thread. A KVM chip reaches a vCPU only
 * through vCPU ioctls (KVM_GET/SET_MP_STATE, KVM_INTERRUPT), which belong to the vCPU's own thread
 * (a vCPU ioctl waits while that vCPU is in KVM_RUN), so each chip view keeps the vCPUs added on
 * its thread.
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import type { Vcpu } from '../chip/vcpu.ts';
import { KvmVcpu } from './kvm-vcpu.ts';

export class KvmChipVcpus {
  private readonly added = new Map<number, KvmVcpu>();

  constructor(
    private readonly chipName: string,
    readonly count: number,
  ) {}

  /** ENOENT unless `vcpuId` is one of the chip's vCPU ids. */
  checkId(vcpuId: number): void {
    if (!Number.isInteger(vcpuId) || vcpuId < 0 || vcpuId >= this.count) {
      throw new IrqChipError(ErrorCode.ENOENT, `no vCPU ${String(vcpuId)} in a chip of ${this.count}`);
    }
  }

  /** Keeps `vcpu` as vCPU `vcpuId`: it must be a `KvmVcpu` with that id (EINVAL), and the id the chip's (ENOENT). */
  add(vcpuId: number, vcpu: Vcpu): KvmVcpu {
    this.checkId(vcpuId);
    if (!(vcpu instanceof KvmVcpu)) throw new IrqChipError(ErrorCode.EINVAL, `${this.chipName} takes KvmVcpu vCPUs (its MP state is a KVM vCPU ioctl)`);
    if (vcpu.id !== vcpuId) throw new IrqChipError(ErrorCode.EINVAL, `vCPU ${vcpu.id} added as vCPU ${vcpuId}`);
    this.added.set(vcpuId, vcpu);
    return vcpu;
  }

  /** Whether vCPU `vcpuId` was added on this thread. */
  has(vcpuId: number): boolean {
    return this.added.has(vcpuId);
  }

  /** The vCPU added as `vcpuId` on this thread; ENOENT if there is none. */
  get(vcpuId: number): KvmVcpu {
    this.checkId(vcpuId);
    const vcpu = this.added.get(vcpuId);
    if (vcpu === undefined) throw new IrqChipError(ErrorCode.ENOENT, `vCPU ${vcpuId} was not added to this chip on this thread`);
    return vcpu;
  }
}
