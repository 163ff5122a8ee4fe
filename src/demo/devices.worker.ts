/**
 * The demo machine's devices, on one worker thread, raising interrupts at random times of the host
 * clock (a seeded schedule, with bursts so that the coalescing rules get something to do):
 *
 * - a UART on ISA IRQ 4: an `IrqEdgeEvent` the VMM's thread services, one pulse per interrupt;
 * - a NIC on PCI INTA# (GSI 16): an `IrqLevelEvent`. Packets add descriptors to its queue; it
 *   asserts its line when it has work and the line is not already asserted, and at each resample
 *   (the guest's EOI) re-asserts if descriptors are still waiting: a level device's contract;
 * - an MSI source: `serviceIrq` on this thread's view of the chip, for a GSI whose route is an MSI,
 *   keeping KVM's result of each call (accepted, coalesced, or taken by nobody).
 *
 * When the VMM moves to draining, no new work arrives; the NIC finishes and reports idle. At exit
 * the worker reports its counts.
 */

import { parentPort, workerData } from 'node:worker_threads';
import { seededRandom } from '../base/seeded-random.ts';
import { UserspaceIrqChip } from '../chip/userspace-irq-chip.ts';
import { IrqEdgeEvent, IrqLevelEvent } from '../event/irq-event.ts';
import { DevicePhase, MachineMemory, type DevicesReport, type DevicesWorkerData } from './machine-layout.ts';

/** Mean gaps between arrivals, and how bursty each source is. */
const UART_MEAN_GAP_MS = 2.0;
const MSI_MEAN_GAP_MS = 1.0;
const NIC_MEAN_GAP_MS = 1.0;
const BURST_PROBABILITY = 0.2;
const MAX_BURST = 3;
/** Longest sleep between looks at the schedule and the NIC's resample event. */
const POLL_MS = 0.2;

/** Arrivals of one source: exponential gaps (a Poisson process), now and then a burst of 2–3. */
class ArrivalSchedule {
  private nextMs: number;

  constructor(
    private readonly meanGapMs: number,
    private readonly random: () => number,
    nowMs: number,
  ) {
    this.nextMs = nowMs + this.gap();
  }

  /** How many arrivals are due at `nowMs` (0 when none); schedules the next. */
  take(nowMs: number): number {
    if (nowMs < this.nextMs) return 0;
    this.nextMs = nowMs + this.gap();
    return this.random() < BURST_PROBABILITY ? 2 + Math.floor(this.random() * (MAX_BURST - 1)) : 1;
  }

  get dueMs(): number {
    return this.nextMs;
  }

  private gap(): number {
    return -this.meanGapMs * Math.log(1 - this.random());
  }
}

/** The NIC's interrupt logic: a level line held until the guest's EOI, re-asserted while work waits. */
class Nic {
  packets = 0;
  triggers = 0;
  resamplesSeen = 0;
  private asserted = false;

  constructor(
    private readonly line: IrqLevelEvent,
    private readonly memory: MachineMemory,
  ) {}

  receive(packets: number): void {
    this.packets += packets;
    this.memory.addNicWork(packets);
    if (!this.asserted) this.assert();
  }

  /** The resample event: the guest EOId; deassert, and assert again if descriptors still wait. */
  pollResample(): void {
    if (!this.line.clearResample()) return;
    this.resamplesSeen++;
    this.asserted = false;
    if (this.memory.nicPending() > 0) this.assert();
  }

  get idle(): boolean {
    return !this.asserted && this.memory.nicPending() === 0;
  }

  private assert(): void {
    this.line.trigger();
    this.triggers++;
    this.asserted = true;
  }
}

const data = workerData as DevicesWorkerData;
const memory = new MachineMemory(data.memory);
const chip = UserspaceIrqChip.fromDescriptor(data.chip);
const uart = IrqEdgeEvent.fromDescriptor(data.uart);
const nic = new Nic(IrqLevelEvent.fromDescriptor(data.nic), memory);
const random = seededRandom(data.seed);
const msi = { sent: 0, accepted: 0, coalesced: 0, rejected: 0 };
let uartPulses = 0;

memory.waitWhileDevicePhase(DevicePhase.Waiting);
const startMs = performance.now();
const uartArrivals = new ArrivalSchedule(UART_MEAN_GAP_MS, random, startMs);
const msiArrivals = new ArrivalSchedule(MSI_MEAN_GAP_MS, random, startMs);
const packetArrivals = new ArrivalSchedule(NIC_MEAN_GAP_MS, random, startMs);

while (memory.devicePhase() === DevicePhase.Running) {
  const nowMs = performance.now();
  for (let pulses = uartArrivals.take(nowMs); pulses > 0; pulses--, uartPulses++) uart.trigger();
  for (let messages = msiArrivals.take(nowMs); messages > 0; messages--) {
    const status = chip.serviceIrq(data.msiGsi, true);
    msi.sent++;
    if (status > 0) msi.accepted++;
    else if (status === 0) msi.coalesced++;
    else msi.rejected++;
  }
  const packets = packetArrivals.take(nowMs);
  if (packets > 0) nic.receive(packets);
  nic.pollResample();
  const nextDueMs = Math.min(uartArrivals.dueMs, msiArrivals.dueMs, packetArrivals.dueMs);
  memory.sleepInDevicePhase(DevicePhase.Running, Math.min(POLL_MS, Math.max(0, nextDueMs - performance.now())));
}
while (memory.devicePhase() === DevicePhase.Draining) {
  nic.pollResample();
  memory.setDevicesIdle(nic.idle);
  memory.sleepInDevicePhase(DevicePhase.Draining, POLL_MS);
}
nic.pollResample();

const report: DevicesReport = {
  uartPulses,
  msiSent: msi.sent,
  msiAccepted: msi.accepted,
  msiCoalesced: msi.coalesced,
  msiRejected: msi.rejected,
  nicPackets: nic.packets,
  nicTriggers: nic.triggers,
  nicResamplesSeen: nic.resamplesSeen,
};
parentPort?.postMessage(report);
