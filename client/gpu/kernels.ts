/**
 * The WGSL kernel library, declared: for each kernel its source (shaders/,
 * imported with `?raw`), its bindings (binding 0 is always the uniform block;
 * storage buffers follow in order), its uniform layout and its `override`
 * constants. gpu/wgsl-backend.ts owns the boilerplate (pipelines from the
 * cache, bind groups, dispatch sizes); this file only says what each kernel is.
 */
import matmulNaive from "../../shaders/matmul_naive.wgsl?raw";
import matmulVec4 from "../../shaders/matmul_vec4.wgsl?raw";
import matmulTiled from "../../shaders/matmul_tiled.wgsl?raw";
import matmulCommon from "../../shaders/matmul_common.wgsl?raw";
import biasAct from "../../shaders/bias_act.wgsl?raw";
import reluBackward from "../../shaders/relu_backward.wgsl?raw";
import softmaxXent from "../../shaders/softmax_xent.wgsl?raw";
import mseGrad from "../../shaders/mse_grad.wgsl?raw";
import colSum from "../../shaders/col_sum.wgsl?raw";
import fmaPeak from "../../shaders/fma_peak.wgsl?raw";
import momentum from "../../shaders/momentum.wgsl?raw";
import adam from "../../shaders/adam.wgsl?raw";

/** Uniform layouts shared by several kernels. */
export type UniformLayout =
  /** `M, N, K, rowStart, rows: u32; alpha: f32; sAi, sAk, sBk, sBn: u32` (48 bytes with padding). */
  | "matmul"
  /** `rows, cols: u32; scale: f32; flag: u32` (16 bytes; flag = bias_act's activation). */
  | "elementwise"
  /** `n, step: u32; lr, beta1, beta2, eps, c1, c2: f32` (32 bytes; momentum reads beta1 as mu). */
  | "optimizer"
  /** No uniform block. */
  | "none";

export interface KernelDef {
  readonly name: string;
  readonly code: string;
  readonly uniform: UniformLayout;
  /** Storage bindings in binding order (after the uniform at 0, if any); the last `outputs` are written. */
  readonly storage: readonly string[];
  readonly outputs: number;
}

/** Matrix-multiply strategies; the kernel variant a GPU backend reports is `wgsl-<strategy>`. */
export type MatmulStrategy = "naive" | "vec4" | "tiled";

/** Rows and columns of C one workgroup of each strategy covers (with its default constants). */
export const MATMUL_TILE: Readonly<Record<MatmulStrategy, { rows: number; cols: number }>> = {
  naive: { rows: 16, cols: 16 },
  vec4: { rows: 32, cols: 32 },
  tiled: { rows: 32, cols: 32 },
};

/** A matmul strategy: its own source after the uniform block, bindings and loads all strategies share. */
const mm = (name: string, code: string): KernelDef => ({ name, code: `${matmulCommon}\n${code}`, uniform: "matmul", storage: ["a", "b", "c"], outputs: 1 });

export const KERNELS = {
  matmul_naive: mm("matmul_naive", matmulNaive),
  matmul_vec4: mm("matmul_vec4", matmulVec4),
  matmul_tiled: mm("matmul_tiled", matmulTiled),
  bias_act: { name: "bias_act", code: biasAct, uniform: "elementwise", storage: ["x", "bias", "y"], outputs: 1 },
  relu_backward: { name: "relu_backward", code: reluBackward, uniform: "elementwise", storage: ["dy", "y", "dx"], outputs: 1 },
  softmax_xent: { name: "softmax_xent", code: softmaxXent, uniform: "elementwise", storage: ["logits", "labels", "grad", "loss"], outputs: 2 },
  mse_grad: { name: "mse_grad", code: mseGrad, uniform: "elementwise", storage: ["pred", "target", "grad", "loss"], outputs: 2 },
  col_sum: { name: "col_sum", code: colSum, uniform: "elementwise", storage: ["m", "out"], outputs: 1 },
  momentum: { name: "momentum", code: momentum, uniform: "optimizer", storage: ["g", "v", "delta", "v_out"], outputs: 2 },
  adam: { name: "adam", code: adam, uniform: "optimizer", storage: ["g", "m", "v", "delta", "m_out", "v_out"], outputs: 3 },
  fma_peak: { name: "fma_peak", code: fmaPeak, uniform: "none", storage: ["out"], outputs: 1 },
} as const satisfies Record<string, KernelDef>;

export type KernelName = keyof typeof KERNELS;

export const MATMUL_KERNEL: Readonly<Record<MatmulStrategy, KernelName>> = {
  naive: "matmul_naive",
  vec4: "matmul_vec4",
  tiled: "matmul_tiled",
};

/** The uniform block of `layout` as bytes. */
export interface MatmulUniform {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  readonly rowStart: number;
  readonly rows: number;
  readonly alpha: number;
  readonly transA: boolean;
  readonly transB: boolean;
}

/** The matmul uniform block: shape, row range, alpha and the element strides that encode the transposes. */
export function matmulUniform(v: MatmulUniform): ArrayBuffer {
  const out = new ArrayBuffer(48);
  const d = new DataView(out);
  const words = [v.M, v.N, v.K, v.rowStart, v.rows];
  words.forEach((w, i) => d.setUint32(4 * i, w, true));
  d.setFloat32(20, v.alpha, true);
  d.setUint32(24, v.transA ? 1 : v.K, true); // sAi
  d.setUint32(28, v.transA ? v.M : 1, true); // sAk
  d.setUint32(32, v.transB ? 1 : v.N, true); // sBk
  d.setUint32(36, v.transB ? v.K : 1, true); // sBn
  return out;
}

/** The elementwise uniform block. */
export function elementwiseUniform(rows: number, cols: number, scale: number, flag = 0): ArrayBuffer {
  const out = new ArrayBuffer(16);
  const d = new DataView(out);
  d.setUint32(0, rows, true);
  d.setUint32(4, cols, true);
  d.setFloat32(8, scale, true);
  d.setUint32(12, flag, true);
  return out;
}

/** The optimizer uniform block (see `UniformLayout`). */
export function optimizerUniform(v: { n: number; step: number; lr: number; beta1: number; beta2?: number; eps?: number; c1?: number; c2?: number }): ArrayBuffer {
  const out = new ArrayBuffer(32);
  const d = new DataView(out);
  d.setUint32(0, v.n, true);
  d.setUint32(4, v.step, true);
  [v.lr, v.beta1, v.beta2 ?? 0, v.eps ?? 0, v.c1 ?? 1, v.c2 ?? 1].forEach((f, i) => d.setFloat32(8 + 4 * i, f, true));
  return out;
}

/**
 * Splits `rows` of an `N × K` product into dispatches of at most
 * `maxFlops` (2·rows·N·K) each, in multiples of `tileRows`: no single
 * dispatch may run long enough to trip a GPU watchdog (~100 ms).
 */
export function rowChunks(rows: number, n: number, k: number, tileRows: number, maxFlops: number): { start: number; rows: number }[] {
  const perRow = 2 * n * k;
  const fit = Math.max(tileRows, Math.floor(maxFlops / Math.max(1, perRow) / tileRows) * tileRows);
  const out: { start: number; rows: number }[] = [];
  for (let start = 0; start < rows; start += fit) out.push({ start, rows: Math.min(fit, rows - start) });
  return out;
}
