import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IrqChipError } from '../src/base/errors.ts';
import { rejectsWith } from '../src/testing/irq-chip-error.ts';
import {
  LOCK_WORDS,
  acquireLock,
  allocateStateWords,
  crc32,
  decodeSnapshot,
  encodeSnapshot,
  releaseLock,
  restoreSnapshot,
  tryAcquireLock,
  withLock,
} from '../src/base/shared-state.ts';

const isEinval = rejectsWith('EINVAL');

test('crc32 matches the IEEE check value', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('snapshot round trip restores the model words and leaves the lock alone', () => {
  const words = allocateStateWords(3);
  words.set([7, -1, 0x12345678], LOCK_WORDS);
  const bytes = encodeSnapshot('TEST', 1, words);
  const fresh = allocateStateWords(3);
  restoreSnapshot(fresh, bytes, 'TEST', 1, () => undefined);
  assert.deepEqual([...fresh.subarray(LOCK_WORDS)], [7, -1, 0x12345678]);
  assert.equal(fresh[0], 0, 'lock free after restore');
});

test('truncated, foreign, other-version, bit-flipped or lengthened snapshots are rejected and change nothing', () => {
  const words = allocateStateWords(2);
  words.set([1, 2], LOCK_WORDS);
  const bytes = encodeSnapshot('TEST', 1, words);
  const target = allocateStateWords(2);
  target.set([9, 9], LOCK_WORDS);
  const damaged = [
    bytes.subarray(0, bytes.length - 1),
    bytes.subarray(0, 8),
    new Uint8Array([...bytes, 0]),
    ...[0, 4, 8, 12, 16, 20].map((at) => {
      const copy = bytes.slice();
      copy[at] = (copy[at] ?? 0) ^ 0x01;
      return copy;
    }),
  ];
  for (const candidate of damaged) {
    assert.throws(() => {
      restoreSnapshot(target, candidate, 'TEST', 1, () => undefined);
    }, isEinval);
  }
  assert.throws(() => decodeSnapshot(bytes, 'OTHR', 1, 2), isEinval);
  assert.throws(() => decodeSnapshot(bytes, 'TEST', 2, 2), isEinval);
  assert.deepEqual([...target.subarray(LOCK_WORDS)], [9, 9]);
});

test('a validator that refuses the payload leaves the state unchanged', () => {
  const words = allocateStateWords(1);
  words[LOCK_WORDS] = 5;
  const bytes = encodeSnapshot('TEST', 1, words);
  const target = allocateStateWords(1);
  assert.throws(() => {
    restoreSnapshot(target, bytes, 'TEST', 1, () => {
      throw new IrqChipError('EINVAL', 'impossible');
    });
  }, isEinval);
  assert.equal(target[LOCK_WORDS], 0);
});

test('withLock releases the lock when the body throws', () => {
  const words = allocateStateWords(0);
  assert.throws(() => withLock(words, () => { throw new Error('boom'); }));
  assert.equal(withLock(words, () => 42), 42);
});

/** Word 0 of every state: the lock, 0 = free, 1 = held. */
const LOCK_STATE = 0;

test('tryAcquireLock takes a free lock, then fails without waiting until it is released', () => {
  const words = allocateStateWords(1);
  assert.equal(tryAcquireLock(words), true);
  assert.equal(words[LOCK_STATE], 1);
  assert.equal(tryAcquireLock(words), false);
  assert.equal(words[LOCK_STATE], 1, "a failed try leaves the holder's lock held");
  releaseLock(words);
  assert.equal(tryAcquireLock(words), true);
  releaseLock(words);
});

test('tryAcquireLock fails while acquireLock or withLock holds the lock', () => {
  const words = allocateStateWords(1);
  acquireLock(words);
  assert.equal(tryAcquireLock(words), false);
  releaseLock(words);
  assert.equal(
    withLock(words, () => tryAcquireLock(words)),
    false,
  );
  assert.equal(words[LOCK_STATE], 0, 'withLock released it');
});
