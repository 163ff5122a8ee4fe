/**
 * The event tests' worker (src/event/event-worker.fixture.ts) with the eventfd backing
 * registered, so the same requests run on OS events rebuilt from their descriptors.
 */
import './os-event.ts';
import '../event/event-worker.fixture.ts';
