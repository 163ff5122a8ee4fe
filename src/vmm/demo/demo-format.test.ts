import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { accountDemo } from './demo-accounting.ts';
import { CLEAR_LINE, formatDemoReport, formatStatusLine, redrawStatusLine } from './demo-format.ts';
import { DemoPhase } from './demo-layout.ts';
import { accountedDemoRun, demoStatus } from './demo-test-support.ts';

const CONTEXT = { chip: 'userspace', cpus: 2 } as const;

describe('formatStatusLine', () => {
  test('shows the time, the guest’s phase and each source’s rate, rounded, in a fixed order', () => {
    const line = formatStatusLine({ status: demoStatus({ phase: DemoPhase.Running }), elapsedSeconds: 1.26, rates: { timer: 999.6, ipi: 998.2, level: 1000, msix: 0 } });
    assert.equal(line, 'demo 1.3 s running | timer 1000/s | IPI 998/s | level 1000/s | MSI-X 0/s');
  });

  test('before the guest has claimed its status block, the phase is "starting"', () => {
    const line = formatStatusLine({ status: demoStatus({ started: false }), elapsedSeconds: 0.25, rates: { timer: 0, ipi: 0, level: 0, msix: 0 } });
    assert.match(line, /^demo 0\.3 s starting \|/);
  });

  test('the redrawn line returns to the start of the line and erases it first, and has no newline', () => {
    const sample = { status: demoStatus({ phase: DemoPhase.Draining }), elapsedSeconds: 2, rates: { timer: 0, ipi: 1, level: 2, msix: 3 } };
    const text = redrawStatusLine(sample);
    assert.ok(text.startsWith(CLEAR_LINE));
    assert.equal(CLEAR_LINE, '\r\x1b[2K');
    assert.equal(text.slice(CLEAR_LINE.length), formatStatusLine(sample));
    assert.ok(!text.includes('\n'));
  });
});

describe('formatDemoReport', () => {
  test('an accounted run: one aligned row per source with raised, handled, merged, rate and its path; skips; the verdict', () => {
    const accounting = accountDemo(accountedDemoRun());
    const text = formatDemoReport(accounting, CONTEXT);
    const lines = text.split('\n');
    assert.match(lines[0] ?? '', /userspace chip, 2 vCPUs; the sources ran 2\.00 s/);
    const header = lines.findIndex((line) => line.startsWith('source'));
    assert.deepEqual(lines[header]?.split(/\s{2,}/), ['source', 'raised', 'handled', 'merged', 'per second', 'accounted', 'path']);
    const rows = lines.slice(header + 2, header + 6).map((line) => line.split(/\s{2,}/));
    assert.deepEqual(
      rows.map((cells) => cells.slice(0, 6)),
      [
        ['timer', '2004', '2001', '3', '1001', 'yes'],
        ['IPI', '1990', '1990', '0', '995', 'yes'],
        ['level', '2000', '2000', '0', '1000', 'yes'],
        ['MSI-X', '1995', '1995', '0', '998', 'yes'],
      ],
    );
    // Aligned: each row's path starts under the heading, the numbers before it right-aligned.
    const pathColumn = (lines[header] ?? '').indexOf('path');
    assert.deepEqual(
      lines.slice(header + 2, header + 6).map((line) => line.slice(pathColumn)),
      accounting.rows.map((row) => row.path),
    );
    assert.match(text, /vCPU 0 skipped 10 IPIs and 5 MSI-X raises while the previous one was in flight/);
    assert.match(text, /Every interrupt is accounted for: 14 cross-checks/);
    assert.doesNotMatch(text, /NOT/);
  });

  test('a run that is not accounted for says so and lists each failed check with its source', () => {
    const run = accountedDemoRun();
    const text = formatDemoReport(accountDemo({ ...run, status: { ...run.status, ipisHandled: 1989 }, end: { kind: 'guest-exit', value: 20 } }), CONTEXT);
    assert.match(text, /^IPI\s+1990\s+1989\s+0\s+995\s+NO\s/m);
    assert.match(text, /NOT every interrupt is accounted for: 2 checks of 14 failed:/);
    assert.match(text, /^ {2}guest: the guest finished and said every count matched \(isa-debug-exit 0; ended: value 20: a count differed after the drain\)$/m);
    assert.match(text, /^ {2}ipi: each IPI sent was handled once \(1990 sent, 1989 handled\)$/m);
  });

  test('a guest that stopped while setting up gets one line that sends the reader to its output, not a table of zeros', () => {
    const text = formatDemoReport(accountDemo({ status: demoStatus({ phase: DemoPhase.Booting }), counters: {}, end: { kind: 'guest-exit', value: 3 } }), CONTEXT);
    assert.equal(text, "irqchip demo on KVM: the demo guest, userspace chip, 2 vCPUs: the guest ended before its interrupt sources ran (value 3); its output above says why.");
  });

  test('one skip is singular', () => {
    const run = accountedDemoRun();
    const text = formatDemoReport(accountDemo({ ...run, status: { ...run.status, ipisSkipped: 1, msixSkipped: 1 } }), CONTEXT);
    assert.match(text, /skipped 1 IPI and 1 MSI-X raise while/);
  });
});
