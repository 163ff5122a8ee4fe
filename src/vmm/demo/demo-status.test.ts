import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqChipError } from '../../base/errors.ts';
import { DEMO_STATUS_ADDRESS, DEMO_STATUS_MAGIC, DEMO_STATUS_VERSION, DEMO_WORDS, DemoPhase, DemoWord } from './demo-layout.ts';
import { DemoStatusReader } from './demo-status.ts';

const RAM_BYTES = 0x20000;

function guestRam(): { readonly memory: Uint8Array; readonly words: Uint32Array } {
  const memory = new Uint8Array(new SharedArrayBuffer(RAM_BYTES));
  return { memory, words: new Uint32Array(memory.buffer, DEMO_STATUS_ADDRESS, DEMO_WORDS) };
}

describe('DemoStatusReader', () => {
  test('reads each word of the block at its guest-physical address', () => {
    const { memory, words } = guestRam();
    words[DemoWord.Magic] = DEMO_STATUS_MAGIC;
    words[DemoWord.Version] = DEMO_STATUS_VERSION;
    words[DemoWord.Phase] = DemoPhase.Draining;
    words[DemoWord.TimerPeriodUs] = 500;
    words[DemoWord.RunningUs] = 1_000_123;
    words[DemoWord.TimerTicks] = 2000;
    words[DemoWord.TimerLateTicks] = 1;
    words[DemoWord.IpisSent] = 1990;
    words[DemoWord.IpisSkipped] = 10;
    words[DemoWord.IpisHandled] = 1989;
    words[DemoWord.LevelQueued] = 2000;
    words[DemoWord.LevelHandled] = 1998;
    words[DemoWord.LevelIdle] = 3;
    words[DemoWord.MsixRaised] = 1995;
    words[DemoWord.MsixSkipped] = 5;
    words[DemoWord.MsixHandled] = 1994;
    words[DemoWord.EoiAtDelivery] = 1;
    words[DemoWord.LevelGsi] = 11;
    assert.deepEqual(new DemoStatusReader(memory).read(), {
      started: true,
      phase: DemoPhase.Draining,
      timerPeriodUs: 500,
      runningUs: 1_000_123,
      timerTicks: 2000,
      timerLateTicks: 1,
      ipisSent: 1990,
      ipisSkipped: 10,
      ipisHandled: 1989,
      levelQueued: 2000,
      levelHandled: 1998,
      levelIdle: 3,
      msixRaised: 1995,
      msixSkipped: 5,
      msixHandled: 1994,
      eoiAtDelivery: true,
      levelGsi: 11,
    });
  });

  test('a block without the magic and version is not started, and its phase reads as booting', () => {
    const { memory, words } = guestRam();
    words[DemoWord.Phase] = DemoPhase.Running;
    assert.equal(new DemoStatusReader(memory).read().started, false);
    assert.equal(new DemoStatusReader(memory).read().phase, DemoPhase.Booting);
    words[DemoWord.Magic] = DEMO_STATUS_MAGIC;
    words[DemoWord.Version] = DEMO_STATUS_VERSION + 1;
    assert.equal(new DemoStatusReader(memory).read().started, false, 'another layout version is not ours');
  });

  test('a phase the layout does not define reads as booting', () => {
    const { memory, words } = guestRam();
    words[DemoWord.Magic] = DEMO_STATUS_MAGIC;
    words[DemoWord.Version] = DEMO_STATUS_VERSION;
    words[DemoWord.Phase] = 77;
    assert.equal(new DemoStatusReader(memory).read().phase, DemoPhase.Booting);
  });

  test('the caller must give shared guest RAM that holds the block', () => {
    assert.throws(() => new DemoStatusReader(new Uint8Array(RAM_BYTES)), (error) => error instanceof IrqChipError && error.code === 'EINVAL');
    assert.throws(() => new DemoStatusReader(new Uint8Array(new SharedArrayBuffer(DEMO_STATUS_ADDRESS))), (error) => error instanceof IrqChipError && error.code === 'EINVAL');
  });
});
