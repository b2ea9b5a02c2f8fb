// One SGD round of matrix factorization over ratings [start, start + count)
// of a block (client/mf/sgd.ts): no two ratings of a round share a row or a
// column, so each invocation owns the factors it touches and there are no
// write conflicts. One dispatch per round; the round's parameters come from a
// uniform entry selected with a dynamic offset. Per rating (i, j, r):
//   e = r − u_i·v_j;  u_i ← (1 − lr·λ)·u_i + lr·e·v_j;  v_j ← (1 − lr·λ)·v_j + lr·e·u_i
// (both from the old values); err[rating] = e².

override WG: u32 = 64u;

struct Round {
  start: u32,
  count: u32,
  rank: u32,
  lr: f32,
  lambda: f32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> round: Round;
@group(0) @binding(1) var<storage, read> rows: array<u32>;
@group(0) @binding(2) var<storage, read> cols: array<u32>;
@group(0) @binding(3) var<storage, read> vals: array<f32>;
@group(0) @binding(4) var<storage, read_write> uf: array<f32>;
@group(0) @binding(5) var<storage, read_write> vf: array<f32>;
@group(0) @binding(6) var<storage, read_write> err: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= round.count) {
    return;
  }
  let e = round.start + i;
  let rank = round.rank;
  let uo = rows[e] * rank;
  let vo = cols[e] * rank;
  var dot = 0.0;
  for (var f = 0u; f < rank; f++) {
    dot = dot + uf[uo + f] * vf[vo + f];
  }
  let diff = vals[e] - dot;
  err[e] = diff * diff;
  let g = round.lr * diff;
  let decay = 1.0 - round.lr * round.lambda;
  for (var f = 0u; f < rank; f++) {
    let a = uf[uo + f];
    let b = vf[vo + f];
    uf[uo + f] = decay * a + g * b;
    vf[vo + f] = decay * b + g * a;
  }
}
