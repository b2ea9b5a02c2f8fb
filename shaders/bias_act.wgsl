// Fused bias + activation: Y = act(X + 1·bᵀ), X and Y rows × cols row-major,
// b of cols entries added to every row; act = 0 identity, 1 ReLU (a uniform,
// so one pipeline serves both).
// One invocation per element; workgroups numbered x + y·nx over a 2-D grid.

override WG: u32 = 64u;

struct Ew {
  rows: u32,
  cols: u32,
  scale: f32,
  act: u32,
}

@group(0) @binding(0) var<uniform> u: Ew;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= u.rows * u.cols) {
    return;
  }
  let v = x[idx] + bias[idx % u.cols];
  if (u.act == 1u) {
    y[idx] = max(v, 0.0);
  } else {
    y[idx] = v;
  }
}
