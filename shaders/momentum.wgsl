// Heavy-ball momentum, elementwise over n parameters:
//
//   v' = mu · v + g        delta = −lr · v'
//
// g, v: the mean gradient and the velocity in; delta, v_out: the update the
// worker applies (and sends to its peers) and the new velocity. One
// invocation per element; workgroups numbered x + y·nx over a 2-D grid.

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
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_out: array<f32>;

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
  let vi = u.beta1 * v[idx] + g[idx];
  v_out[idx] = vi;
  delta[idx] = -u.lr * vi;
}
