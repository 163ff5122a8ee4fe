/**
 * One vCPU of `irqchip run`, in its own worker: builds this thread's view of the chip and its
 * buses — the chip's controllers served here, every VMM device range forwarded to the device
 * thread through the mailbox (device-mailbox.ts) — sets the vCPU up (CPUID; with our local APIC,
 * its clock on the guest's TSC), waits at the machine's start gate until every vCPU is set up,
 * and runs the vCPU in a `KvmVcpuLoop` until the machine stops it or it ends on its own. The
 * bootstrap processor starts at the loaded image's entry; the others wait for the guest's INIT
 * and SIPI.
 */

import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../chip/bus.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { modeChipView } from '../kvm/chip-mode.ts';
import { GuestTscClock } from '../kvm/kvm-guest-tsc.ts';
import { setUpVcpu } from '../kvm/vcpu-setup.ts';
import { attachVcpuThread } from '../kvm/vcpu-thread.ts';
import { KvmVcpuLoop } from '../kvm/vcpu-loop.ts';
import { ForwardedRange, MailboxBus } from './device-mailbox.ts';
import type { MachineVcpuData } from './machine-vcpu-data.ts';
import { VcpuEnd, recordVcpuEnd, waitAtStartGate, type VcpuLoopCounts } from './vcpu-status.ts';
import { startBootProcessor } from './loader/boot-processor.ts';

const { vcpu, data: untyped } = attachVcpuThread();
const data = untyped as MachineVcpuData;
let loopCounts: VcpuLoopCounts = { exitCounts: new Map(), oddSizedMmioAccesses: 0 };
try {
  const clock = data.guestTsc === undefined ? undefined : GuestTscClock.fromDescriptor(data.guestTsc);
  setUpVcpu(vcpu, { vcpuCount: data.vcpuCount, ...(clock === undefined ? {} : { userspaceLocalApic: { clock } }) });
  const view = modeChipView(data.chip, clock);
  const io = new Bus('io', IO_ADDRESS_LIMIT);
  const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
  view.chip.addVcpu(vcpu.id, vcpu);
  view.chip.finalizeDevices(new IrqAllocator(), io, mmio);
  for (const range of data.forwarded.io) io.insert(new ForwardedRange(data.mailbox, vcpu.id, MailboxBus.Io, range.base, range.name), range.base, range.length);
  for (const range of data.forwarded.mmio) mmio.insert(new ForwardedRange(data.mailbox, vcpu.id, MailboxBus.Mmio, range.base, range.name), range.base, range.length);
  const loop = new KvmVcpuLoop({
    vcpu,
    chip: view.chip,
    io,
    mmio,
    ...(view.localApic === undefined ? {} : { localApic: view.localApic(vcpu.id) }),
    ...(clock === undefined ? {} : { clock }),
  });
  loopCounts = loop;
  if (data.boot !== undefined) startBootProcessor(vcpu, data.boot);
  waitAtStartGate(data.status, () => vcpu.stopRequested);
  const end = loop.run();
  if (end.reason === 'fatal-exit') recordVcpuEnd(data.status, vcpu.id, VcpuEnd.FatalExit, end.exit, loopCounts);
  else recordVcpuEnd(data.status, vcpu.id, VcpuEnd.Stopped, 0, loopCounts);
} catch (error) {
  recordVcpuEnd(data.status, vcpu.id, VcpuEnd.WorkerError, 0, loopCounts);
  throw error;
} finally {
  vcpu.close();
}
