import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accountDemo, type DemoCheckSubject } from './demo-accounting.ts';
import type { DemoSource } from './demo-layout.ts';
import { accountedDemoRun, pciTestDeviceCounters, type DemoRun } from './demo-test-support.ts';

function failedSubjects(run: DemoRun): Set<DemoCheckSubject> {
  return new Set(
    accountDemo(run)
      .checks.filter((check) => !check.ok)
      .flatMap((check) => check.subjects),
  );
}

function notAccountedRows(run: DemoRun): DemoSource[] {
  return accountDemo(run)
    .rows.filter((row) => !row.accounted)
    .map((row) => row.source);
}

describe('accountDemo', () => {
  test('a run whose counts all agree is accounted for, each row with its raised, handled, merged and rate', () => {
    const accounting = accountDemo(accountedDemoRun());
    assert.deepEqual(
      accounting.checks.filter((check) => !check.ok),
      [],
    );
    assert.equal(accounting.accounted, true);
    assert.equal(accounting.runningSeconds, 2);
    assert.equal(accounting.sourcesRan, true);
    assert.equal(accounting.guestEnd, 'value 0');
    assert.deepEqual(accounting.skipped, { ipi: 10, msix: 5 });
    assert.deepEqual(
      accounting.rows.map(({ source, raised, handled, merged, perSecond, accounted }) => ({ source, raised, handled, merged, perSecond, accounted })),
      [
        // 2001 runs (one after the stop) and 3 expiries vCPU 0's LAPIC merged.
        { source: 'timer', raised: 2004, handled: 2001, merged: 3, perSecond: 1000.5, accounted: true },
        { source: 'ipi', raised: 1990, handled: 1990, merged: 0, perSecond: 995, accounted: true },
        { source: 'level', raised: 2000, handled: 2000, merged: 0, perSecond: 1000, accounted: true },
        { source: 'msix', raised: 1995, handled: 1995, merged: 0, perSecond: 997.5, accounted: true },
      ],
    );
    assert.match(accounting.rows[2]?.path ?? '', /IOAPIC GSI 11 level/);
  });

  const run = accountedDemoRun();
  const counters = run.counters;
  const withCounters = (section: string, counts: Readonly<Record<string, number>>): DemoRun => ({ ...run, counters: { ...counters, [section]: { ...counters[section], ...counts } } });
  const withStatus = (counts: Partial<DemoRun['status']>): DemoRun => ({ ...run, status: { ...run.status, ...counts } });
  /** One more trigger, message, run and resample than units of work: a run that found none. */
  function oneIdleLevelRun(apic: { readonly eoiAtDelivery: boolean }): DemoRun {
    const idle = withStatus({ levelIdle: 1, eoiAtDelivery: apic.eoiAtDelivery });
    return {
      ...idle,
      counters: { ...counters, 'pci-test-device-3': { ...counters['pci-test-device-3'], levelTriggers: 2001 }, ioapic: { messagesAccepted: 2001, resampleSignals: 2001 } },
    };
  }
  const withoutLocalApics = Object.fromEntries(Object.entries(counters).filter(([section]) => !section.startsWith('lapic')));
  const cases: readonly { readonly what: string; readonly run: DemoRun; readonly failed: readonly DemoCheckSubject[] }[] = [
    { what: 'an IPI sent and never handled', run: withStatus({ ipisHandled: 1989 }), failed: ['ipi'] },
    { what: 'a tick that neither sent nor skipped an IPI', run: withStatus({ ipisSkipped: 9 }), failed: ['ipi'] },
    { what: 'a raise the device did not count', run: withCounters('pci-test-device-4', { msixRaises: 1994 }), failed: ['msix'] },
    { what: 'a raise the chip sent no message for', run: withCounters('chip', { msisSent: 1994 }), failed: ['msix'] },
    { what: 'an MSI-X message handled twice', run: withStatus({ msixHandled: 1996 }), failed: ['msix'] },
    { what: 'an interrupt merged in vCPU 1’s IRR', run: withCounters('lapic1', { coalescedInterrupts: 1 }), failed: ['ipi', 'msix'] },
    { what: 'a unit of level work the device never got', run: withCounters('pci-test-device-3', { levelUnitsQueued: 1999 }), failed: ['level'] },
    { what: 'a unit completed without a handler run', run: withCounters('pci-test-device-3', { levelUnitsCompleted: 2001 }), failed: ['level'] },
    { what: 'a trigger of INTA# no message came of', run: withCounters('pci-test-device-3', { levelTriggers: 2001 }), failed: ['level'] },
    { what: 'a level message no handler ran for (it stays in service)', run: withCounters('ioapic', { messagesAccepted: 2001 }), failed: ['level'] },
    { what: 'a handler run whose EOI never resampled the pin', run: withCounters('ioapic', { resampleSignals: 1999 }), failed: ['level'] },
    { what: 'a level run with no work on a local APIC that EOIs in the handler', run: oneIdleLevelRun({ eoiAtDelivery: false }), failed: ['level'] },
    { what: 'the guest ended by the time limit', run: { ...run, end: { kind: 'timeout', afterMs: 62_000 } }, failed: ['guest'] },
    { what: 'the guest ended with a failed count', run: { ...run, end: { kind: 'guest-exit', value: 20 } }, failed: ['guest'] },
    { what: 'a timer that never ticked', run: withStatus({ timerTicks: 0, timerLateTicks: 0 }), failed: ['timer', 'ipi', 'level', 'msix'] },
    { what: 'a report without local APIC counters (a KVM chip)', run: { ...run, counters: withoutLocalApics }, failed: ['timer', 'ipi', 'msix'] },
    { what: 'a report without the PCI test functions', run: { ...run, counters: { chip: counters.chip ?? {}, lapic0: counters.lapic0 ?? {}, lapic1: counters.lapic1 ?? {} } }, failed: ['level', 'msix'] },
  ];
  for (const { what, run: broken, failed } of cases) {
    test(`${what}: the checks of exactly ${failed.join(', ')} fail, and the run is not accounted for`, () => {
      assert.deepEqual(failedSubjects(broken), new Set(failed));
      assert.deepEqual(notAccountedRows(broken), failed.filter((source) => source !== 'guest'));
      assert.equal(accountDemo(broken).accounted, false);
    });
  }

  test('level runs with no work are accounted for where the local APIC ends interrupts at delivery (this host’s KVM APIC)', () => {
    const accounting = accountDemo(oneIdleLevelRun({ eoiAtDelivery: true }));
    assert.equal(accounting.accounted, true);
    assert.equal(accounting.rows[2]?.handled, 2001);
  });

  test('the PCI test functions are found by their counters, whatever their names, and summed', () => {
    const renamed = { ...counters, 'pci-test-device-3': pciTestDeviceCounters(), 'pci-test-device-4': pciTestDeviceCounters(), a: counters['pci-test-device-3'] ?? {}, b: counters['pci-test-device-4'] ?? {} };
    assert.equal(accountDemo({ ...run, counters: renamed }).accounted, true);
  });
});
