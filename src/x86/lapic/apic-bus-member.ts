/**
 * What the APIC bus needs of each local APIC to route a message: its identity and destination
 * registers for matching (SDM vol. 3 §11.6.2), its priority for lowest-priority arbitration
 * (§11.6.2.4), and `accept` (x86-controllers.md §3.5). `LocalApic` implements it; tests of the bus
 * may use small fakes.
 */
import type { InterruptMessage } from '../interrupt-message.ts';

export interface ApicBusMember {
  /** Position on the bus: the vCPU index, fixed for the APIC's life. */
  readonly busIndex: number;
  /** IA32_APIC_BASE.EN: an APIC with EN = 0 is off the bus and matches nothing. */
  isHardwareEnabled(): boolean;
  /** SVR bit 8. A software-disabled APIC still matches, but drops fixed and lowest-priority messages. */
  isSoftwareEnabled(): boolean;
  isX2apicMode(): boolean;
  /** Physical APIC ID: ID[31:24] in xAPIC mode, the 32-bit x2APIC ID in x2APIC mode. */
  apicId(): number;
  /** The x2APIC ID this APIC has or would have (its vCPU id), for KVM's hotplug matching rule (§3.8). */
  x2apicId(): number;
  /** Raw LDR register value (xAPIC: bits 31:24 meaningful; x2APIC: the derived 32-bit value). */
  logicalDestination(): number;
  /** Raw DFR register value (xAPIC: model in bits 31:28; x2APIC: reads as cluster model). */
  destinationFormat(): number;
  /** Current PPR (SDM §11.8.3.1). */
  processorPriority(): number;
  /**
   * Accepts a message whose destination matched this APIC. Returns 1 when it was taken, 0 when
   * it coalesced with an already-pending one, -1 when dropped (software-disabled, level de-assert).
   */
  accept(message: InterruptMessage): number;
}
