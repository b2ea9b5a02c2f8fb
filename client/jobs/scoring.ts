/**
 * Scoring a classifier's logits on the CPU, shared by the jobs' test metrics:
 * whether the argmax is the label, and the softmax cross-entropy (computed
 * stably, with the maximum subtracted).
 */
export interface Score {
  readonly correct: boolean;
  readonly loss: number;
}

export function scoreLogits(logits: ArrayLike<number>, classes: number, label: number): Score {
  let best = 0;
  let max = -Infinity;
  for (let k = 0; k < classes; k++) {
    const l = logits[k] ?? 0;
    if (l > max) {
      max = l;
      best = k;
    }
  }
  let z = 0;
  for (let k = 0; k < classes; k++) z += Math.exp((logits[k] ?? 0) - max);
  return { correct: best === label, loss: Math.log(z) - ((logits[label] ?? 0) - max) };
}
