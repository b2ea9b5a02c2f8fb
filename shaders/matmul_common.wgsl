// What every matrix-multiply strategy shares (client/gpu/kernels.ts puts it
// in front of each matmul_*.wgsl): the uniform block with the shape, the row
// range and the strides that express transposes, the bindings, and the element loads
// of op(A) and op(B).

struct Mm {
  M: u32,
  N: u32,
  K: u32,
  rowStart: u32,
  rows: u32,
  alpha: f32,
  // Element strides: op(A)[i][p] = a[i·sAi + p·sAk], op(B)[p][j] = b[p·sBk + j·sBn]
  // (row-major A: sAi = K, sAk = 1; stored transposed: sAi = 1, sAk = M; same for B).
  sAi: u32,
  sAk: u32,
  sBk: u32,
  sBn: u32,
}

@group(0) @binding(0) var<uniform> u: Mm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn loadA(i: u32, p: u32) -> f32 {
  return a[i * u.sAi + p * u.sAk];
}

fn loadB(p: u32, j: u32) -> f32 {
  return b[p * u.sBk + j * u.sBn];
}
