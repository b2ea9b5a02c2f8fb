// Weight update of a dense layer: dW = scale · Xᵀ · G, with scale = -lr / batch.
//
//   X    batch × inDim, row-major
//   G    batch × outDim, row-major (softmax minus one-hot)
//   out  dW lands in out[0 .. inDim·outDim), row-major inDim × outDim
//
// One invocation per element of dW, summing over the batch rows; workgroups are
// numbered linearly over a 2-D grid.

override WG: u32 = 64u;

struct Dims {
  batch: u32,
  inDim: u32,
  outDim: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= dims.inDim * dims.outDim) {
    return;
  }
  let i = idx / dims.outDim;
  let j = idx - i * dims.outDim;
  var acc = 0.0;
  for (var r = 0u; r < dims.batch; r++) {
    acc = fma(x[r * dims.inDim + i], grad[r * dims.outDim + j], acc);
  }
  out[idx] = dims.scale * acc;
}
