/**
 * A vCPU worker of the chip's stress test: a SimVcpu on its own view of the chip that sleeps in
 * `waitUntilRunnable`, takes every interrupt pending, halts, and does it again until the owner
 * asks it to stop.
 *
 * Its guest handler keeps the books: it counts each interrupt against the source its vector
 * belongs to, takes a work item for a level source (as a driver reads its device's status), ends
 * the interrupt the way the guest would (LAPIC EOI, or a non-specific EOI to the 8259A), and then
 * rings the source's device. IPIs come in request/reply chains: a request is answered with its
 * reply from inside the handler, and a reply makes the requester send the next request, so each
 * chain has exactly one IPI in flight.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from './bus.ts';
import { IrqAllocator } from './irq-allocator.ts';
import { SimVcpu, type SimGuest } from './sim-vcpu.ts';
import {
  PIC_MASTER_VECTOR_BASE,
  PIC_SLAVE_VECTOR_BASE,
  SourceKind,
  StressControl,
  isLevelKind,
  sendFixedIpi,
  type StressSource,
  type StressVcpuData,
  type StressVcpuReport,
} from './stress-plan.fixture.ts';
import { UserspaceIrqChip } from './userspace-irq-chip.ts';

/** What the 8259A answers an INTA with when nothing requests: its IR7 vector (datasheet, "spurious"). */
const PIC_MASTER_SPURIOUS_VECTOR = PIC_MASTER_VECTOR_BASE + 7;
const PIC_SLAVE_SPURIOUS_VECTOR = PIC_SLAVE_VECTOR_BASE + 7;
const PIC_MASTER_COMMAND = 0x20;
const PIC_NON_SPECIFIC_EOI = 0x20;
/** Steps per `runUntilIdle` call; the loop calls it again while it still finds interrupts. */
const STEPS_PER_RUN = 1_000;

const data = workerData as StressVcpuData;
const { vcpuId, sources } = data;
const control = new StressControl(data.control, sources.length);
const chip = UserspaceIrqChip.fromDescriptor(data.chip);
const ioBus = new Bus('io', IO_ADDRESS_LIMIT);
const mmioBus = new Bus('mmio', MMIO_ADDRESS_LIMIT);
chip.finalizeDevices(new IrqAllocator(), ioBus, mmioBus);

const sourceOfVector: (StressSource | undefined)[] = [];
for (const source of sources) sourceOfVector[source.vector] = source;
const failures: string[] = [];
let spuriousIrq7 = 0;
let spuriousIrq15 = 0;

function sendIpi(guest: SimGuest, ipi: StressSource): void {
  control.addSignals(ipi.id, 1);
  sendFixedIpi(guest, ipi.destination, ipi.vector);
}

function partnerOf(ipi: StressSource): StressSource {
  const partner = sources[ipi.partner];
  if (partner === undefined) throw new Error(`${ipi.name} has no partner`);
  return partner;
}

/** Requests this vCPU sends while its quota lasts, once now and then once per reply. */
function sendRequestIfQuotaLeft(guest: SimGuest, request: StressSource): void {
  if (control.signals(request.id) < request.quota) sendIpi(guest, request);
}

/** An 8259A vector no source owns: a spurious IRQ 7 gets no EOI, a spurious IRQ 15 an EOI to the master only. */
function handleUnownedVector(vector: number, guest: SimGuest): void {
  if (vector === PIC_MASTER_SPURIOUS_VECTOR) {
    spuriousIrq7++;
    return;
  }
  if (vector === PIC_SLAVE_SPURIOUS_VECTOR) {
    spuriousIrq15++;
    guest.outb(PIC_MASTER_COMMAND, PIC_NON_SPECIFIC_EOI);
    return;
  }
  failures.push(`vCPU ${vcpuId} took vector 0x${vector.toString(16)}, which no source owns`);
  guest.eoiLocalApic();
}

function handleInterrupt(vector: number, guest: SimGuest): void {
  const source = sourceOfVector[vector];
  if (source === undefined || (source.picIrq >= 0 && vcpuId !== 0)) {
    handleUnownedVector(vector, guest);
    return;
  }
  if (isLevelKind(source.kind) && control.takeWork(source.id) <= 0) {
    failures.push(`${source.name}: interrupt on vCPU ${vcpuId} with no work pending`);
  }
  control.addHandled(source.id);
  if (source.picIrq >= 0) guest.eoiPic(source.picIrq);
  else guest.eoiLocalApic();
  if (source.kind === SourceKind.Ipi) {
    if (source.isRequest) sendIpi(guest, partnerOf(source));
    else sendRequestIfQuotaLeft(guest, partnerOf(source));
  } else {
    devicesToRing |= 1 << source.device;
  }
}

/** Devices whose interrupts this run took: rung once the run ends, so a device wakes to a batch rather than to each interrupt. */
let devicesToRing = 0;

function ringDevices(): void {
  for (let device = 0; devicesToRing !== 0; device++, devicesToRing >>>= 1) {
    if ((devicesToRing & 1) !== 0) control.ringDevice(device);
  }
}

const vcpu = new SimVcpu(vcpuId, {
  ioBus,
  mmioBus,
  handler: handleInterrupt,
  picVectorBases: { master: PIC_MASTER_VECTOR_BASE, slave: PIC_SLAVE_VECTOR_BASE },
});
chip.addVcpu(vcpuId, vcpu);

function runUntilIdle(): void {
  while (vcpu.runUntilIdle(chip, STEPS_PER_RUN).length > 0);
  ringDevices();
}

for (const source of sources) {
  if (source.kind === SourceKind.Ipi && source.isRequest && source.sender === vcpuId) sendRequestIfQuotaLeft(vcpu.bus, source);
}

let runnableWaits = 0;
let interruptedWaits = 0;
while (!control.aborted()) {
  if (chip.waitUntilRunnable(vcpu) === 'interrupted') interruptedWaits++;
  else runnableWaits++;
  runUntilIdle();
  if (control.stopRequested()) break;
  vcpu.halt(chip);
}

parentPort?.postMessage({
  vcpuId,
  taken: vcpu.taken.length,
  runnableWaits,
  interruptedWaits,
  spuriousIrq7,
  spuriousIrq15,
  failures,
} satisfies StressVcpuReport);
