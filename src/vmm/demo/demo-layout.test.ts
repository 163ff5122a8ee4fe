/**
 * guests/lib/demo-status.h holds, for the demo guest, the numbers demo-layout.ts defines: this test
 * reads its #defines and compares them, so the guest and the VMM cannot disagree about where the
 * status block is or what a word counts.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  DEMO_DEFAULT_DURATION_MS,
  DEMO_DEFAULT_TIMER_PERIOD_US,
  DEMO_EXIT_UNHANDLED,
  DEMO_MAX_DURATION_MS,
  DEMO_MAX_TIMER_PERIOD_US,
  DEMO_MIN_TIMER_PERIOD_US,
  DEMO_STATUS_ADDRESS,
  DEMO_STATUS_MAGIC,
  DEMO_STATUS_VERSION,
  DEMO_WORDS,
  DemoPhase,
  DemoVector,
  DemoWord,
  demoCommandLine,
} from './demo-layout.ts';
import { guestHeaderDefines } from '../guest-header-test-support.ts';


/** DemoWord.TimerPeriodUs → DEMO_WORD_TIMER_PERIOD_US. */
function macroName(prefix: string, key: string): string {
  return `${prefix}_${key.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

describe('guests/lib/demo-status.h', () => {
  const defines = guestHeaderDefines('demo-status.h');

  test('its address, magic, limits, vectors and exit value are demo-layout.ts’s', () => {
    const expected: Record<string, number> = {
      DEMO_STATUS_ADDRESS,
      DEMO_STATUS_MAGIC,
      DEMO_STATUS_VERSION,
      DEMO_WORDS,
      DEMO_DEFAULT_DURATION_MS,
      DEMO_DEFAULT_TIMER_PERIOD_US,
      DEMO_MIN_TIMER_PERIOD_US,
      DEMO_MAX_TIMER_PERIOD_US,
      DEMO_MAX_DURATION_MS,
      DEMO_EXIT_UNHANDLED,
    };
    for (const [key, value] of Object.entries(DemoVector)) expected[macroName('DEMO_VECTOR', key)] = value;
    for (const [name, value] of Object.entries(expected)) assert.equal(defines.get(name), value, name);
  });

  test('every word and phase has the same index on both sides, and the header has no other', () => {
    const words = [...defines].filter(([name]) => name.startsWith('DEMO_WORD_'));
    assert.deepEqual(new Map(words), new Map(Object.entries(DemoWord).map(([key, value]) => [macroName('DEMO_WORD', key), value])));
    assert.equal(words.length, DEMO_WORDS, 'one define per word');
    const phases = [...defines].filter(([name]) => name.startsWith('DEMO_PHASE_'));
    assert.deepEqual(new Map(phases), new Map(Object.entries(DemoPhase).map(([key, value]) => [macroName('DEMO_PHASE', key), value])));
  });

  test('the command line the VMM writes names the arguments guests/demo.c reads', () => {
    const guest = readFileSync(new URL('../../../guests/demo.c', import.meta.url), 'utf8');
    const commandLine = demoCommandLine({ durationMs: 1500, timerPeriodUs: 500 });
    assert.equal(commandLine, 'duration_ms=1500 timer_us=500');
    for (const argument of commandLine.split(' ')) {
      const name = argument.slice(0, argument.indexOf('=') + 1);
      assert.ok(guest.includes(`"${name}"`), `guests/demo.c reads ${name}`);
    }
  });
});
