// C = alpha · op(A) · op(B), shared-memory tiled: a workgroup of
// (TILE/4) × (TILE/4) invocations computes a TILE × TILE block of C; per step
// of KT along K it stages a TILE × KT slab of op(A) and a KT × TILE slab of
// op(B) in workgroup memory (zero-padded past the edges), then each invocation
// accumulates a 4 × 4 sub-block from it. Wins on real GPUs, where workgroup
// memory is fast and global loads are not.
//
// Layouts, transposes and the row range as in matmul_naive.wgsl.
// Grid: x over column tiles, y over row tiles.

override TILE: u32 = 32u;
override KT: u32 = 16u;

var<workgroup> As: array<f32, TILE * KT>;
var<workgroup> Bs: array<f32, KT * TILE>;

@compute @workgroup_size(TILE / 4u, TILE / 4u)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) tid: u32,
) {
  let threads = (TILE / 4u) * (TILE / 4u);
  let rowBase = wid.y * TILE;   // relative to rowStart
  let colBase = wid.x * TILE;
  var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  for (var k0 = 0u; k0 < u.K; k0 += KT) {
    for (var e = tid; e < TILE * KT; e += threads) {
      let r = e / KT;
      let q = e - r * KT;
      let row = rowBase + r;
      let p = k0 + q;
      var v = 0.0;
      if (row < u.rows && p < u.K) {
        v = loadA(u.rowStart + row, p);
      }
      As[e] = v;
    }
    for (var e = tid; e < KT * TILE; e += threads) {
      let r = e / TILE;
      let q = e - r * TILE;
      let p = k0 + r;
      let col = colBase + q;
      var v = 0.0;
      if (p < u.K && col < u.N) {
        v = loadB(p, col);
      }
      Bs[e] = v;
    }
    workgroupBarrier();
    for (var q = 0u; q < KT; q++) {
      let bOff = q * TILE + lid.x * 4u;
      let bv = vec4<f32>(Bs[bOff], Bs[bOff + 1u], Bs[bOff + 2u], Bs[bOff + 3u]);
      for (var r = 0u; r < 4u; r++) {
        acc[r] = fma(vec4<f32>(As[(lid.y * 4u + r) * KT + q]), bv, acc[r]);
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let row = rowBase + lid.y * 4u + r;
    if (row >= u.rows) {
      break;
    }
    let v = u.alpha * acc[r];
    for (var q = 0u; q < 4u; q++) {
      let col = colBase + lid.x * 4u + q;
      if (col < u.N) {
        c[(u.rowStart + row) * u.N + col] = v[q];
      }
    }
  }
}
