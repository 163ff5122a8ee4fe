/**
 * `irqchip/kvm`: the KVM backend. Importing it loads the native addon and registers the OS
 * backing of `Event` ('eventfd'), so `Event.fromDescriptor` rebuilds eventfd descriptors on this
 * thread. The package's main entry never imports this module: the userspace parts need no native
 * code.
 */

export { addon, type IrqchipAddon, type NativePoller } from './addon.ts';
export { KVM_API_VERSION, KvmCap, KvmExit, KvmIoctl } from './kvm-abi.ts';
export { KvmKernelIrqChip, type KvmKernelIrqChipDescriptor, type KvmKernelIrqChipOptions } from './kvm-kernel-irq-chip.ts';
export { KvmSplitIrqChip, type KvmSplitIrqChipDescriptor, type KvmSplitIrqChipOptions } from './kvm-split-irq-chip.ts';
export { KvmMsiSender, MSI_REACHED_NO_LOCAL_APIC } from './kvm-msi-sender.ts';
export { KvmVcpuLoop, type KvmVcpuLoopOptions, type VcpuLoopEnd } from './vcpu-loop.ts';
export { routeApicMsrsToUserspace } from './userspace-apic-msrs.ts';
export { enterLongMode, loadGuestImage, readGuestImage, writeLongModeTables, GUEST_IMAGE_ADDRESS } from './long-mode.ts';
export { KvmLapicState } from './kvm-lapic-state.ts';
export { KvmRegs, KvmSregs, type KvmSegment } from './kvm-registers.ts';
export { KvmVcpu } from './kvm-vcpu.ts';
export { KVM_DEVICE_PATH, KvmVm, type KvmVmDescriptor, type KvmVmOptions } from './kvm-vm.ts';
export { KICK_SIGNAL, KvmError } from './linux.ts';
export { OsEvent, type OsEventDescriptor } from './os-event.ts';
export { RealVfioDevice, type VfioDeviceFiles, type VfioSystemCalls } from './real-vfio-device.ts';
export { VcpuThread, attachVcpuThread, type VcpuThreadOptions } from './vcpu-thread.ts';
export { kickThread, kickVcpuThread } from './vcpu-kick.ts';
export { VFIO_DIRECTORY, iommuGroupOf, openVfioDevice, type VfioDeviceOptions } from './vfio-container.ts';
export { kvmUnavailableReason } from './availability.ts';
export { CHIP_MODES, CHIP_MODE_CAPS, createModeChip, describeModeChip, modeChipView, modeChipCounters, type ChipDescriptor, type ChipMode, type ModeChip } from './chip-mode.ts';
export { setUpVcpu, type VcpuSetUpOptions } from './vcpu-setup.ts';
export { getVcpuCpuid, readSupportedCpuid, setVcpuCpuid, supportedCpuid, vcpuCpuidTable, type CpuidEntry } from './kvm-cpuid.ts';
export { GuestTscClock, MSR_IA32_TSC, vmTscHz, type GuestTscClockDescriptor } from './kvm-guest-tsc.ts';
export { createKvmPit, setKvmPitReinject } from './kvm-pit.ts';
