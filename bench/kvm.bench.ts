/**
 * Guest interrupt round trips on real KVM, per chip mode, on the same real-mode guest
 * (src/kvm/pic-test-guest.ts): the device signals, the guest's handler runs and OUTs its count
 * (one exit to userspace), and the device signals again. Reported as interrupts per second.
 *
 * - kernel chip, edge irqfd, device in the vCPU thread: the exit handler re-signals the irqfd
 *   itself, so the figure is KVM's path alone (irqfd → kworker → PIC → injection → exit).
 * - kernel chip, level irqfd with resample, device on the main thread: the main thread awaits the
 *   resamplefd with uv_poll (OsEvent.waitAsync) and re-triggers, a cross-thread round trip.
 *
 * Skipped, with the reason on stderr, where /dev/kvm cannot be opened.
 */
import { IrqEdgeEvent, IrqLevelEvent } from '../src/event/irq-event.ts';
import { kvmUnavailableReason } from '../src/kvm/availability.ts';
import { IRQ_SOURCE, kernelChipMachine, waitForLog, withPicGuest, type KernelChipMachine } from '../src/kvm/kvm-test-support.ts';
import { OsEvent } from '../src/kvm/os-event.ts';
import { GUEST_IRQ, GuestLog } from '../src/kvm/pic-test-guest.ts';
import { summarise, type Benchmark, type BenchResult } from './harness.ts';

const INTERRUPTS_PER_SAMPLE = 5_000;
const SAMPLES = 7;
const WARMUP_INTERRUPTS = 1_000;

/** Runs `machine`'s guest, times `samples` rounds of `interruptsPerRound` each, and stops it. */
async function timeRounds(name: string, machine: KernelChipMachine, data: Parameters<typeof withPicGuest>[1], round: (interrupts: number) => Promise<void>): Promise<BenchResult> {
  return await withPicGuest(machine, data, async () => {
    await round(WARMUP_INTERRUPTS);
    const perSample: number[] = [];
    for (let sample = 0; sample < SAMPLES; sample++) {
      const start = process.hrtime.bigint();
      await round(INTERRUPTS_PER_SAMPLE);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      perSample.push(INTERRUPTS_PER_SAMPLE / seconds);
    }
    if (Atomics.load(machine.log, GuestLog.OutOfOrder) !== 0) throw new Error(`${name}: the guest saw interrupts out of order`);
    return summarise(name, 'interrupts/s', perSample, INTERRUPTS_PER_SAMPLE, { handlerRuns: Atomics.load(machine.log, GuestLog.Interrupts) });
  });
}

async function edgeInVcpuThread(): Promise<BenchResult> {
  const machine = kernelChipMachine({ levelTriggered: false });
  using trigger = OsEvent.create();
  machine.chip.registerEdgeIrqEvent(GUEST_IRQ, new IrqEdgeEvent(trigger), IRQ_SOURCE);
  return await timeRounds('kvm kernel chip: edge irqfd round trip, device in vCPU thread', machine, { deviceTrigger: trigger.descriptor() }, async (interrupts) => {
    const target = Atomics.load(machine.log, GuestLog.Interrupts) + interrupts;
    Atomics.store(machine.log, GuestLog.DeviceTarget, target);
    trigger.signal();
    await waitForLog(machine.log, GuestLog.DeviceDone, target);
  });
}

async function levelFromMainThread(): Promise<BenchResult> {
  const machine = kernelChipMachine({ levelTriggered: true });
  using trigger = OsEvent.create();
  using resample = OsEvent.create();
  const level = IrqLevelEvent.fromEventPair(trigger, resample);
  machine.chip.registerLevelIrqEvent(GUEST_IRQ, level, IRQ_SOURCE);
  return await timeRounds('kvm kernel chip: level irqfd + resample round trip, device on main (uv_poll)', machine, {}, async (interrupts) => {
    for (let done = 0; done < interrupts; done++) {
      level.trigger();
      if ((await resample.waitAsync(20_000)) !== 'signaled') throw new Error('no resample within 20 s');
      resample.tryRead();
    }
  });
}

const unavailable = kvmUnavailableReason();
if (unavailable !== undefined) process.stderr.write(`kvm.bench: KVM benchmarks skipped: ${unavailable}\n`);

export const benchmarks: Benchmark[] =
  unavailable === undefined
    ? [
        { name: 'kvm kernel chip: edge irqfd round trip, device in vCPU thread', run: edgeInVcpuThread },
        { name: 'kvm kernel chip: level irqfd + resample round trip, device on main (uv_poll)', run: levelFromMainThread },
      ]
    : [];
