/**
 * A WebGPU backend that survives device loss: when a session fails with
 * `DeviceLostError` (a driver reset, a watchdog, `device.destroy()`), it
 * re-acquires a device, rebuilds the same kernel variant and re-runs the
 * session. The job's step passes the replica's parameters in every time, so
 * "continue from the replica" needs nothing else. The wrapper keeps its
 * identity, so optimizer state keyed by it survives too.
 *
 * Contract: at most `maxRecoveries` re-acquisitions in total; after that (or
 * when no device can be had) the session rejects with the last error.
 * `events` records what happened, for logs and tests.
 */
import { DeviceLostError, type ComputeBackend, type Session } from "./backend.ts";
import { acquireDevice } from "./device.ts";
import type { MatmulStrategy } from "./kernels.ts";
import { createWgslBackend } from "./wgsl-backend.ts";

export interface ResilientBackend extends ComputeBackend {
  /** The current device (changes after a recovery). */
  readonly device: GPUDevice;
  readonly recoveries: number;
  readonly events: readonly string[];
}

export async function createResilientWgslBackend(
  device: GPUDevice,
  adapter: string,
  fallback: boolean,
  strategy: MatmulStrategy,
  maxRows: number,
  maxRecoveries = 5,
): Promise<ResilientBackend> {
  let inner = await createWgslBackend(device, { strategy, adapter, fallback, maxRows });
  let recoveries = 0;
  const events: string[] = [];
  let recovering: Promise<void> | null = null;

  const recover = (): Promise<void> => {
    recovering ??= (async () => {
      if (recoveries >= maxRecoveries) throw new DeviceLostError(`device lost ${recoveries + 1} times; giving up`);
      recoveries++;
      const rows = inner.maxRows;
      inner.dispose();
      const acq = await acquireDevice({ label: "grid-worker (recovered)" });
      if (!acq.ok) throw new DeviceLostError(`device lost and not re-acquired: ${acq.reason}`);
      inner = await createWgslBackend(acq.device, { strategy, adapter: acq.info.name, fallback: acq.info.isFallback, maxRows: rows });
      events.push(`device re-acquired (${acq.info.name}), recovery ${recoveries}`);
    })().finally(() => {
      recovering = null;
    });
    return recovering;
  };

  return {
    backend: "webgpu",
    kernel: inner.kernel,
    get adapter() {
      return inner.adapter;
    },
    get device() {
      return inner.device;
    },
    get maxRows() {
      return inner.maxRows;
    },
    get recoveries() {
      return recoveries;
    },
    events,
    async session<T>(body: (s: Session) => Promise<T>): Promise<T> {
      for (;;) {
        if (recovering) await recovering;
        try {
          return await inner.session(body);
        } catch (e) {
          if (!(e instanceof DeviceLostError)) throw e;
          events.push(`device lost: ${e.message}`);
          await recover();
        }
      }
    },
    shrink() {
      const ok = inner.shrink();
      if (ok) events.push(`out of memory: rows per session now ${inner.maxRows}`);
      return ok;
    },
    dispose() {
      inner.dispose();
    },
  };
}

/** `backend` as a device-loss-surviving WebGPU backend, or null (the CPU path, the reference). */
export function asResilient(backend: ComputeBackend): ResilientBackend | null {
  const b = backend as Partial<ResilientBackend>;
  return backend.backend === "webgpu" && typeof b.recoveries === "number" && Array.isArray(b.events) && b.device !== undefined ? (backend as ResilientBackend) : null;
}
