/**
 * vCPU worker for the chip-mode tests and benchmarks: sets up its vCPU (CPUID; with our local
 * APICs, their clock on the guest's TSC), builds this thread's view of the machine's chip, its
 * buses (the chip's controllers, and the probe's report ports), and, once the machine says every
 * vCPU is set up, runs the irq-probe guest (irq-probe.ts) in a `KvmVcpuLoop` until stopped. What
 * the guest reports goes to the machine's log (probe-machine.ts).
 */
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT, type BusDevice } from '../chip/bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { enterIrqProbe, ProbePort } from './irq-probe.ts';
import { GuestTscClock } from './kvm-guest-tsc.ts';
import { modeChipView } from './chip-mode.ts';
import { ProbeLog, recordLog, type ProbeVcpuData } from './probe-machine.ts';
import { setUpVcpu } from './vcpu-setup.ts';
import { attachVcpuThread } from './vcpu-thread.ts';
import { KvmVcpuLoop } from './vcpu-loop.ts';
import { OsEvent } from './os-event.ts';

/** How long the vCPU sleeps at a time while it waits for the start, looking for a stop between. */
const START_WAIT_MS = 100;
/** Application processors whose IDs the log's ApIdsStarted mask has room for. */
const AP_ID_MASK_BITS = 32;

const attached = attachVcpuThread();
const { vcpu } = attached;
const data = attached.data as ProbeVcpuData;
const log = new Int32Array(data.log);
const clock = data.guestTsc === undefined ? undefined : GuestTscClock.fromDescriptor(data.guestTsc);
const view = modeChipView(data.chip, clock);
const deviceTrigger = data.deviceTrigger === undefined ? undefined : OsEvent.fromDescriptor(data.deviceTrigger);

/** The guest's report ports: counts per vector; optionally the benchmark's device, re-signalling at each report. */
class ProbePorts implements BusDevice {
  readonly busName = 'irq-probe';
  read(): number {
    return 0;
  }
  write(offset: number, _size: number, value: number): void {
    switch (offset + ProbePort.Report) {
      case ProbePort.Report:
        this.report(value & 0xff);
        return;
      case ProbePort.Ready:
        recordLog(log, ProbeLog.Ready, 1);
        return;
      case ProbePort.Fatal:
        recordLog(log, ProbeLog.GuestException, value + 1);
        loop.endRequested = true;
        return;
      case ProbePort.ApStarted:
        // The byte is the AP's x2APIC ID: the ID mask first, so a waiter on the count sees it.
        if (value < AP_ID_MASK_BITS) Atomics.or(log, ProbeLog.ApIdsStarted, 1 << value);
        Atomics.add(log, ProbeLog.ApsStarted, 1);
        Atomics.notify(log, ProbeLog.ApsStarted);
        return;
      case ProbePort.StartupSent:
        recordLog(log, ProbeLog.StartupSent, 1);
        return;
    }
  }
  private report(vector: number): void {
    Atomics.add(log, ProbeLog.VectorCounts + vector, 1);
    const total = Atomics.add(log, ProbeLog.Total, 1) + 1;
    if (deviceTrigger === undefined) {
      Atomics.notify(log, ProbeLog.VectorCounts + vector);
      Atomics.notify(log, ProbeLog.Total);
      return;
    }
    // The benchmark's device: signal again until the target, notify only at the end.
    if (total < Atomics.load(log, ProbeLog.DeviceTarget)) deviceTrigger.signal();
    else recordLog(log, ProbeLog.DeviceDone, total);
  }
}

/** Counts this vCPU as set up, then sleeps until the machine starts every vCPU (or stops this one). */
function waitForStart(): void {
  Atomics.add(log, ProbeLog.VcpusSetUp, 1);
  Atomics.notify(log, ProbeLog.VcpusSetUp);
  while (Atomics.load(log, ProbeLog.Start) === 0 && !vcpu.stopRequested) Atomics.wait(log, ProbeLog.Start, 0, START_WAIT_MS);
}

const io = new Bus('io', IO_ADDRESS_LIMIT);
const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
view.chip.addVcpu(vcpu.id, vcpu);
view.chip.finalizeDevices(new IrqAllocator(), io, mmio);
io.insert(new ProbePorts(), ProbePort.Report, ProbePort.StartupSent - ProbePort.Report + 1);
const loop = new KvmVcpuLoop({ vcpu, chip: view.chip, io, mmio, ...(view.localApic === undefined ? {} : { localApic: view.localApic(vcpu.id) }), ...(clock === undefined ? {} : { clock }) });
try {
  setUpVcpu(vcpu, { vcpuCount: data.vcpuCount, ...(clock === undefined ? {} : { userspaceLocalApic: { clock } }) });
  // The BSP enters the guest; the others wait for the guest's INIT and SIPI.
  if (vcpu.id === 0) enterIrqProbe(vcpu);
  waitForStart();
  const end = loop.run();
  if (end.reason === 'fatal-exit') recordLog(log, ProbeLog.FatalExit, end.exit);
} finally {
  vcpu.close();
  deviceTrigger?.close();
}
