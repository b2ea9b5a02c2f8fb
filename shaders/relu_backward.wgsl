// Gradient through a ReLU: dX = dY ⊙ [Y > 0], Y being the ReLU's output.
// One invocation per element; workgroups numbered x + y·nx over a 2-D grid.

override WG: u32 = 64u;

struct Ew {
  rows: u32,
  cols: u32,
  scale: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> u: Ew;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

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
  dx[idx] = select(0.0, dy[idx], y[idx] > 0.0);
}
