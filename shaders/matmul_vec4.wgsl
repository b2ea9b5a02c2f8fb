// C = alpha · op(A) · op(B), register-blocked: each invocation computes a
// 4 × 4 block of C in four vec4 accumulators, so every K step does 16 FMAs
// for 8 loads (the naive kernel does 1 for 2). No workgroup memory: on
// CPU-backed adapters (SwiftShader) this beats shared-memory tiling.
//
// Layouts, transposes and the row range as in matmul_naive.wgsl. Loads use
// clamped indices (always in bounds, no branch in the K loop); only the
// in-range part of the block is written, so any M, N, K work.
// Grid: x over column blocks of 4 (WG_X per workgroup), y over row blocks of 4.

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

fn loadB4(p: u32, j: vec4<u32>) -> vec4<f32> {
  let base = p * u.sBk;
  let o = j * u.sBn;
  return vec4<f32>(b[base + o.x], b[base + o.y], b[base + o.z], b[base + o.w]);
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j0 = gid.x * 4u;
  let r0 = gid.y * 4u;
  if (j0 >= u.N || r0 >= u.rows) {
    return;
  }
  let rowEnd = u.rowStart + u.rows - 1u;
  let i0 = u.rowStart + r0;
  // Clamped row and column indices: duplicates of the last row/column are
  // computed and then not written.
  let i = vec4<u32>(i0, min(i0 + 1u, rowEnd), min(i0 + 2u, rowEnd), min(i0 + 3u, rowEnd));
  let nMax = u.N - 1u;
  let j = vec4<u32>(j0, min(j0 + 1u, nMax), min(j0 + 2u, nMax), min(j0 + 3u, nMax));
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var p = 0u; p < u.K; p++) {
    let bv = loadB4(p, j);
    acc0 = fma(vec4<f32>(loadA(i.x, p)), bv, acc0);
    acc1 = fma(vec4<f32>(loadA(i.y, p)), bv, acc1);
    acc2 = fma(vec4<f32>(loadA(i.z, p)), bv, acc2);
    acc3 = fma(vec4<f32>(loadA(i.w, p)), bv, acc3);
  }
  var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var r = 0u; r < 4u; r++) {
    let row = i0 + r;
    if (row > rowEnd) {
      break;
    }
    let v = u.alpha * accs[r];
    for (var q = 0u; q < 4u; q++) {
      if (j0 + q < u.N) {
        c[row * u.N + j0 + q] = v[q];
      }
    }
  }
}
