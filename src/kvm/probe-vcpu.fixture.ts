/**
 * vCPU worker for the chip-mode tests and benchmarks: builds this thread's view of the machine's
 * chip, its buses (the chip's controllers, and the probe's report ports), and runs the irq-probe
 * guest (irq-probe.ts) in a `KvmVcpuLoop` until stopped. What the guest reports goes to the
 * machine's log (probe-machine.ts).
 */
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT, type BusDevice } from '../chip/bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { enterIrqProbe, ProbePort } from './irq-probe.ts';
import { chipView, ProbeLog, recordLog, type ProbeVcpuData } from './probe-machine.ts';
import { attachVcpuThread } from './vcpu-thread.ts';
import { KvmVcpuLoop } from './vcpu-loop.ts';
import { OsEvent } from './os-event.ts';

const attached = attachVcpuThread();
const { vcpu } = attached;
const data = attached.data as ProbeVcpuData;
const log = new Int32Array(data.log);
const view = chipView(data.chip);
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
        Atomics.add(log, ProbeLog.ApsStarted, 1);
        Atomics.notify(log, ProbeLog.ApsStarted);
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

const io = new Bus('io', IO_ADDRESS_LIMIT);
const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
view.chip.addVcpu(vcpu.id, vcpu);
view.chip.finalizeDevices(new IrqAllocator(), io, mmio);
io.insert(new ProbePorts(), ProbePort.Report, ProbePort.ApStarted - ProbePort.Report + 1);
const loop = new KvmVcpuLoop({ vcpu, chip: view.chip, io, mmio, ...(view.localApic === undefined ? {} : { localApic: view.localApic(vcpu.id) }) });
try {
  // The BSP enters the guest; the others wait for the guest's INIT and SIPI.
  if (vcpu.id === 0) enterIrqProbe(vcpu);
  const end = loop.run();
  if (end.reason === 'fatal-exit') recordLog(log, ProbeLog.FatalExit, end.exit);
} finally {
  vcpu.close();
  deviceTrigger?.close();
}
