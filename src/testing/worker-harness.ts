/**
 * Test support: start a TypeScript worker (tsx is loaded into it) and talk to it one request at a
 * time. Not part of the package's API.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Starts a worker on a TypeScript module. Node 20 does not apply `--import tsx` to a worker's entry
 * module, so a small bootstrap registers tsx's loader first and then imports the module.
 */
export function startTypeScriptWorker(moduleUrl: URL, options: WorkerOptions = {}): Worker {
  const bootstrap = `import(${JSON.stringify(TSX_API)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(moduleUrl.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

const TSX_API = import.meta.resolve('tsx/esm/api');

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
