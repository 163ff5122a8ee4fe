/**
 * irqchip: the public API that needs no native code. Names are added here as each layer lands;
 * everything not exported here is internal. The KVM backend is the separate `irqchip/kvm` subpath.
 *
 * Order follows one interrupt's journey (docs/architecture.md): base types, device events, the x86
 * controllers, routing, the chip, device-side groups, VFIO. The chip's cross-thread views use Node's
 * worker_threads; everything else runs wherever SharedArrayBuffer does.
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

// The x86 controllers: the message they exchange, the 8259A pair, the IOAPIC, the local APICs
// and the bus between them, and the MSI format.
export {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  TriggerMode,
  X2APIC_BROADCAST,
  XAPIC_BROADCAST,
  interruptMessage,
  type EoiBroadcastListener,
  type ExtIntController,
  type InterruptMessage,
  type InterruptMessageSink,
} from './x86/interrupt-message.ts';
export {
  PIC_IRQS,
  PicChip,
  PicPair,
  PicPort,
  type PicAckListener,
  type PicChipRegisters,
  type PicCounterName,
  type PicMaskListener,
  type PicOutputListener,
  type PicPairDescriptor,
} from './x86/pic/pic.ts';
export { initialisePicPair, type PicPairInitialisation } from './x86/pic/pic-init.ts';
export {
  IOAPIC_DEFAULT_BASE_ADDRESS,
  IOAPIC_PIN_COUNT,
  IOAPIC_RTC_PIN,
  IOAPIC_STORM_DELAY_NS,
  IOAPIC_STORM_EOI_THRESHOLD,
  IOAPIC_WINDOW_BYTES,
  Ioapic,
  IoapicMmioOffset,
  IoapicRegisterIndex,
  IoapicVersion,
  type IoapicCounter,
  type IoapicDescriptor,
  type IoapicOptions,
  type IoapicViewOptions,
  type RedirectionEntryHalves,
  type ResampleListener,
} from './x86/ioapic/ioapic.ts';
export {
  LocalApic,
  MpState,
  NO_INTERRUPT,
  type DoorbellWaitResult,
  type InitSipiOutcome,
  type LocalApicDescriptor,
  type LocalApicOptions,
  type LocalApicWiring,
  type LocalInterruptSource,
  type MsrReadResult,
  type SipiStart,
} from './x86/lapic/local-apic.ts';
export type { ApicBusMember } from './x86/lapic/apic-bus-member.ts';
export { ApicBus, MAX_BUS_INDEX, type ApicBusCounters, type ApicBusDescriptor, type ApicBusOptions } from './x86/lapic/apic-bus.ts';
export {
  MSI_ADDRESS_WINDOW,
  decodeMsi,
  encodeMsi,
  isInterruptAddress,
  type EncodedMsi,
  type MsiDestinationFormat,
  type MsiFields,
} from './x86/msi/msi-codec.ts';

// Routing: GSIs to controller pins or MSI messages.
export {
  IrqSourceChip,
  MAX_GSI_COUNT,
  PIC_PINS_PER_CHIP,
  defaultIrqRoutes,
  ioapicIrqRoute,
  isaIrqOfPicPin,
  msiIrqRoute,
  picIrqRoute,
  type IrqRoute,
  type IrqSource,
} from './routing/irq-route.ts';
export { GsiRoutingTable } from './routing/gsi-routing-table.ts';
export { SharedRoutingTable, type SharedRoutingTableDescriptor } from './routing/shared-routing-table.ts';

// The chip: one per VM, between devices and vCPUs.
export type { IrqChip, IrqEventToken } from './chip/irq-chip.ts';
export type { IrqChipCap, IrqEventIndex, IrqEventSource, MPState, VcpuRunState } from './chip/types.ts';
export type { Vcpu } from './chip/vcpu.ts';
export {
  CHIP_COUNTER_NAMES,
  MAX_VCPUS,
  UserspaceIrqChip,
  type ChipCounterName,
  type UserspaceIrqChipDescriptor,
  type UserspaceIrqChipOptions,
} from './chip/userspace-irq-chip.ts';
export { SimVcpu, type SimGuest, type SimInterruptHandler, type SimVcpuOptions } from './chip/sim-vcpu.ts';
export { FIRST_ALLOCATABLE_IRQ, IrqAllocator, LAST_ALLOCATABLE_IRQ } from './chip/irq-allocator.ts';
export { LOCAL_APIC_WINDOW_BASE, LOCAL_APIC_WINDOW_BYTES, PIC_PORT_RANGES } from './chip/chip-bus-devices.ts';
export { Bus, type BusAccessor, type BusDevice } from './chip/bus.ts';

// Device side: what a device model sees.
export {
  InterruptSourceType,
  type InterruptIndex,
  type InterruptSourceConfig,
  type InterruptSourceGroup,
  type LegacyIrqSourceConfig,
  type MsiIrqSourceConfig,
} from './device/interrupt-source.ts';
export {
  InterruptManager,
  MAX_MSI_GROUP_SOURCES,
  type InterruptManagerCounters,
  type InterruptManagerOptions,
} from './device/interrupt-manager.ts';
export { ChipInterruptGroup } from './device/chip-interrupt-group.ts';
export { InterruptTrigger, type InterruptTriggerDescriptor } from './device/interrupt-trigger.ts';
export { DEFAULT_DEVICE_GSI_BUDGET, DeviceGsiBudget, type GsiSource } from './device/gsi-budget.ts';
export type { DeviceInterruptChip } from './device/device-chip.ts';
export { GUEST_ACCESS_COUNTER_NAMES, type GuestAccessCounterName, type MessageVectorGroup } from './device/pci-capability.ts';
export { IrqFdRouteFactory, type IrqFdRoute, type IrqFdRouteFactoryOptions } from './device/irqfd-route.ts';
export {
  MSIX_CAPABILITY_BYTES,
  MSIX_CAPABILITY_ID,
  MSIX_COUNTER_NAMES,
  MSIX_ENABLE,
  MSIX_FUNCTION_MASK,
  MSIX_MAX_VECTORS,
  MSIX_TABLE_ENTRY_BYTES,
  MsixCapability,
  type MsixCapabilityOptions,
  type MsixCounterName,
  type MsixStructureLocation,
} from './device/msix-capability.ts';

// VFIO: vfio_irq_set as Linux defines it, and vfio-pci's rules for applying it.
export * from './vfio/vfio-uapi.ts';
export { VfioFdTable } from './vfio/vfio-fd-table.ts';
export { VfioIrqs, VfioVectorShortageError, type VfioIrqsConfig, type VfioIrqsState } from './vfio/vfio-irqs.ts';
export { irqInfoOf, type VfioIrqDevice } from './vfio/vfio-irq-device.ts';
export {
  VFIO_PCI_COUNTER_NAMES,
  VfioPciInterrupts,
  type VfioInterruptChip,
  type VfioPciCounterName,
  type VfioPciInterruptsOptions,
} from './vfio/vfio-pci-interrupts.ts';
export { MSI_CAPABILITY_BYTES, MSI_CAPABILITY_ID, MSI_COUNTER_NAMES, MSI_ENABLE, MSI_MAX_VECTORS, MSI_MME_SHIFT, MsiCapability, type MsiCapabilityOptions, type MsiCounterName } from './device/msi-capability.ts';
export { VfioVectorGroup, type VectorGroupHost } from './vfio/vfio-vector-group.ts';
