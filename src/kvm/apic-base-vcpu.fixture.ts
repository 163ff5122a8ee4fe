/**
 * vCPU worker of the apic-base tests (apic-base-guest.ts): this thread's view of the chip, its
 * buses (the chip's controllers and the guest's report ports), its CPUID (KVM's supported set with
 * x2APIC: kvm-cpuid.ts), and the apic-base guest in a `KvmVcpuLoop` until it writes isa-debug-exit. Then the thread's MMIO bus counters and MMIO exits
 * go to the log, and Done.
 */
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT, type BusDevice } from '../chip/bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { ApicBaseLog, GUEST_DEBUG_EXIT_PORT, type ApicBaseVcpuData } from './apic-base-guest.ts';
import { modeChipView } from './chip-mode.ts';
import { setVcpuCpuid, supportedCpuid, vcpuCpuidTable } from './kvm-cpuid.ts';
import { ProbePort } from './irq-probe.ts';
import { KvmExit } from './kvm-abi.ts';
import { GUEST_IMAGE_ADDRESS, enterLongMode } from './long-mode.ts';
import { recordLog } from './probe-machine.ts';
import { attachVcpuThread } from './vcpu-thread.ts';
import { KvmVcpuLoop } from './vcpu-loop.ts';

const attached = attachVcpuThread();
const { vcpu } = attached;
const data = attached.data as ApicBaseVcpuData;
const log = new Int32Array(data.log);
const view = modeChipView(data.chip);

/** PORT_REPORT and PORT_FATAL of guests/lib/runtime.h. */
class ReportPorts implements BusDevice {
  readonly busName = 'guest-reports';
  read(): number {
    return 0;
  }
  write(offset: number, _size: number, value: number): void {
    if (offset + ProbePort.Report === ProbePort.Report) {
      Atomics.add(log, ApicBaseLog.InterruptReports, 1);
    } else if (offset + ProbePort.Report === ProbePort.Fatal) {
      Atomics.store(log, ApicBaseLog.GuestException, value + 1);
      loop.endRequested = true;
    }
  }
}

/** isa-debug-exit: the guest's verdict ends the run. */
class DebugExitPort implements BusDevice {
  readonly busName = 'isa-debug-exit';
  read(): number {
    return 0xffffffff;
  }
  write(_offset: number, _size: number, value: number): void {
    Atomics.store(log, ApicBaseLog.DebugExit, value);
    loop.endRequested = true;
  }
}

const io = new Bus('io', IO_ADDRESS_LIMIT);
const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
view.chip.addVcpu(vcpu.id, vcpu);
view.chip.finalizeDevices(new IrqAllocator(), io, mmio);
io.insert(new ReportPorts(), ProbePort.Report, ProbePort.Fatal - ProbePort.Report + 1);
io.insert(new DebugExitPort(), GUEST_DEBUG_EXIT_PORT, Uint32Array.BYTES_PER_ELEMENT);
Atomics.store(log, ApicBaseLog.DebugExit, -1);
const loop = new KvmVcpuLoop({ vcpu, chip: view.chip, io, mmio, ...(view.localApic === undefined ? {} : { localApic: view.localApic(vcpu.id) }) });
try {
  // The guest uses no timer, so our local APIC's clock needs no calibration to the guest's TSC.
  setVcpuCpuid(vcpu, vcpuCpuidTable(supportedCpuid(), { vcpuId: vcpu.id, vcpuCount: 1, userspaceLocalApic: view.localApic !== undefined }));
  enterLongMode(vcpu, GUEST_IMAGE_ADDRESS);
  const end = loop.run();
  if (end.reason === 'fatal-exit') Atomics.store(log, ApicBaseLog.FatalExit, end.exit);
  const { unclaimedReads, unclaimedWrites } = mmio.counters();
  Atomics.store(log, ApicBaseLog.UnclaimedReads, unclaimedReads);
  Atomics.store(log, ApicBaseLog.UnclaimedWrites, unclaimedWrites);
  Atomics.store(log, ApicBaseLog.MmioExits, loop.exitCounts.get(KvmExit.MMIO) ?? 0);
  recordLog(log, ApicBaseLog.Done, 1);
} finally {
  vcpu.close();
}
