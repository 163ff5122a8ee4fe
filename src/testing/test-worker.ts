/**
 * Test support: a worker on a TypeScript module, driven one request at a time. Not part of the
 * package's API.
 */
import type { Worker } from 'node:worker_threads';
import { startTypeScriptWorker } from '../node/worker.ts';

export class TestWorker<Request, Reply> {
  private readonly worker: Worker;

  constructor(moduleUrl: URL) {
    this.worker = startTypeScriptWorker(moduleUrl);
  }

  /** Sends `request` and resolves with the worker's next message (rejects if the worker fails). */
  request(request: Request): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const onError = (error: Error): void => {
        this.worker.off('message', onMessage);
        reject(error);
      };
      const onMessage = (reply: Reply): void => {
        this.worker.off('error', onError);
        resolve(reply);
      };
      this.worker.once('message', onMessage);
      this.worker.once('error', onError);
      this.worker.postMessage(request);
    });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}
