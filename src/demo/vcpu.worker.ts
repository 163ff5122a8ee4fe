/**
 * One vCPU of the demo machine on its own worker thread: it builds its view of the chip, its own
 * port and MMIO buses (the chip's controllers and the NIC's registers on them), and a SimVcpu
 * whose handler is the guest's. Then the run loop of a VMM's vCPU thread: `waitUntilRunnable`
 * (sleeps while halted; wakes on an interrupt for this vCPU, its timer, or a kick), run the guest
 * until nothing more is delivered, HLT. A kick after the VMM asked this vCPU to stop ends the loop
 * once the guest has taken what is pending; the worker then reports and exits.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../chip/bus.ts';
import type { IrqChip } from '../chip/irq-chip.ts';
import { IrqAllocator } from '../chip/irq-allocator.ts';
import { SimVcpu } from '../chip/sim-vcpu.ts';
import { UserspaceIrqChip } from '../chip/userspace-irq-chip.ts';
import type { SipiStart } from '../x86/lapic/local-apic.ts';
import { enableLocalApic, handleInterrupt, newGuestTally, NicRegisters, programControllers, startApplicationProcessors, startTimer } from './guest.ts';
import { BSP, MachineMemory, NIC_MMIO_BASE, NIC_MMIO_BYTES, type VcpuMessage, type VcpuReport, type VcpuWorkerData } from './machine-layout.ts';

/** A SimVcpu that also counts the start-up it received and the HLTs it executed. */
class DemoVcpu extends SimVcpu {
  sipis = 0;
  halts = 0;

  override applySipi(start: SipiStart): void {
    this.sipis++;
    super.applySipi(start);
  }

  override halt(chip: IrqChip): void {
    this.halts++;
    super.halt(chip);
  }
}

const { chip: descriptor, memory: memoryBuffer, vcpuId, timerPeriodNs } = workerData as VcpuWorkerData;
const post = (message: VcpuMessage): void => {
  parentPort?.postMessage(message);
};

try {
  const memory = new MachineMemory(memoryBuffer);
  const chip = UserspaceIrqChip.fromDescriptor(descriptor);
  const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
  const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
  chip.finalizeDevices(new IrqAllocator(), ioBus, mmioBus);
  mmioBus.insert(new NicRegisters(memory), NIC_MMIO_BASE, NIC_MMIO_BYTES);
  const tally = newGuestTally();
  const vcpu = new DemoVcpu(vcpuId, {
    ioBus,
    mmioBus,
    handler: (vector, guest) => {
      handleInterrupt(vector, guest, tally);
    },
  });
  chip.addVcpu(vcpuId, vcpu);

  if (vcpuId === BSP) {
    programControllers(vcpu.bus);
    startApplicationProcessors(vcpu.bus, memory, tally);
    startTimer(vcpu.bus, timerPeriodNs);
    // The timer's phase origin: nothing collects an expiry between the TMICT write and this read.
    const firstTimerDeadlineNs = chip.localApic(BSP).nextTimerDeadlineNs();
    if (firstTimerDeadlineNs === undefined) throw new Error('the LAPIC timer did not start');
    post({ kind: 'booted', firstTimerDeadlineNs });
  } else {
    // An application processor waits for its SIPI (waitUntilRunnable applies INIT and SIPI).
    while (chip.getMpState(vcpuId) !== 'runnable') {
      if (chip.waitUntilRunnable(vcpu) === 'interrupted' && memory.vcpuStopRequested(vcpuId)) throw new Error(`vCPU ${vcpuId} was stopped before it started`);
    }
    enableLocalApic(vcpu.bus);
    memory.setApOnline(vcpuId);
  }

  for (;;) {
    const state = chip.waitUntilRunnable(vcpu);
    vcpu.runUntilIdle(chip);
    if (state === 'interrupted' && memory.vcpuStopRequested(vcpuId)) break;
    vcpu.halt(chip);
  }
  vcpu.runUntilIdle(chip);

  const report: VcpuReport = {
    vcpuId,
    handled: Object.fromEntries(tally.handled),
    ipisSent: tally.ipisSent,
    startupIpisSent: tally.startupIpisSent,
    initsApplied: vcpu.inits,
    sipisApplied: vcpu.sipis,
    nicSpurious: tally.nicSpurious,
    halts: vcpu.halts,
  };
  post({ kind: 'report', report });
} catch (error) {
  post({ kind: 'failed', reason: error instanceof Error ? (error.stack ?? error.message) : String(error) });
}
