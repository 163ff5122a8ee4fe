import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { FIRST_ALLOCATABLE_IRQ, IrqAllocator, LAST_ALLOCATABLE_IRQ } from './irq-allocator.ts';

test('hands out GSIs from 9 upwards, one at a time', () => {
  const allocator = new IrqAllocator();
  assert.deepEqual([allocator.allocate(), allocator.allocate(), allocator.allocate()], [FIRST_ALLOCATABLE_IRQ, 10, 11]);
  assert.equal(allocator.allocatedCount, 3);
});

test('an empty pool is ENOSPC, and the failed call allocates nothing', () => {
  const allocator = new IrqAllocator(LAST_ALLOCATABLE_IRQ - 1);
  assert.deepEqual([allocator.allocate(), allocator.allocate()], [1022, 1023]);
  assert.throws(() => allocator.allocate(), rejectsWith('ENOSPC'));
  assert.equal(allocator.allocatedCount, 2);
  allocator.release(1022);
  assert.equal(allocator.allocate(), 1022, 'a released GSI refills the pool');
});

test('a spent budget is ENOSPC until a GSI is released', () => {
  const allocator = new IrqAllocator(FIRST_ALLOCATABLE_IRQ, LAST_ALLOCATABLE_IRQ, 2);
  const first = allocator.allocate();
  allocator.allocate();
  assert.throws(() => allocator.allocate(), rejectsWith('ENOSPC'));
  assert.equal(allocator.allocatedCount, 2);
  allocator.release(first);
  assert.equal(allocator.allocate(), first, 'the released GSI is reused');
  assert.throws(() => allocator.allocate(), rejectsWith('ENOSPC'));
});

test('releasing a GSI that is not allocated (never, or already released) is ENOENT', () => {
  const allocator = new IrqAllocator();
  const gsi = allocator.allocate();
  assert.throws(() => {
    allocator.release(gsi + 1);
  }, rejectsWith('ENOENT'));
  allocator.release(gsi);
  assert.throws(() => {
    allocator.release(gsi);
  }, rejectsWith('ENOENT'));
  assert.equal(allocator.allocatedCount, 0);
});

test('advanceTo(24) skips the numbers below (crosvm leaks them), drops released ones below, and never moves back', () => {
  const allocator = new IrqAllocator();
  const low = allocator.allocate();
  allocator.release(low);
  allocator.advanceTo(24);
  assert.equal(allocator.allocate(), 24);
  allocator.advanceTo(10);
  assert.equal(allocator.allocate(), 25);
  const kept = allocator.allocate();
  allocator.release(kept);
  allocator.advanceTo(20);
  assert.equal(allocator.allocate(), kept, 'a released GSI above the floor is kept');
});

test('bad construction and floors are EINVAL', () => {
  assert.throws(() => new IrqAllocator(30, 20), rejectsWith('EINVAL'));
  assert.throws(() => new IrqAllocator(-1), rejectsWith('EINVAL'));
  assert.throws(() => new IrqAllocator(9, 1023, -1), rejectsWith('EINVAL'));
  assert.throws(() => new IrqAllocator(9, 1023, 1.5), rejectsWith('EINVAL'));
  const allocator = new IrqAllocator();
  assert.throws(() => {
    allocator.advanceTo(Number.NaN);
  }, rejectsWith('EINVAL'));
  assert.equal(allocator.allocate(), FIRST_ALLOCATABLE_IRQ, 'the bad floor changed nothing');
});
