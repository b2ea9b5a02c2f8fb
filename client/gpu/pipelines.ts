/**
 * Compute-pipeline cache, one per device.
 *
 * Contract: a pipeline is identified by the exact WGSL source it was built
 * from, its entry point and its `override` constants. The key is the JSON of
 * `[source, entryPoint, [[name, value], …]]` with the constants sorted by
 * name, so two different programs never share a key (no hand-joined strings
 * that could collide) and the order constants were listed in does not matter.
 * Concurrent requests for one key share a single compilation; a failed
 * compilation is not cached, so the next request retries.
 */

export type OverrideConstants = Readonly<Record<string, number>>;

export interface PipelineSpec {
  /** Final WGSL source. */
  readonly code: string;
  /** Entry point; "main" when omitted. */
  readonly entryPoint?: string;
  /** Values for the shader's `override` declarations. */
  readonly constants?: OverrideConstants;
  /** Label for the platform's error messages. */
  readonly label?: string;
}

/** The collision-free cache key of a pipeline (see the file comment). */
export function pipelineKey(spec: PipelineSpec): string {
  const constants = Object.entries(spec.constants ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, value] of constants) {
    if (!Number.isFinite(value)) throw new Error(`override constant ${name} must be finite, got ${value}`);
  }
  return JSON.stringify([spec.code, spec.entryPoint ?? "main", constants]);
}

export class PipelineCache {
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private readonly modules = new Map<string, GPUShaderModule>();

  constructor(readonly device: GPUDevice) {}

  /** Number of distinct pipelines built or being built. */
  get size(): number {
    return this.pipelines.size;
  }

  /**
   * The pipeline for `spec` with an "auto" layout, compiled at most once per
   * key. Rejects with the compiler's message when the WGSL or constants are invalid.
   */
  get(spec: PipelineSpec): Promise<GPUComputePipeline> {
    const key = pipelineKey(spec);
    const cached = this.pipelines.get(key);
    if (cached !== undefined) return cached;
    const built = this.build(spec);
    this.pipelines.set(key, built);
    built.catch(() => {
      if (this.pipelines.get(key) === built) this.pipelines.delete(key);
    });
    return built;
  }

  /** Forgets every pipeline (e.g. before re-acquiring a lost device with a new cache). */
  clear(): void {
    this.pipelines.clear();
    this.modules.clear();
  }

  private module(code: string, label: string | undefined): GPUShaderModule {
    let module = this.modules.get(code);
    if (module === undefined) {
      module = this.device.createShaderModule(label !== undefined ? { code, label } : { code });
      this.modules.set(code, module);
    }
    return module;
  }

  private async build(spec: PipelineSpec): Promise<GPUComputePipeline> {
    const module = this.module(spec.code, spec.label);
    const compute: GPUProgrammableStage = { module, entryPoint: spec.entryPoint ?? "main" };
    if (spec.constants !== undefined) compute.constants = { ...spec.constants };
    const descriptor: GPUComputePipelineDescriptor = { layout: "auto", compute };
    if (spec.label !== undefined) descriptor.label = spec.label;
    try {
      return await this.device.createComputePipelineAsync(descriptor);
    } catch (err) {
      const detail = await compilationMessages(module);
      const base = err instanceof Error ? err.message : String(err);
      throw new Error(`pipeline ${spec.label ?? "(unlabelled)"}: ${base}${detail}`);
    }
  }
}

async function compilationMessages(module: GPUShaderModule): Promise<string> {
  try {
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    return errors.map((m) => `\n  ${m.lineNum}:${m.linePos} ${m.message}`).join("");
  } catch {
    return "";
  }
}

const caches = new WeakMap<GPUDevice, PipelineCache>();

/** The shared cache of `device` (created on first use). */
export function pipelineCacheFor(device: GPUDevice): PipelineCache {
  let cache = caches.get(device);
  if (cache === undefined) {
    cache = new PipelineCache(device);
    caches.set(device, cache);
  }
  return cache;
}
