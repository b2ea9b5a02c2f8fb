/**
 * WebGPU device acquisition for the volunteer's worker (and the self-test page).
 *
 * Contract:
 * - `acquireDevice()` never throws: a page or worker without WebGPU, without an
 *   adapter, or whose device request fails gets `{ ok: false, reason }` with a
 *   sentence a person can read; the caller falls back to the CPU path.
 * - On success the device is requested with the adapter's own buffer-size and
 *   workgroup limits (not the spec minimums), so larger models fit.
 * - Device loss is surfaced, never swallowed: `lost` resolves once with the
 *   platform's `GPUDeviceLostInfo`, and `onLost` callbacks run then. Callers
 *   re-acquire and resume from their replica; a `destroy()` they did
 *   themselves arrives with reason "destroyed".
 */

/** What we report about an adapter. */
export interface AdapterDescription {
  /** Short name for reports: "swiftshader" for SwiftShader, else vendor/architecture/description. */
  readonly name: string;
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** The adapter is a fallback (CPU-backed or otherwise slow) one. */
  readonly isFallback: boolean;
  readonly isSwiftShader: boolean;
}

export interface AcquiredDevice {
  readonly ok: true;
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly info: AdapterDescription;
  /** Resolves once, when the device is lost (or destroyed). */
  readonly lost: Promise<GPUDeviceLostInfo>;
  /** Runs `callback` when the device is lost (at once if it already is); returns an unsubscribe. */
  onLost(callback: (info: GPUDeviceLostInfo) => void): () => void;
}

export interface NoDevice {
  readonly ok: false;
  /** Why there is no device, for logs and the page's status line. */
  readonly reason: string;
}

export type DeviceAcquisition = AcquiredDevice | NoDevice;

export interface AcquireOptions {
  readonly powerPreference?: GPUPowerPreference;
  /** Ask for a fallback adapter (tests of the CPU-backed path). */
  readonly forceFallbackAdapter?: boolean;
  /** A label for the device, shown in the platform's error messages. */
  readonly label?: string;
}

/** Limits raised from the spec minimum to whatever the adapter supports. */
const RAISED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Describes an adapter from `adapter.info`; detects SwiftShader by vendor, architecture or description. */
export function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info;
  const vendor = info.vendor;
  const architecture = info.architecture;
  const device = info.device;
  const description = info.description;
  const text = `${vendor} ${architecture} ${device} ${description}`.toLowerCase();
  const isSwiftShader = text.includes("swiftshader");
  // Older engines exposed the flag on the adapter itself, not on its info.
  const legacy = (adapter as GPUAdapter & { readonly isFallbackAdapter?: boolean }).isFallbackAdapter;
  const isFallback = info.isFallbackAdapter === true || legacy === true || isSwiftShader;
  const parts = [vendor, architecture, description].filter((p) => p !== "");
  const name = isSwiftShader ? "swiftshader" : parts.length > 0 ? parts.join(" / ") : "unknown adapter";
  return { name, vendor, architecture, device, description, isFallback, isSwiftShader };
}

/** Requests an adapter and a device; see the file comment for the contract. */
export async function acquireDevice(options: AcquireOptions = {}): Promise<DeviceAcquisition> {
  const gpu: GPU | undefined = typeof navigator === "undefined" ? undefined : navigator.gpu;
  if (gpu === undefined) {
    const secure = typeof isSecureContext === "boolean" ? isSecureContext : true;
    return {
      ok: false,
      reason: secure
        ? "WebGPU is not available in this browser (navigator.gpu is missing)"
        : "WebGPU needs a secure context (https or localhost); navigator.gpu is missing",
    };
  }

  let adapter: GPUAdapter | null;
  try {
    const request: GPURequestAdapterOptions = {};
    if (options.powerPreference !== undefined) request.powerPreference = options.powerPreference;
    if (options.forceFallbackAdapter !== undefined) request.forceFallbackAdapter = options.forceFallbackAdapter;
    adapter = await gpu.requestAdapter(request);
  } catch (err) {
    return { ok: false, reason: `requestAdapter failed: ${errorText(err)}` };
  }
  if (adapter === null) {
    return { ok: false, reason: "WebGPU is present but no adapter is available (blocklisted or disabled GPU)" };
  }

  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];

  let device: GPUDevice;
  try {
    const descriptor: GPUDeviceDescriptor = { requiredLimits };
    if (options.label !== undefined) descriptor.label = options.label;
    device = await adapter.requestDevice(descriptor);
  } catch (err) {
    return { ok: false, reason: `requestDevice failed: ${errorText(err)}` };
  }

  const listeners = new Set<(info: GPUDeviceLostInfo) => void>();
  let lostInfo: GPUDeviceLostInfo | undefined;
  const lost = device.lost.then((info) => {
    lostInfo = info;
    for (const callback of listeners) callback(info);
    listeners.clear();
    return info;
  });

  return {
    ok: true,
    adapter,
    device,
    info: describeAdapter(adapter),
    lost,
    onLost(callback) {
      if (lostInfo !== undefined) {
        const info = lostInfo;
        queueMicrotask(() => callback(info));
        return () => {};
      }
      listeners.add(callback);
      return () => {
        listeners.delete(callback);
      };
    },
  };
}

/**
 * A workgroup size for 1-D kernels: `preferred`, clamped to the device's
 * `maxComputeWorkgroupSizeX` and `maxComputeInvocationsPerWorkgroup`.
 */
export function workgroupSize1D(device: GPUDevice, preferred = 64): number {
  return Math.max(
    1,
    Math.min(preferred, device.limits.maxComputeWorkgroupSizeX, device.limits.maxComputeInvocationsPerWorkgroup),
  );
}
