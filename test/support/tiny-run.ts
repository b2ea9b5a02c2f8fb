/**
 * A small synthetic data set and the options of a JobRun on it, for Node
 * tests of the coordinator (no MNIST, no browser). Each test overrides what
 * it is about.
 */
import { makeShards, type Dataset, type ImageSet } from "../../coordinator/data.ts";
import type { JobOptions } from "../../coordinator/job.ts";
import { mnistSoftmax } from "../../client/jobs/mnist-softmax.ts";

/** `count` images whose label is written into one bright pixel. */
export function tinySet(count: number): ImageSet {
  const pixels = new Uint8Array(count * 784);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    labels[n] = n % 10;
    pixels[n * 784 + (n % 10)] = 255;
  }
  return { count, pixelsPerImage: 784, pixels, labels };
}

/** 200 training images in shards of `shardSize`, `test` test images. */
export function tinyDataset(test = 50, shardSize = 50): Dataset {
  const train = tinySet(200);
  return { train, test: tinySet(test), shards: makeShards(train, shardSize) };
}

/** mnist-softmax on the tiny data set under SSP s = 2, no state directory, no limits. */
export function tinyJobOptions(extra: Partial<JobOptions> = {}): JobOptions {
  return {
    job: mnistSoftmax,
    data: tinyDataset(),
    consistency: { mode: "ssp", staleness: 2 },
    seed: 1,
    maxClock: 0,
    maxEpochs: 0,
    targetAccuracy: 0.99,
    minWorkers: 1,
    evalEvery: 5,
    batch: 8,
    learningRate: 0.1,
    store: null,
    ...extra,
  };
}
