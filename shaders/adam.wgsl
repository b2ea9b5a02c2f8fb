// Adam (Kingma & Ba) with bias correction, elementwise over n parameters:
//
//   m' = b1 · m + (1 − b1) · g
//   v' = b2 · v + (1 − b2) · g²
//   delta = −lr · (m' / c1) / (sqrt(v' / c2) + eps),   c1 = 1 − b1^t, c2 = 1 − b2^t
//
// The host computes c1 and c2 for step t (in float64) and passes them in the
// uniform block. One invocation per element; workgroups numbered x + y·nx.

override WG: u32 = 64u;

struct Opt {
  n: u32,
  step: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  c1: f32,
  c2: f32,
}

@group(0) @binding(0) var<uniform> u: Opt;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> m: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> delta: array<f32>;
@group(0) @binding(5) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_out: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= u.n) {
    return;
  }
  let gi = g[idx];
  let mi = u.beta1 * m[idx] + (1.0 - u.beta1) * gi;
  let vi = u.beta2 * v[idx] + (1.0 - u.beta2) * gi * gi;
  m_out[idx] = mi;
  v_out[idx] = vi;
  delta[idx] = (-u.lr * (mi / u.c1)) / (sqrt(vi / u.c2) + u.eps);
}
