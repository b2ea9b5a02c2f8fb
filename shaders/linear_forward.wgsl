// Dense layer forward pass: logits = X · W + b.
//
//   X       batch × inDim, row-major
//   params  W (inDim × outDim, row-major) followed by b (outDim)
//   logits  batch × outDim, row-major
//
// One invocation per logit. Workgroups are numbered linearly over a 2-D grid
// (x, then y) so that more than maxComputeWorkgroupsPerDimension of them can
// be dispatched; invocations past batch·outDim do nothing.

override WG: u32 = 64u;

struct Dims {
  batch: u32,
  inDim: u32,
  outDim: u32,
  // -lr / batch; unused here, shared layout with the other kernels.
  scale: f32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= dims.batch * dims.outDim) {
    return;
  }
  let row = idx / dims.outDim;
  let col = idx - row * dims.outDim;
  let xBase = row * dims.inDim;
  var acc = params[dims.inDim * dims.outDim + col];
  for (var k = 0u; k < dims.inDim; k++) {
    acc = fma(x[xBase + k], params[k * dims.outDim + col], acc);
  }
  logits[idx] = acc;
}
