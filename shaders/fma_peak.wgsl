// FMA-bound microkernel for the adapter's practical peak: every invocation
// runs ITERS iterations of 8 independent vec4 FMA chains (8 · 4 · 2 = 64
// FLOPs per iteration) on values that never leave registers, then writes one
// float so nothing is optimized away. FLOPs = invocations · ITERS · 64.

override WG: u32 = 64u;
override ITERS: u32 = 1024u;

@group(0) @binding(0) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let seed = f32(gid.x) * 1e-7;
  let m = vec4<f32>(0.999, 0.998, 0.997, 0.996);
  let k = vec4<f32>(seed, seed, seed, seed);
  var a0 = k + 0.1;
  var a1 = k + 0.2;
  var a2 = k + 0.3;
  var a3 = k + 0.4;
  var a4 = k + 0.5;
  var a5 = k + 0.6;
  var a6 = k + 0.7;
  var a7 = k + 0.8;
  for (var i = 0u; i < ITERS; i++) {
    a0 = fma(a0, m, k);
    a1 = fma(a1, m, k);
    a2 = fma(a2, m, k);
    a3 = fma(a3, m, k);
    a4 = fma(a4, m, k);
    a5 = fma(a5, m, k);
    a6 = fma(a6, m, k);
    a7 = fma(a7, m, k);
  }
  let s = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
  out[gid.x + gid.y * nwg.x * WG] = s.x + s.y + s.z + s.w;
}
