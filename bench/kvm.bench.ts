/**
 * Guest interrupt round trips on real KVM, in every chip mode, on the same guest code (the
 * irq-probe C guest, src/kvm/irq-probe.ts): the device signals its event, the guest's handler runs
 * and reports (one port exit), the device signals again. Reported as interrupts per second.
 *
 * Per mode, three paths:
 * - IOAPIC edge: an edge event on GSI 5 (IOAPIC pin 5, vector 0x35). With KVM's chip it is an
 *   irqfd that a kworker injects; with ours the main thread's service loop asserts the pin and our
 *   IOAPIC delivers (to KVM's LAPIC in split mode, to ours in userspace mode, which kicks the vCPU).
 * - MSI: an edge event on GSI 30 routed to an MSI (vector 0x41). KVM injects an MSI irqfd inline
 *   (kernel, split); ours goes through the service loop (userspace).
 *   In both, the device lives in the vCPU thread: its report handler signals the event again.
 * - IOAPIC level with resample, device on the main thread: the main thread awaits the resample
 *   event (uv_poll) after each EOI and re-triggers, a cross-thread round trip.
 *
 * Skipped, with the reason on stderr, where /dev/kvm cannot be opened.
 */
import { IrqEdgeEvent, IrqLevelEvent } from '../src/event/irq-event.ts';
import { kvmUnavailableReason } from '../src/kvm/availability.ts';
import type { IrqProbeConfig } from '../src/kvm/irq-probe.ts';
import { OsEvent } from '../src/kvm/os-event.ts';
import { CHIP_MODES, ProbeLog, createProbeMachine, waitForLog, withProbe, type ChipMode, type ProbeMachine } from '../src/kvm/probe-machine.ts';
import { msiIrqRoute } from '../src/routing/irq-route.ts';
import { summarise, type Benchmark, type BenchResult } from './harness.ts';

const INTERRUPTS_PER_SAMPLE = 3_000;
const SAMPLES = 7;
const WARMUP_INTERRUPTS = 500;
const SOURCE = { deviceId: 1, queueId: 0, deviceName: 'bench-device' } as const;

const EDGE_GSI = 5;
const EDGE_VECTOR = 0x35;
const LEVEL_GSI = 10;
const LEVEL_VECTOR = 0x3a;
const MSI_GSI = 30;
const MSI_VECTOR = 0x41;
/** An MSI to APIC ID 0, fixed delivery, edge (x86-controllers.md §4). */
const MSI_ADDRESS = 0xfee00000n;

/** Samples `rounds` on a running probe: `round(n)` makes n more handler runs happen. */
async function sample(name: string, machine: ProbeMachine, round: (interrupts: number) => Promise<void>, detail: Record<string, string>): Promise<BenchResult> {
  await round(WARMUP_INTERRUPTS);
  const perSample: number[] = [];
  for (let index = 0; index < SAMPLES; index++) {
    const start = process.hrtime.bigint();
    await round(INTERRUPTS_PER_SAMPLE);
    perSample.push(INTERRUPTS_PER_SAMPLE / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  return summarise(name, 'interrupts/s', perSample, INTERRUPTS_PER_SAMPLE, { ...detail, handlerRuns: Atomics.load(machine.log, ProbeLog.Total) });
}

/** The device in the vCPU thread re-signals `trigger` after each report until the target. */
async function inThreadRoundTrip(mode: ChipMode, path: 'ioapic-edge' | 'msi'): Promise<BenchResult> {
  const name = `kvm ${mode} chip: ${path} round trip, device in vCPU thread`;
  const machine = createProbeMachine(mode);
  using trigger = OsEvent.create();
  const config: IrqProbeConfig = path === 'msi' ? {} : { ioapic: [{ pin: EDGE_GSI, vector: EDGE_VECTOR, levelTriggered: false }] };
  const gsi = path === 'msi' ? MSI_GSI : EDGE_GSI;
  if (path === 'msi') machine.chip.routeIrq(msiIrqRoute(MSI_GSI, MSI_ADDRESS, MSI_VECTOR));
  machine.chip.registerEdgeIrqEvent(gsi, new IrqEdgeEvent(trigger), SOURCE);
  return await withProbe(
    machine,
    config,
    async () =>
      await sample(
        name,
        machine,
        async (interrupts) => {
          const target = Atomics.load(machine.log, ProbeLog.Total) + interrupts;
          Atomics.store(machine.log, ProbeLog.DeviceTarget, target);
          trigger.signal();
          await waitForLog(machine.log, ProbeLog.DeviceDone, target);
        },
        { mode, path },
      ),
    { deviceTrigger: trigger.descriptor() },
  );
}

/** The device on the main thread: trigger, await the resample after the guest's EOI, trigger again. */
async function levelFromMainThread(mode: ChipMode): Promise<BenchResult> {
  const name = `kvm ${mode} chip: ioapic-level + resample round trip, device on main (uv_poll)`;
  const machine = createProbeMachine(mode);
  using trigger = OsEvent.create();
  using resample = OsEvent.create();
  const level = IrqLevelEvent.fromEventPair(trigger, resample);
  machine.chip.registerLevelIrqEvent(LEVEL_GSI, level, SOURCE);
  return await withProbe(machine, { ioapic: [{ pin: LEVEL_GSI, vector: LEVEL_VECTOR, levelTriggered: true }] }, async () =>
    await sample(
      name,
      machine,
      async (interrupts) => {
        for (let done = 0; done < interrupts; done++) {
          level.trigger();
          if ((await resample.waitAsync(20_000)) !== 'signaled') throw new Error(`${name}: no resample within 20 s`);
          resample.tryRead();
        }
      },
      { mode, path: 'ioapic-level' },
    ),
  );
}

const unavailable = kvmUnavailableReason();
if (unavailable !== undefined) process.stderr.write(`kvm.bench: KVM benchmarks skipped: ${unavailable}\n`);

export const benchmarks: Benchmark[] =
  unavailable === undefined
    ? CHIP_MODES.flatMap((mode) => [
        { name: `kvm ${mode} chip: ioapic-edge round trip, device in vCPU thread`, run: () => inThreadRoundTrip(mode, 'ioapic-edge') },
        { name: `kvm ${mode} chip: msi round trip, device in vCPU thread`, run: () => inThreadRoundTrip(mode, 'msi') },
        { name: `kvm ${mode} chip: ioapic-level + resample round trip, device on main (uv_poll)`, run: () => levelFromMainThread(mode) },
      ])
    : [];
