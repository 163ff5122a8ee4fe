/**
 * struct kvm_irq_routing, the argument of KVM_SET_GSI_ROUTING, built from `IrqRoute`s (layout in
 * kvm-abi.ts). KVM has no per-entry call: every change pushes the whole table.
 */

import { highHalf, lowHalf } from '../base/integers.ts';
import { kvmIrqchipId, type IrqRoute } from '../routing/irq-route.ts';
import { KVM_IRQ_ROUTING_ENTRY_BYTES, KVM_IRQ_ROUTING_ENTRY_UNION, KVM_IRQ_ROUTING_HEADER_BYTES, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI } from './kvm-abi.ts';

/** The routing table as KVM_SET_GSI_ROUTING takes it: a header and one 48-byte entry per route. */
export function encodeKvmRouting(routes: readonly IrqRoute[]): DataView {
  const bytes = new DataView(new ArrayBuffer(KVM_IRQ_ROUTING_HEADER_BYTES + routes.length * KVM_IRQ_ROUTING_ENTRY_BYTES));
  bytes.setUint32(0, routes.length, true);
  routes.forEach((route, index) => {
    const entry = KVM_IRQ_ROUTING_HEADER_BYTES + index * KVM_IRQ_ROUTING_ENTRY_BYTES;
    const union = entry + KVM_IRQ_ROUTING_ENTRY_UNION;
    bytes.setUint32(entry, route.gsi, true);
    const { source } = route;
    if (source.kind === 'msi') {
      bytes.setUint32(entry + 4, KVM_IRQ_ROUTING_MSI, true);
      bytes.setUint32(union, lowHalf(source.address), true);
      bytes.setUint32(union + 4, highHalf(source.address), true);
      bytes.setUint32(union + 8, source.data, true);
    } else {
      bytes.setUint32(entry + 4, KVM_IRQ_ROUTING_IRQCHIP, true);
      bytes.setUint32(union, kvmIrqchipId(source.chip), true);
      bytes.setUint32(union + 4, source.pin, true);
    }
  });
  return bytes;
}
