// Fused squared error, per row of pred and target (rows × cols, row-major):
//   grad = scale · (pred − target);   loss[row] = ½ Σ_j (pred − target)²
// One invocation per row.

override WG: u32 = 64u;

struct Ew {
  rows: u32,
  cols: u32,
  scale: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> u: Ew;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = (wid.x + wid.y * nwg.x) * WG + lid;
  if (row >= u.rows) {
    return;
  }
  var s = 0.0;
  for (var j = 0u; j < u.cols; j++) {
    let idx = row * u.cols + j;
    let d = pred[idx] - tgt[idx];
    grad[idx] = u.scale * d;
    s = fma(d, d, s);
  }
  loss[row] = 0.5 * s;
}
