/**
 * The interrupt-message builder: its defaults, and the one field order every message shares.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DeliveryMode,
  DestinationMode,
  DestinationShorthand,
  interruptMessage,
  TriggerMode,
} from './interrupt-message.ts';

const FIELD_ORDER = [
  'destination',
  'destinationMode',
  'deliveryMode',
  'vector',
  'triggerMode',
  'level',
  'shorthand',
  'redirectionHint',
  'sourceApic',
];

test('interruptMessage() is a fixed, physical, edge assert to destination 0 with no shorthand, hint or source', () => {
  assert.deepEqual(interruptMessage(), {
    destination: 0,
    destinationMode: DestinationMode.Physical,
    deliveryMode: DeliveryMode.Fixed,
    vector: 0,
    triggerMode: TriggerMode.Edge,
    level: true,
    shorthand: DestinationShorthand.None,
    redirectionHint: false,
    sourceApic: undefined,
  });
});

test('interruptMessage takes the given fields and keeps every field, in one order, whichever were given', () => {
  const message = interruptMessage({ sourceApic: 3, vector: 0x41, level: false, shorthand: DestinationShorthand.AllExcludingSelf });
  assert.equal(message.vector, 0x41);
  assert.equal(message.level, false);
  assert.equal(message.shorthand, DestinationShorthand.AllExcludingSelf);
  assert.equal(message.sourceApic, 3);
  assert.equal(message.deliveryMode, DeliveryMode.Fixed);
  assert.deepEqual(Object.keys(message), FIELD_ORDER);
  assert.deepEqual(Object.keys(interruptMessage()), FIELD_ORDER);
});
