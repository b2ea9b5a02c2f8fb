// Scaled column sums of a rows × cols row-major matrix:
//
//   out[outOffset + j] = scale · Σ_r m[r · cols + j]      for j in [0, cols)
//
// Used twice per step: the bias update (m = G, cols = outDim,
// scale = -lr / batch, written after dW) and the mean loss (m = per-row loss,
// cols = 1, scale = 1 / batch, written after the bias update).
//
// One workgroup per column: its WG invocations stride over the rows, then
// combine their partial sums in workgroup memory (any WG, not only powers of
// two). Workgroups are numbered linearly over a 2-D grid.

override WG: u32 = 64u;

struct ColSum {
  rows: u32,
  cols: u32,
  outOffset: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> cs: ColSum;
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
  let live = col < cs.cols;

  var acc = 0.0;
  if (live) {
    for (var r = lid; r < cs.rows; r += WG) {
      acc += m[r * cs.cols + col];
    }
  }
  partial[lid] = acc;
  workgroupBarrier();

  // Halve the number of live partial sums until one is left.
  var live_count = WG;
  while (live_count > 1u) {
    let half = (live_count + 1u) / 2u;
    if (lid + half < live_count) {
      partial[lid] += partial[lid + half];
    }
    live_count = half;
    workgroupBarrier();
  }

  if (live && lid == 0u) {
    out[cs.outOffset + col] = cs.scale * partial[0];
  }
}
