/**
 * The kernel library on a WebGPU device: a `ComputeBackend` whose sessions
 * record ops as dispatches of the kernels declared in kernels.ts.
 *
 * Contract:
 * - Ops are recorded, not run: a session allocates each result's buffer from a
 *   pool (buffers are reused across sessions by byte size), and `read()` gets
 *   the pipelines from the device's cache (keyed by final source + constants),
 *   encodes every dispatch into one compute pass, copies the read tensors into
 *   one staging buffer, submits once and maps once.
 * - Matrix products are split along rows into dispatches of at most
 *   `maxDispatchFlops` each (default 5·10⁷ on fallback adapters ≈ 25 ms on
 *   SwiftShader, 2·10⁹ elsewhere), so no dispatch runs near the ~100 ms watchdog.
 * - Out-of-memory while allocating or running rejects with `OutOfMemoryError`;
 *   a lost device rejects with `DeviceLostError` (now and for every later
 *   session); a validation error rejects with the platform's message. Never
 *   stale bytes.
 * - Sessions are serialized; after `dispose()` they reject.
 */
import {
  adamCorrections,
  checkAdam,
  checkBias,
  checkDim,
  checkLabels,
  checkReadInto,
  checkSameShape,
  DeviceLostError,
  matmulShape,
  OutOfMemoryError,
  type ComputeBackend,
  type Session,
  type Tensor,
} from "./backend.ts";
import { elementwiseUniform, KERNELS, MATMUL_KERNEL, MATMUL_TILE, matmulUniform, optimizerUniform, rowChunks, type KernelName, type MatmulStrategy } from "./kernels.ts";
import { pipelineCacheFor, type OverrideConstants } from "./pipelines.ts";

export interface WgslBackendOptions {
  readonly strategy: MatmulStrategy;
  /** Adapter name reported in `BackendInfo.adapter`. */
  readonly adapter: string;
  /** The adapter is CPU-backed/slow (smaller dispatches). */
  readonly fallback?: boolean;
  readonly maxRows?: number;
  /** FLOPs per matmul dispatch at most; see the file comment. */
  readonly maxDispatchFlops?: number;
  /** Invocations per workgroup of the 1-D kernels; default 64 (clamped to the device). */
  readonly workgroupSize?: number;
}

interface GpuTensor extends Tensor {
  readonly buffer: GPUBuffer;
}

interface RecordedOp {
  readonly kernel: KernelName;
  readonly constants: OverrideConstants;
  readonly uniform: ArrayBuffer | null;
  readonly buffers: readonly GPUBuffer[];
  readonly groups: readonly [number, number];
}

const F32 = 4;

/** Splits `n` workgroups over x (≤ `max`) and y; 1-D kernels number them `x + y·nx`. */
function grid(n: number, max: number): [number, number] {
  if (n <= max) return [Math.max(1, n), 1];
  const y = Math.ceil(n / max);
  if (y > max) throw new Error(`${n} workgroups exceed the device's dispatch limit`);
  return [Math.ceil(n / y), y];
}

/**
 * Pool of storage and uniform buffers of one device, reused by exact byte size.
 * Every new buffer is created inside an out-of-memory error scope of its own
 * (a session records its ops, and so allocates, before it submits); `check()`
 * settles those scopes: a buffer the driver could not back is dropped from the
 * pool, never reused, and the check rejects with `OutOfMemoryError`.
 */
