import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BSP, DEVICE_VCPU, IPI_VCPU, Vector } from '../src/demo/machine-layout.ts';
import { runMachineDemo } from '../src/demo/machine-demo.ts';
import { formatMachineReport, Rule, summariseMachine, type MachineLedger, type MachineReport, type SourceSummary } from '../src/demo/machine-report.ts';

const SHORT_RUN_MS = 300;

function row(report: MachineReport, source: string): SourceSummary {
  const found = report.sources.find((candidate) => candidate.source === source);
  assert.ok(found, `the summary has a row for ${source}`);
  return found;
}

const total = (counts: readonly { readonly count: number }[]): number => counts.reduce((sum, entry) => sum + entry.count, 0);

describe('npm start: the simulated machine on UserspaceIrqChip (one short run)', () => {
  let report: MachineReport;
  before(async () => {
    report = await runMachineDemo({ durationMs: SHORT_RUN_MS });
  });

  test('every source raised interrupts, and each one was delivered or coalesced by a named rule', () => {
    assert.deepEqual(
      report.sources.map((source) => source.source),
      ['LAPIC timer', 'IPI', 'start-up IPIs', 'UART (ISA)', 'NIC (PCI INTx)', 'MSI'],
    );
    const rules = new Set<string>(Object.values(Rule));
    for (const source of report.sources) {
      assert.ok(source.raised > 0, `${source.source} raised interrupts`);
      assert.equal(source.lost, 0, `${source.source}: none reached nobody`);
      assert.equal(total(source.delivered) + total(source.coalesced), source.raised, `${source.source}: raised = delivered + coalesced`);
      for (const entry of source.coalesced) assert.ok(rules.has(entry.rule), `${source.source}: '${entry.rule}' is a known rule`);
    }
    assert.ok(report.accounted);
    assert.deepEqual(report.checks.filter((check) => !check.ok), []);
  });

  test('each source reaches the vCPU its route names', () => {
    const vcpusOf = (source: string) => row(report, source).delivered.filter((entry) => entry.count > 0).map((entry) => entry.vcpu);
    assert.deepEqual(vcpusOf('LAPIC timer'), [BSP]);
    assert.deepEqual(vcpusOf('UART (ISA)'), [BSP]);
    assert.deepEqual(vcpusOf('NIC (PCI INTx)'), [DEVICE_VCPU]);
    assert.deepEqual(vcpusOf('MSI'), [DEVICE_VCPU]);
    assert.deepEqual(vcpusOf('IPI'), [IPI_VCPU]);
  });

  test('the level NIC: every packet completed by the guest, and one resample per EOI', () => {
    const nic = row(report, 'NIC (PCI INTx)');
    const { ledger } = report;
    assert.equal(ledger.nicCompleted, ledger.devices.nicPackets);
    assert.equal(ledger.nicPending, 0);
    const resamples = nic.resamples;
    assert.ok(resamples, 'a level source reports its resamples');
    assert.equal(resamples.signalled, total(nic.delivered));
    // The device reads its resample event; signals made before a read count once.
    assert.ok(resamples.readByDevice > 0 && resamples.readByDevice <= resamples.signalled);
  });

  test('start-up: INIT, SIPI, SIPI to each AP; each applies one INIT and one SIPI, the second SIPI is ignored', () => {
    const startup = row(report, 'start-up IPIs');
    assert.equal(startup.raised, 6);
    assert.deepEqual(startup.delivered, [
      { vcpu: DEVICE_VCPU, count: 2 },
      { vcpu: IPI_VCPU, count: 2 },
    ]);
    assert.deepEqual(startup.coalesced.filter((entry) => entry.count > 0), [{ rule: Rule.SipiIgnored, count: 2 }]);
  });

  test('MSI: the LAPIC counted as many coalesced messages as serviceIrq reported', () => {
    const { ledger } = report;
    assert.equal(ledger.localApics[DEVICE_VCPU]?.coalescedInterrupts, ledger.devices.msiCoalesced);
    assert.equal(ledger.devices.msiAccepted, total(row(report, 'MSI').delivered));
  });

  test('the books catch a lost interrupt: one MSI fewer taken by the guest is not accounted for', () => {
    const vcpu1 = report.ledger.vcpus.find((vcpu) => vcpu.vcpuId === DEVICE_VCPU);
    assert.ok(vcpu1);
    const handled = { ...vcpu1.handled, [Vector.Msi]: (vcpu1.handled[Vector.Msi] ?? 0) - 1 };
    const ledger: MachineLedger = { ...report.ledger, vcpus: report.ledger.vcpus.map((vcpu) => (vcpu === vcpu1 ? { ...vcpu, handled } : vcpu)) };
    const damaged = summariseMachine(ledger);
    assert.equal(row(damaged, 'MSI').balanced, false);
    assert.equal(damaged.accounted, false);
    assert.match(formatMachineReport(damaged), /every interrupt accounted for: NO/);
  });

  test('the books catch an interrupt left pending in a controller', () => {
    const damaged = summariseMachine({ ...report.ledger, leftPending: ['IOAPIC pin 16 awaits its EOI'] });
    assert.equal(damaged.accounted, false);
    assert.ok(damaged.sources.every((source) => source.balanced));
  });

  test('the text names every source, its path and rules, and ends with the verdict', () => {
    const text = formatMachineReport(report);
    for (const source of report.sources) {
      assert.ok(text.includes(source.source));
      assert.ok(text.includes(source.path));
    }
    assert.match(text, /\nevery interrupt accounted for: yes/);
  });
});

test('runMachineDemo refuses a duration or timer period it cannot run', async () => {
  await assert.rejects(runMachineDemo({ durationMs: 0 }), RangeError);
  await assert.rejects(runMachineDemo({ timerPeriodUs: 0.5 }), RangeError);
});

test('irqchip demo --simulated: the simulated machine runs, prints the summary and exits 0 on its own', async () => {
  const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', main, 'demo', '--simulated', '--duration', '200'], { timeout: 120_000 });
  assert.match(stdout, /source\s+raised\s+delivered\s+coalesced/);
  assert.match(stdout, /\nevery interrupt accounted for: yes/);
});
