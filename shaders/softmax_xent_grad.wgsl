// Softmax cross-entropy, per row of the logits:
//
//   p     = softmax(z)                 (computed as exp(z - max z) / Σ exp(z - max z))
//   G     = p - onehot(label)          batch × outDim, row-major
//   loss  = -log p[label]              = log Σ exp(z - max z) - (z[label] - max z)
//
// The max subtraction keeps exp() in range for any finite logits. Labels are
// validated on the host to lie in [0, outDim). One invocation per row.

override WG: u32 = 64u;

struct Dims {
  batch: u32,
  inDim: u32,
  outDim: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLoss: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = (wid.x + wid.y * nwg.x) * WG + lid;
  if (row >= dims.batch) {
    return;
  }
  let n = dims.outDim;
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
    grad[base + j] = grad[base + j] * inv - select(0.0, 1.0, j == label);
  }
  rowLoss[row] = log(total) - (logits[base + label] - zMax);
}
