/**
 * `GuestTscClock` on real KVM: calibrated from a vCPU's TSC, its TSC (clock × tscHz) is never
 * ahead of the guest's and behind by at most its calibration window; every view shares the
 * calibration; and the host difference that makes it necessary — on PVM a KVM_SET_MSRS of
 * IA32_TSC is accepted and has no effect — is proved here. (The guest's own RDTSC against our
 * TSC-deadline timer is chip-modes.test.ts's.)
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { GuestTscClock, MSR_IA32_TSC, vmTscHz } from './kvm-guest-tsc.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';
import { isPvmHost } from './probe-machine.ts';

const skip = kvmSkipReason('the guest TSC clock on real KVM');

const NS_PER_SECOND = 1_000_000_000n;
/** How far ahead the TSC-write test moves the guest's TSC: about an hour at GHz rates. */
const TSC_JUMP = 10n ** 13n;
const READINGS = 50;
/** Where the clock keeps its offset: float64 slot 1 of its buffer. */
const OFFSET_SLOT = 1;

/** The TSC a clock's time stands for (as `LocalApic` counts it: floor(ns × Hz / 1e9)). */
function clockTsc(clock: GuestTscClock, nowNs: number): bigint {
  return (BigInt(Math.floor(nowNs)) * BigInt(clock.tscHz)) / NS_PER_SECOND;
}

describe('GuestTscClock on KVM', { skip }, () => {
  // No vCPU runs here: MSR and TSC ioctls need no worker.
  let vm: KvmVm;
  let vcpu: KvmVcpu;
  before(() => {
    vm = KvmVm.create({ memoryBytes: 0x10000 });
    vcpu = KvmVcpu.create(vm, 0);
  });
  after(() => {
    vcpu.close();
    vm.close();
  });

  test("the VM's TSC frequency is its vCPU's: KVM_GET_TSC_KHZ on the VM and on the vCPU agree", () => {
    assert.equal(vmTscHz(vm), vcpu.tscKhz() * 1000);
    assert.ok(vmTscHz(vm) > 0);
  });

  test("calibrated from a vCPU, the clock's TSC is never ahead of the vCPU's and behind it by at most the calibration window", () => {
    const clock = GuestTscClock.create(vm);
    assert.equal(clock.calibrated, false);
    clock.calibrate(vcpu);
    assert.equal(clock.calibrated, true);
    const lagBoundTicks = (BigInt(Math.ceil(clock.lagBoundNs)) * BigInt(clock.tscHz)) / NS_PER_SECOND + 1n;
    for (let reading = 0; reading < READINGS; reading++) {
      const beforeNs = clock.nowNs();
      const tsc = vcpu.getMsr(MSR_IA32_TSC);
      const afterNs = clock.nowNs();
      // The TSC was read between the two clock reads.
      assert.ok(clockTsc(clock, beforeNs) <= tsc, `clock TSC ${clockTsc(clock, beforeNs)} is not ahead of the guest's ${tsc}`);
      assert.ok(tsc <= clockTsc(clock, afterNs) + lagBoundTicks, `guest TSC ${tsc} is within ${lagBoundTicks} ticks of the clock's ${clockTsc(clock, afterNs)}`);
    }
  });

  test('every view shares the calibration and reads the same time; a second calibration changes nothing', () => {
    const clock = GuestTscClock.create(vm);
    const view = GuestTscClock.fromDescriptor(clock.descriptor());
    assert.equal(view.calibrated, false);
    clock.calibrate(vcpu);
    assert.equal(view.calibrated, true);
    assert.equal(view.lagBoundNs, clock.lagBoundNs);
    const earlier = clock.nowNs();
    const viewNow = view.nowNs();
    assert.ok(earlier <= viewNow && viewNow <= clock.nowNs(), 'the view reads the same clock');
    // The offset is float64 slot 1 of the shared buffer (the layout in kvm-guest-tsc.ts).
    const offset = new Float64Array(clock.descriptor().buffer);
    const calibrated = offset[OFFSET_SLOT];
    view.calibrate(vcpu);
    assert.equal(offset[OFFSET_SLOT], calibrated);
  });

  test("calibrate refuses a vCPU whose TSC frequency is not the clock's (EINVAL) and leaves the clock uncalibrated", () => {
    const real = GuestTscClock.create(vm).descriptor();
    const foreign = GuestTscClock.fromDescriptor({ ...real, tscHz: real.tscHz + 1000 });
    assert.throws(
      () => {
        foreign.calibrate(vcpu);
      },
      (error: unknown) => error instanceof IrqChipError && error.code === ErrorCode.EINVAL,
    );
    assert.equal(foreign.calibrated, false);
  });

  test('a descriptor that is not a guest TSC clock is refused (EINVAL)', () => {
    const real = GuestTscClock.create(vm).descriptor();
    for (const bad of [{ ...real, kind: 'virtual-clock' }, { ...real, tscHz: 0 }, { ...real, buffer: new SharedArrayBuffer(8) }]) {
      assert.throws(
        () => GuestTscClock.fromDescriptor(bad as typeof real),
        (error: unknown) => error instanceof IrqChipError && error.code === ErrorCode.EINVAL,
      );
    }
  });

  test(`KVM_SET_MSRS of IA32_TSC ${isPvmHost() ? 'is accepted and has no effect on this PVM host: the guest TSC is the host\'s (pvm_write_tsc_offset drops every offset)' : 'moves the guest TSC'}`, () => {
    const tsc = vcpu.getMsr(MSR_IA32_TSC);
    vcpu.setMsr(MSR_IA32_TSC, tsc + TSC_JUMP);
    const afterWrite = vcpu.getMsr(MSR_IA32_TSC);
    if (isPvmHost()) assert.ok(afterWrite < tsc + TSC_JUMP, `the TSC read ${afterWrite}: the write of ${tsc + TSC_JUMP} was dropped`);
    else assert.ok(afterWrite >= tsc + TSC_JUMP, `the TSC read ${afterWrite} after a write of ${tsc + TSC_JUMP}`);
  });
});
