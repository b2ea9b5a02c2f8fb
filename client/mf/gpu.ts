/**
 * The WGSL path of block SGD (shaders/mf-sgd.wgsl): one command buffer per
 * block pass with one dispatch per conflict-free round, each selecting its
 * round's uniform entry by dynamic offset. A block's ratings stay on the GPU
 * between passes; U_k and V_b are written before and read back after. The
 * CPU reference (sgd.ts `sgdBlock`) is the test oracle.
 */
import shaderSource from "../../shaders/mf-sgd.wgsl?raw";
import { acquireDevice, workgroupSize1D, type AcquiredDevice } from "../gpu/device.ts";
import type { BlockRatings } from "./sgd.ts";

/** Uniform entries are 256 bytes apart (minUniformBufferOffsetAlignment ≤ 256 everywhere). */
const STRIDE = 256;

interface GpuBlock {
  readonly rows: GPUBuffer;
  readonly cols: GPUBuffer;
  readonly vals: GPUBuffer;
  readonly err: GPUBuffer;
  readonly uniforms: GPUBuffer;
  readonly rounds: number;
}

export class MfGpu {
  private readonly blocks = new WeakMap<BlockRatings, GpuBlock>();
  private constructor(
    readonly acquired: AcquiredDevice,
    private readonly pipeline: GPUComputePipeline,
    private readonly layout: GPUBindGroupLayout,
    private readonly wg: number,
  ) {}

  /** A device and the pipeline, or the reason there is none. */
  static async create(): Promise<MfGpu | string> {
    const a = await acquireDevice({ label: "grid-mf" });
    if (!a.ok) return a.reason;
    const device = a.device;
    const wg = workgroupSize1D(device, 64);
    const storage = (type: GPUBufferBindingType, binding: number): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    const layout = device.createBindGroupLayout({
      label: "mf-sgd",
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: 32 } },
        storage("read-only-storage", 1),
        storage("read-only-storage", 2),
        storage("read-only-storage", 3),
        storage("storage", 4),
        storage("storage", 5),
        storage("storage", 6),
      ],
    });
    const module = device.createShaderModule({ label: "mf-sgd", code: shaderSource });
    const pipeline = await device.createComputePipelineAsync({
      label: "mf-sgd",
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main", constants: { WG: wg } },
    });
    return new MfGpu(a, pipeline, layout, wg);
  }

  get adapterName(): string {
    return this.acquired.info.name;
  }

  private upload(block: BlockRatings): GpuBlock {
    const cached = this.blocks.get(block);
    if (cached) return cached;
    const device = this.acquired.device;
    const make = (data: Uint32Array | Float32Array, usage: number): GPUBuffer => {
      const buf = device.createBuffer({ size: Math.max(16, data.byteLength), usage: usage | GPUBufferUsage.COPY_DST });
      if (data.byteLength > 0) device.queue.writeBuffer(buf, 0, data);
      return buf;
    };
    const rounds = block.roundStart.length - 1;
    const g: GpuBlock = {
      rows: make(block.rows, GPUBufferUsage.STORAGE),
      cols: make(block.cols, GPUBufferUsage.STORAGE),
      vals: make(block.vals, GPUBufferUsage.STORAGE),
      err: device.createBuffer({ size: Math.max(16, block.vals.length * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC }),
      uniforms: device.createBuffer({ size: Math.max(1, rounds) * STRIDE, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
      rounds,
    };
    this.blocks.set(block, g);
    return g;
  }

  /**
   * One SGD pass over `block` on `u` and `v` (updated in place), like
   * `sgdBlock`; returns the sum of squared errors.
   */
  async sgdBlock(u: Float32Array, v: Float32Array, rank: number, block: BlockRatings, lr: number, lambda: number): Promise<number> {
    const device = this.acquired.device;
    const g = this.upload(block);
    const n = block.vals.length;
    if (n === 0) return 0;
    // Per-round uniforms.
    const bytes = new ArrayBuffer(g.rounds * STRIDE);
    const dv = new DataView(bytes);
    for (let r = 0; r < g.rounds; r++) {
      const o = r * STRIDE;
      dv.setUint32(o, block.roundStart[r]!, true);
      dv.setUint32(o + 4, block.roundStart[r + 1]! - block.roundStart[r]!, true);
      dv.setUint32(o + 8, rank, true);
      dv.setFloat32(o + 12, lr, true);
      dv.setFloat32(o + 16, lambda, true);
    }
    device.queue.writeBuffer(g.uniforms, 0, bytes);
    const ub = device.createBuffer({ size: Math.max(16, u.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    const vb = device.createBuffer({ size: Math.max(16, v.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    device.queue.writeBuffer(ub, 0, u);
    device.queue.writeBuffer(vb, 0, v);
    const readBytes = u.byteLength + v.byteLength + n * 4;
    const read = device.createBuffer({ size: readBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const bind = device.createBindGroup({
      layout: this.layout,
      entries: [
        { binding: 0, resource: { buffer: g.uniforms, size: 32 } },
        { binding: 1, resource: { buffer: g.rows } },
        { binding: 2, resource: { buffer: g.cols } },
        { binding: 3, resource: { buffer: g.vals } },
        { binding: 4, resource: { buffer: ub } },
        { binding: 5, resource: { buffer: vb } },
        { binding: 6, resource: { buffer: g.err } },
      ],
    });
    const enc = device.createCommandEncoder({ label: "mf-sgd" });
    const pass = enc.beginComputePass();
    pass.setPipeline(this.pipeline);
    for (let r = 0; r < g.rounds; r++) {
      const count = block.roundStart[r + 1]! - block.roundStart[r]!;
      if (count === 0) continue;
      pass.setBindGroup(0, bind, [r * STRIDE]);
      pass.dispatchWorkgroups(Math.ceil(count / this.wg));
    }
    pass.end();
    enc.copyBufferToBuffer(ub, 0, read, 0, u.byteLength);
    enc.copyBufferToBuffer(vb, 0, read, u.byteLength, v.byteLength);
    enc.copyBufferToBuffer(g.err, 0, read, u.byteLength + v.byteLength, n * 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    read.destroy();
    ub.destroy();
    vb.destroy();
    u.set(out.subarray(0, u.length));
    v.set(out.subarray(u.length, u.length + v.length));
    let sq = 0;
    for (let e = u.length + v.length; e < out.length; e++) sq += out[e]!;
    return sq;
  }
}
