/**
 * An in-kernel local APIC's registers as KVM_GET_LAPIC / KVM_SET_LAPIC carry them: struct
 * kvm_lapic_state, the 1 KiB xAPIC register page (layout in kvm-abi.ts), each register a u32 at
 * its xAPIC offset (register number × 16; SDM vol. 3 §11.4.1, Table 11-1). A register number is
 * an `ApicRegister` (apic-registers.ts), so one name serves our model and KVM's.
 *
 * These are vCPU ioctls: call them on the vCPU's thread, or while it is not in KVM_RUN.
 */

import { ApicRegister, XAPIC_REGISTER_STRIDE } from '../x86/lapic/apic-registers.ts';
import { KVM_LAPIC_STATE_BYTES, KvmIoctl } from './kvm-abi.ts';
import type { KvmVcpu } from './kvm-vcpu.ts';

/** Vectors per 32-bit register of the ISR, TMR and IRR banks. */
const VECTORS_PER_REGISTER = 32;

export class KvmLapicState {
  readonly bytes = new Uint8Array(KVM_LAPIC_STATE_BYTES);
  private readonly view = new DataView(this.bytes.buffer);

  /** KVM_GET_LAPIC. */
  static read(vcpu: KvmVcpu): KvmLapicState {
    const state = new KvmLapicState();
    vcpu.ioctl(KvmIoctl.GET_LAPIC, state.bytes, 'KVM_GET_LAPIC');
    return state;
  }

  /** KVM_SET_LAPIC with these bytes. */
  write(vcpu: KvmVcpu): void {
    vcpu.ioctl(KvmIoctl.SET_LAPIC, this.bytes, 'KVM_SET_LAPIC');
  }

  /** The register `register` (an `ApicRegister` number). */
  register(register: number): number {
    return this.view.getUint32(register * XAPIC_REGISTER_STRIDE, true);
  }

  setRegister(register: number, value: number): void {
    this.view.setUint32(register * XAPIC_REGISTER_STRIDE, value >>> 0, true);
  }

  /** Whether `vector`'s bit is set in the bank starting at `firstRegister` (ISR, TMR or IRR). */
  private bankBit(firstRegister: number, vector: number): boolean {
    const word = this.register(firstRegister + Math.floor(vector / VECTORS_PER_REGISTER));
    return ((word >>> (vector % VECTORS_PER_REGISTER)) & 1) !== 0;
  }

  irr(vector: number): boolean {
    return this.bankBit(ApicRegister.InterruptRequestFirst, vector);
  }

  isr(vector: number): boolean {
    return this.bankBit(ApicRegister.InServiceFirst, vector);
  }

  tmr(vector: number): boolean {
    return this.bankBit(ApicRegister.TriggerModeFirst, vector);
  }
}
