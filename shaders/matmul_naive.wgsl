// C = alpha · op(A) · op(B), the baseline: one invocation per element of C.
//
//   op(A) is M × K: A is stored M × K row-major, or K × M for Aᵀ.
//   op(B) is K × N: B is stored K × N row-major, or N × K for Bᵀ.
//   Transposes are strides in the uniform block, so one pipeline serves all four.
//   C is M × N row-major. This dispatch covers rows [rowStart, rowStart + rows)
//   (long products are split over several dispatches to stay short).
// Grid: x over columns (WG_X per workgroup), y over rows (WG_Y per workgroup).

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let local = gid.y;
  if (j >= u.N || local >= u.rows) {
    return;
  }
  let i = u.rowStart + local;
  var acc = 0.0;
  for (var p = 0u; p < u.K; p++) {
    acc = fma(loadA(i, p), loadB(p, j), acc);
  }
  c[i * u.N + j] = u.alpha * acc;
}
