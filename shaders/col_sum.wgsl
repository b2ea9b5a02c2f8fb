// Scaled column sums of a rows × cols row-major matrix:
//
//   out[j] = scale · Σ_r m[r · cols + j]      for j in [0, cols)
//
// Bias gradients (m = the layer's output gradient) and mean losses (m = the
// per-row losses, cols = 1, scale = 1 / rows).
// One workgroup per column: its WG invocations stride over the rows, then
// combine their partial sums in workgroup memory (any WG, not only powers of
// two). Workgroups are numbered linearly over a 2-D grid.

override WG: u32 = 64u;

struct Ew {
  rows: u32,
  cols: u32,
  scale: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> u: Ew;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Uniform across the workgroup, so the barriers below stay in uniform
  // control flow even for the workgroups past the last column.
  let col = wid.x + wid.y * nwg.x;
  let live = col < u.cols;
  var acc = 0.0;
  if (live) {
    for (var r = lid; r < u.rows; r += WG) {
      acc += m[r * u.cols + col];
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  var count = WG;
  while (count > 1u) {
    let half = (count + 1u) / 2u;
    if (lid + half < count) {
      partial[lid] += partial[lid + half];
    }
    count = half;
    workgroupBarrier();
  }
  if (live && lid == 0u) {
    out[col] = u.scale * partial[0];
  }
}
