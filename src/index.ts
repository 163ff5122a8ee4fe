/**
 * irqchip: the public API that needs no native code. Names are added here as each layer lands;
 * everything not exported here is internal. The KVM backend is the separate `irqchip/kvm` subpath.
 *
 * Order follows one interrupt's journey (docs/architecture.md): base types, device events, the x86
 * controllers, routing, the chip, device-side groups, VFIO.
 */

// Base: errors, time.
export { ErrorCode, IrqChipError } from './base/errors.ts';
export { HostClock, VirtualClock, type Clock, type VirtualClockDescriptor } from './base/clock.ts';

// Events: how a device raises an interrupt and learns of the guest's EOI.
export {
  EVENT_COUNTER_MAX,
  Event,
  MemoryEvent,
  registerEventBacking,
  type EventDescriptor,
  type MemoryEventDescriptor,
  type WaitResult,
} from './event/event.ts';
export { IrqEdgeEvent, IrqLevelEvent, type IrqEdgeEventDescriptor, type IrqLevelEventDescriptor } from './event/irq-event.ts';
