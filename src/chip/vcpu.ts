/**
 * What a chip injects into: one virtual CPU (crosvm `hypervisor::Vcpu`, the parts an irqchip uses).
 *
 * A KVM vCPU implements it with KVM_INTERRUPT, KVM_NMI and `request_interrupt_window`; `SimVcpu`
 * implements it in software for tests and demonstrations.
 */

import type { SipiStart } from '../x86/lapic/local-apic.ts';

export interface Vcpu {
  /** The vCPU index: also its local APIC's bus index. */
  readonly id: number;
  /** Whether the vCPU can take an external interrupt now (RFLAGS.IF = 1, no interrupt shadow, window open). */
  readyForInterrupt(): boolean;
  /** Delivers an external interrupt with this vector (KVM_INTERRUPT). Only when `readyForInterrupt()`. */
  interrupt(vector: number): void;
  /** Delivers an NMI (KVM_NMI). */
  injectNmi(): void;
  /** Asks for an exit as soon as the vCPU can take an interrupt (kvm_run.request_interrupt_window). */
  setInterruptWindowRequested(requested: boolean): void;
  /** INIT: reset the processor's registers to their INIT state (SDM vol. 3 §9.1.1). */
  applyInit(): void;
  /** SIPI: start executing in real mode at this address. */
  applySipi(start: SipiStart): void;
}
