/**
 * URLs of TF.js's WASM binaries inside dist/ (vite copies each `?url` import
 * into dist/assets with a content hash), so the CPU path never touches the
 * network. Browser-only: Node code passes node_modules paths instead.
 */
import type { WasmPaths } from "./wasm-backend.ts";
import plain from "../../node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url";
import simd from "../../node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url";
import threaded from "../../node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url";

/** Absolute URLs (workers resolve relative ones against their own script). */
export function distWasmPaths(): WasmPaths {
  const abs = (u: string): string => new URL(u, self.location.href).href;
  return {
    "tfjs-backend-wasm.wasm": abs(plain),
    "tfjs-backend-wasm-simd.wasm": abs(simd),
    "tfjs-backend-wasm-threaded-simd.wasm": abs(threaded),
  };
}
