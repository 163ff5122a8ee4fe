/**
 * Test support for the demo's books and text: status blocks and machine-report counters of a run
 * in which every count agrees. Not part of the package's API.
 */

import { PCI_TEST_DEVICE_COUNTER_NAMES, type PciTestDeviceCounterName } from '../devices/pci/pci-test-device.ts';
import type { MachineEnd } from '../machine.ts';
import type { ReportCounters } from './demo-accounting.ts';
import { DemoPhase } from './demo-layout.ts';
import type { DemoStatus } from './demo-status.ts';

/** A started status block with every count 0, changed by `counts`. */
export function demoStatus(counts: Partial<DemoStatus> = {}): DemoStatus {
  return {
    started: true,
    phase: DemoPhase.Running,
    timerPeriodUs: 1000,
    runningUs: 0,
    timerTicks: 0,
    timerLateTicks: 0,
    ipisSent: 0,
    ipisSkipped: 0,
    ipisHandled: 0,
    levelQueued: 0,
    levelHandled: 0,
    levelIdle: 0,
    msixRaised: 0,
    msixSkipped: 0,
    msixHandled: 0,
    eoiAtDelivery: false,
    levelGsi: 11,
    ...counts,
  };
}

/** A PCI test function's counters: 0 but for `counts`. */
export function pciTestDeviceCounters(counts: Partial<Record<PciTestDeviceCounterName, number>> = {}): Record<PciTestDeviceCounterName, number> {
  return { ...(Object.fromEntries(PCI_TEST_DEVICE_COUNTER_NAMES.map((name) => [name, 0])) as Record<PciTestDeviceCounterName, number>), ...counts };
}

export interface DemoRun {
  readonly status: DemoStatus;
  readonly counters: ReportCounters;
  readonly end: MachineEnd;
}

/**
 * A 2-second run at 1 kHz in which everything agrees: 2000 ticks (3 expiries merged by vCPU 0's
 * LAPIC, 1 tick after the stop), 1990 IPIs and 1995 MSI-X messages (the rest skipped while one was
 * in flight), 2000 units of level work; the level function at device 3, the MSI-X one at device 4.
 */
export function accountedDemoRun(): DemoRun {
  return {
    status: demoStatus({
      phase: DemoPhase.Done,
      runningUs: 2_000_000,
      timerTicks: 2000,
      timerLateTicks: 1,
      ipisSent: 1990,
      ipisSkipped: 10,
      ipisHandled: 1990,
      levelQueued: 2000,
      levelHandled: 2000,
      msixRaised: 1995,
      msixSkipped: 5,
      msixHandled: 1995,
    }),
    counters: {
      chip: { msisSent: 1995, resamplesSignalled: 4000, edgeEventsServiced: 1995 },
      ioapic: { messagesAccepted: 2000, resampleSignals: 2000 },
      lapic0: { coalescedTimerTicks: 2, coalescedInterrupts: 1 },
      lapic1: { coalescedTimerTicks: 0, coalescedInterrupts: 0 },
      'pci-test-device-3': pciTestDeviceCounters({ levelUnitsQueued: 2000, levelUnitsCompleted: 2000, levelTriggers: 2000, levelResamples: 2000 }),
      // Its INTA# shares GSI 11: it sees the resamples too.
      'pci-test-device-4': pciTestDeviceCounters({ msixRaises: 1995, levelResamples: 2000 }),
      'pci-config': { masterAborts: 60 },
    },
    end: { kind: 'guest-exit', value: 0 },
  };
}
