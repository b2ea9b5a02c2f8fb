// Fused softmax cross-entropy loss and gradient, per row of the logits Z
// (rows × cols, row-major):
//
//   p     = softmax(z)       computed as exp(z − max z) / Σ exp(z − max z)
//   grad  = scale · (p − onehot(label))      rows × cols
//   loss  = −log p[label] = log Σ exp(z − max z) − (z[label] − max z)
//
// The max subtraction keeps exp() in range for any finite logits. Labels are
// validated on the host to lie in [0, cols). One invocation per row.

override WG: u32 = 64u;

struct Ew {
  rows: u32,
  cols: u32,
  scale: f32,
  pad: u32,
}

@group(0) @binding(0) var<uniform> u: Ew;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
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
  let n = u.cols;
  let base = row * n;
  var zMax = logits[base];
  for (var j = 1u; j < n; j++) {
    zMax = max(zMax, logits[base + j]);
  }
  var total = 0.0;
  for (var j = 0u; j < n; j++) {
    let e = exp(logits[base + j] - zMax);
    grad[base + j] = e;
    total += e;
  }
  let inv = 1.0 / total;
  let label = labels[row];
  for (var j = 0u; j < n; j++) {
    grad[base + j] = u.scale * (grad[base + j] * inv - select(0.0, 1.0, j == label));
  }
  loss[row] = log(total) - (logits[base + label] - zMax);
}