class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly all: GPUBuffer[] = [];
  private readonly ids = new WeakMap<GPUBuffer, number>();
  private readonly broken = new WeakSet<GPUBuffer>();
  private pending: Promise<string | null>[] = [];
  private next = 1;

  constructor(private readonly device: GPUDevice) {}

  take(kind: "storage" | "uniform" | "staging", bytes: number): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const key = `${kind}:${size}`;
    const list = this.free.get(key);
    let reused = list?.pop();
    while (reused !== undefined && this.broken.has(reused)) {
      reused.destroy();
      reused = list?.pop();
    }
    if (reused !== undefined) return reused;
    const usage =
      kind === "storage"
        ? GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC
        : kind === "uniform"
          ? GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST
          : GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
    this.device.pushErrorScope("out-of-memory");
    const buffer = this.device.createBuffer({ label: `grid ${key}`, size, usage });
    this.pending.push(
      this.device.popErrorScope().then(
        (e) => {
          if (e === null) return null;
          this.broken.add(buffer);
          return `${size} bytes: ${e.message}`;
        },
        () => null, // the device is lost: the session reports that
      ),
    );
    this.ids.set(buffer, this.next++);
    this.all.push(buffer);
    return buffer;
  }

  /** Settles the allocations since the last check; rejects with `OutOfMemoryError` if one failed. */
  async check(): Promise<void> {
    if (this.pending.length === 0) return;
    const pending = this.pending;
    this.pending = [];
    const failed = (await Promise.all(pending)).filter((m): m is string => m !== null);
    if (failed.length > 0) throw new OutOfMemoryError(`out of GPU memory allocating ${failed.join("; ")}`);
  }

  give(kind: "storage" | "uniform" | "staging", buffer: GPUBuffer): void {
    if (this.broken.has(buffer)) {
      buffer.destroy();
      return;
    }
    const key = `${kind}:${buffer.size}`;
    let list = this.free.get(key);
    if (list === undefined) this.free.set(key, (list = []));
    list.push(buffer);
  }

  id(buffer: GPUBuffer): number {
    return this.ids.get(buffer) ?? 0;
  }

  destroy(): void {
    for (const b of this.all) b.destroy();
    this.all.length = 0;
    this.free.clear();
  }
}

/** Creates the WebGPU backend for `device`; compiles its pipelines up front (rejects on a compile error). */
export async function createWgslBackend(device: GPUDevice, options: WgslBackendOptions): Promise<ComputeBackend & { readonly device: GPUDevice }> {
  const strategy = options.strategy;
  const wg = Math.max(1, Math.min(options.workgroupSize ?? 64, device.limits.maxComputeWorkgroupSizeX, device.limits.maxComputeInvocationsPerWorkgroup));
  const maxFlops = options.maxDispatchFlops ?? (options.fallback === true ? 5e7 : 2e9);
  const maxPerDim = device.limits.maxComputeWorkgroupsPerDimension;
  const cache = pipelineCacheFor(device);
  const pool = new BufferPool(device);
  const bindGroups = new WeakMap<GPUComputePipeline, Map<string, GPUBindGroup>>();
  let rows = options.maxRows ?? 4096;
  let disposed = false;
  let lost = false;
  void device.lost.then(() => {
    lost = true;
  });
  let tail: Promise<unknown> = Promise.resolve();

  const pipeline = (op: RecordedOp): Promise<GPUComputePipeline> => {
    const def = KERNELS[op.kernel];
    return cache.get({ code: def.code, constants: op.constants, label: def.name });
  };

  const bindGroup = (p: GPUComputePipeline, op: RecordedOp, uniform: GPUBuffer | null): GPUBindGroup => {
    const resources = uniform === null ? op.buffers : [uniform, ...op.buffers];
    const key = resources.map((b) => pool.id(b)).join(",");
    let byKey = bindGroups.get(p);
    if (byKey === undefined) bindGroups.set(p, (byKey = new Map()));
    let g = byKey.get(key);
    if (g === undefined) {
      g = device.createBindGroup({
        label: KERNELS[op.kernel].name,
        layout: p.getBindGroupLayout(0),
        entries: resources.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      byKey.set(key, g);
    }
    return g;
  };

  const ew = (): OverrideConstants => ({ WG: wg });

  function session(): Session & { run(reads: readonly Tensor[], into: readonly Float32Array[]): Promise<void>; release(): void } {
    const ops: RecordedOp[] = [];
    const taken: GpuTensor[] = [];
    let open = true;
    const alive = (): void => {
      if (!open) throw new Error("session already read");
    };
    const tensor = (r: number, c: number, dtype: "f32" | "u32" = "f32"): GpuTensor => {
      const t = { rows: r, cols: c, dtype, buffer: pool.take("storage", r * c * F32) };
      taken.push(t);
      return t;
    };
    const buf = (t: Tensor): GPUBuffer => (t as GpuTensor).buffer;
    const elementwise = (kernel: KernelName, n: number, r: number, c: number, scale: number, buffers: GPUBuffer[], flag = 0): void => {
      ops.push({
        kernel,
        constants: ew(),
        uniform: elementwiseUniform(r, c, scale, flag),
        buffers,
        groups: grid(Math.ceil(n / wg), maxPerDim),
      });
    };
    const s = {
      upload(data: Float32Array, r: number, c: number): Tensor {
        alive();
        checkDim("rows", r);
        checkDim("cols", c);
        if (data.length !== r * c) throw new Error(`upload: ${data.length} values for ${r}×${c}`);
        const t = tensor(r, c);
        device.queue.writeBuffer(t.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
        return t;
      },
      uploadLabels(labels: Uint32Array): Tensor {
        alive();
        checkDim("rows", labels.length);
        const t = tensor(labels.length, 1, "u32");
        device.queue.writeBuffer(t.buffer, 0, labels.buffer, labels.byteOffset, labels.byteLength);
        return t;
      },
      matmul(a: Tensor, b: Tensor, o: { transA?: boolean; transB?: boolean; alpha?: number } = {}): Tensor {
        alive();
        const { m, n, k } = matmulShape(a, b, o);
        const c = tensor(m, n);
        const tile = MATMUL_TILE[strategy];
        for (const chunk of rowChunks(m, n, k, tile.rows, maxFlops)) {
          ops.push({
            kernel: MATMUL_KERNEL[strategy],
            constants: {},
            uniform: matmulUniform({ M: m, N: n, K: k, rowStart: chunk.start, rows: chunk.rows, alpha: o.alpha ?? 1, transA: o.transA === true, transB: o.transB === true }),
            buffers: [buf(a), buf(b), c.buffer],
            groups: [Math.ceil(n / tile.cols), Math.ceil(chunk.rows / tile.rows)],
          });
        }
        return c;
      },
      biasAct(x: Tensor, bias: Tensor, act: "none" | "relu"): Tensor {
        alive();
        checkBias(x, bias);
        const y = tensor(x.rows, x.cols);
        elementwise("bias_act", x.rows * x.cols, x.rows, x.cols, 1, [buf(x), buf(bias), y.buffer], act === "relu" ? 1 : 0);
        return y;
      },
      reluBackward(dy: Tensor, y: Tensor): Tensor {
        alive();
        checkSameShape("reluBackward", dy, y);
        const dx = tensor(dy.rows, dy.cols);
        elementwise("relu_backward", dy.rows * dy.cols, dy.rows, dy.cols, 1, [buf(dy), buf(y), dx.buffer]);
        return dx;
      },
      softmaxXent(logits: Tensor, labels: Tensor, scale: number) {
        alive();
        checkLabels(logits, labels);
        const grad = tensor(logits.rows, logits.cols);
        const loss = tensor(logits.rows, 1);
        elementwise("softmax_xent", logits.rows, logits.rows, logits.cols, scale, [buf(logits), buf(labels), grad.buffer, loss.buffer]);
        return { grad, loss };
      },
      mseGrad(pred: Tensor, target: Tensor, scale: number) {
        alive();
        checkSameShape("mseGrad", pred, target);
        const grad = tensor(pred.rows, pred.cols);
        const loss = tensor(pred.rows, 1);
        elementwise("mse_grad", pred.rows, pred.rows, pred.cols, scale, [buf(pred), buf(target), grad.buffer, loss.buffer]);
        return { grad, loss };
      },
      colSum(m: Tensor, scale: number): Tensor {
        alive();
        const out = tensor(1, m.cols);
        ops.push({
          kernel: "col_sum",
          constants: ew(),
          uniform: elementwiseUniform(m.rows, m.cols, scale),
          buffers: [buf(m), out.buffer],
          groups: grid(m.cols, maxPerDim),
        });
        return out;
      },
      momentum(grad: Tensor, velocity: Tensor, o: { lr: number; mu: number }) {
        alive();
        checkSameShape("momentum", grad, velocity);
        const n = grad.rows * grad.cols;
        const delta = tensor(grad.rows, grad.cols);
        const v = tensor(grad.rows, grad.cols);
        ops.push({
          kernel: "momentum",
          constants: ew(),
          uniform: optimizerUniform({ n, step: 0, lr: o.lr, beta1: o.mu }),
          buffers: [buf(grad), buf(velocity), delta.buffer, v.buffer],
          groups: grid(Math.ceil(n / wg), maxPerDim),
        });
        return { delta, velocity: v };
      },
      adam(grad: Tensor, m: Tensor, v: Tensor, o: { lr: number; beta1: number; beta2: number; eps: number; step: number }) {
        alive();
        checkSameShape("adam", grad, m);
        checkSameShape("adam", grad, v);
        checkAdam(o);
        const n = grad.rows * grad.cols;
        const delta = tensor(grad.rows, grad.cols);
        const mo = tensor(grad.rows, grad.cols);
        const vo = tensor(grad.rows, grad.cols);
        ops.push({
          kernel: "adam",
          constants: ew(),
          uniform: optimizerUniform({ n, ...o, ...adamCorrections(o) }),
          buffers: [buf(grad), buf(m), buf(v), delta.buffer, mo.buffer, vo.buffer],
          groups: grid(Math.ceil(n / wg), maxPerDim),
        });
        return { delta, m: mo, v: vo };
      },
      async read(...tensors: Tensor[]): Promise<Float32Array[]> {
        const out = tensors.map((t) => new Float32Array(t.rows * t.cols));
        await s.run(tensors, out);
        return out;
      },
      readInto(tensors: readonly Tensor[], into: readonly Float32Array[]): Promise<void> {
        return s.run(tensors, into);
      },
      async run(reads: readonly Tensor[], into: readonly Float32Array[]): Promise<void> {
        alive();
        checkReadInto(reads, into);
        open = false;
        const pipelines = await Promise.all(ops.map(pipeline));
        if (lost) throw new DeviceLostError("the WebGPU device was lost");
        const bytes = reads.reduce((n, t) => n + t.rows * t.cols * F32, 0);
        const staging = pool.take("staging", bytes);
        try {
          // The session's buffers (recorded ops) and the staging buffer exist, or OutOfMemoryError.
          await pool.check();
        } catch (e) {
          pool.give("staging", staging);
          throw e;
        }
        if (lost) throw new DeviceLostError("the WebGPU device was lost");
        device.pushErrorScope("out-of-memory");
        device.pushErrorScope("validation");
        const uniforms: GPUBuffer[] = [];
        let validation: Promise<GPUError | null> = Promise.resolve(null);
        let memory: Promise<GPUError | null> = Promise.resolve(null);
        try {
          const encoder = device.createCommandEncoder({ label: "grid session" });
          const pass = encoder.beginComputePass({ label: "grid kernels" });
          ops.forEach((op, i) => {
            const p = pipelines[i];
            if (p === undefined) throw new Error("missing pipeline");
            let u: GPUBuffer | null = null;
            if (op.uniform !== null) {
              u = pool.take("uniform", op.uniform.byteLength);
              uniforms.push(u);
              device.queue.writeBuffer(u, 0, op.uniform);
            }
            pass.setPipeline(p);
            pass.setBindGroup(0, bindGroup(p, op, u));
            pass.dispatchWorkgroups(op.groups[0], op.groups[1]);
          });
          pass.end();
          let offset = 0;
          for (const t of reads) {
            const n = t.rows * t.cols * F32;
            encoder.copyBufferToBuffer(buf(t), 0, staging, offset, n);
            offset += n;
          }
          device.queue.submit([encoder.finish()]);
        } finally {
          // Scopes are popped on every path so they never leak onto later work.
          validation = device.popErrorScope();
          memory = device.popErrorScope();
        }
        try {
          const [v, m] = await Promise.all([validation, memory]);
          await pool.check(); // the uniform buffers
          if (m !== null) throw new OutOfMemoryError(`out of GPU memory: ${m.message}`);
          if (v !== null) throw new Error(`kernel validation failed: ${v.message}`);
          try {
            await staging.mapAsync(GPUMapMode.READ, 0, Math.max(16, Math.ceil(bytes / 16) * 16));
          } catch (e) {
            // device.lost may settle a moment after mapAsync rejects.
            const wasLost = lost || (await Promise.race([device.lost.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 200))]));
            if (wasLost) {
              lost = true;
              throw new DeviceLostError("the WebGPU device was lost");
            }
            throw e;
          }
          const mapped = staging.getMappedRange(0, Math.ceil(bytes / 16) * 16 || 16);
          try {
            let at = 0;
            reads.forEach((t, i) => {
              const n = t.rows * t.cols;
              into[i]?.set(t.dtype === "u32" ? new Uint32Array(mapped, at * F32, n) : new Float32Array(mapped, at * F32, n));
              at += n;
            });
          } finally {
            staging.unmap();
          }
        } finally {
          pool.give("staging", staging);
          for (const u of uniforms) pool.give("uniform", u);
        }
      },
      release(): void {
        for (const t of taken) pool.give("storage", t.buffer);
        taken.length = 0;
      },
    };
    return s;
  }

  // Compile every pipeline this strategy uses now, so the first step (and the
  // timing in select.ts) does not pay for compilation.
  await Promise.all([
    cache.get({ code: KERNELS[MATMUL_KERNEL[strategy]].code, constants: {}, label: MATMUL_KERNEL[strategy] }),
    cache.get({ code: KERNELS.bias_act.code, constants: { WG: wg }, label: "bias_act" }),
    cache.get({ code: KERNELS.relu_backward.code, constants: { WG: wg }, label: "relu_backward" }),
    cache.get({ code: KERNELS.softmax_xent.code, constants: { WG: wg }, label: "softmax_xent" }),
    cache.get({ code: KERNELS.mse_grad.code, constants: { WG: wg }, label: "mse_grad" }),
    cache.get({ code: KERNELS.col_sum.code, constants: { WG: wg }, label: "col_sum" }),
    cache.get({ code: KERNELS.momentum.code, constants: { WG: wg }, label: "momentum" }),
    cache.get({ code: KERNELS.adam.code, constants: { WG: wg }, label: "adam" }),
  ]);

  return {
    backend: "webgpu",
    kernel: `wgsl-${strategy}`,
    adapter: options.adapter,
    device,
    get maxRows() {
      return rows;
    },
    session<T>(body: (s: Session) => Promise<T>): Promise<T> {
      const run = tail.then(async () => {
        if (disposed) throw new Error("WebGPU backend is disposed");
        if (lost) throw new DeviceLostError("the WebGPU device was lost");
        const s = session();
        try {
          return await body(s);
        } finally {
          s.release();
        }
      });
      tail = run.catch(() => undefined);
      return run;
    },
    shrink() {
      if (rows <= 1) return false;
      rows = Math.floor(rows / 2);
      return true;
    },
    dispose() {
      disposed = true;
      pool.destroy();
    },
  };
}
