/**
 * A volunteer's work in one sub-epoch of job mf, written against two small
 * ports so the page (comlink worker + WebSocket + PeerJS) and the tests
 * (in-memory) run the same code. For each task of an `mf-step`, in order:
 *
 * 1. U_row: held at version t, else fetched from the coordinator's checkpoint.
 * 2. V_col: held at version t (handed over earlier, or kept), else waited for
 *    from the peer named in `vFrom` for up to `peerWaitMs`, else fetched from
 *    the checkpoint (the coordinator holds every block at the barrier).
 * 3. One SGD pass over the block's ratings.
 * 4. U_row and V_col uploaded as checkpoints, V_col handed to `sendTo` peer to
 *    peer and released (kept when this worker trains it next), `mf-done` sent.
 */
import type { ClientMessage, MfStepMessage } from "../../coordinator/protocol.ts";
import type { FactorBlock } from "./wire.ts";

export interface TrainerPort {
  version(kind: "u" | "v", index: number): Promise<number | null>;
  put(b: FactorBlock): Promise<boolean>;
  get(kind: "u" | "v", index: number): Promise<FactorBlock | null>;
  release(kind: "u" | "v", index: number): Promise<void>;
  keepRows(rows: number[]): Promise<void>;
  train(row: number, col: number, lr: number): Promise<{ sq: number; ratings: number; ms: number }>;
  memory(): Promise<{ modelBytes: number; peakModelBytes: number }>;
}

export interface MfIo {
  readonly self: string;
  /** Milliseconds to wait for a column block from a peer before taking the checkpoint. */
  readonly peerWaitMs: number;
  fetchBlock(kind: "u" | "v", index: number): Promise<FactorBlock>;
  sendPeer(to: string, b: FactorBlock): Promise<void>;
  upload(b: FactorBlock): void;
  send(m: ClientMessage): void;
  stats(): { bytesIn: number; bytesOut: number; peers: number };
  /** False once this membership is over: stop between tasks. */
  live(): boolean;
  sleep(ms: number): Promise<void>;
}

async function fromCheckpoint(trainer: TrainerPort, io: MfIo, kind: "u" | "v", index: number, version: number): Promise<void> {
  // The checkpoint is at `version` once the barrier passed; a fetch racing a
  // commit may see the old one, so try a few times.
  for (let attempt = 0; attempt < 20; attempt++) {
    const b = await io.fetchBlock(kind, index);
    if (b.version === version) {
      await trainer.release(kind, index);
      await trainer.put(b);
      return;
    }
    await io.sleep(100);
  }
  throw new Error(`checkpoint of ${kind}${index} never reached version ${version}`);
}

/** Runs the tasks of one `mf-step`. */
export async function runStep(step: MfStepMessage, trainer: TrainerPort, io: MfIo): Promise<void> {
  await trainer.keepRows(step.rows);
  const t = step.t;
  for (const task of step.tasks) {
    if (!io.live()) return;
    const started = performance.now();
    if (task.u === "checkpoint" || (await trainer.version("u", task.row)) !== t) await fromCheckpoint(trainer, io, "u", task.row, t);
    let vFrom: "peer" | "local" | "checkpoint" = task.vFrom === io.self ? "local" : "peer";
    if ((await trainer.version("v", task.col)) !== t) {
      let waited = 0;
      if (task.vFrom !== null && task.vFrom !== io.self) {
        while (waited < io.peerWaitMs && (await trainer.version("v", task.col)) !== t && io.live()) {
          await io.sleep(20);
          waited += 20;
        }
      }
      if ((await trainer.version("v", task.col)) !== t) {
        await fromCheckpoint(trainer, io, "v", task.col, t);
        vFrom = "checkpoint";
      }
    }
    if (!io.live()) return;
    const r = await trainer.train(task.row, task.col, step.lr);
    const u = await trainer.get("u", task.row);
    const v = await trainer.get("v", task.col);
    if (!u || !v) throw new Error(`block (${task.row}, ${task.col}) vanished`);
    io.upload(u);
    io.upload(v);
    if (task.sendTo !== io.self) {
      if (task.sendTo !== null) await io.sendPeer(task.sendTo, v).catch(() => undefined);
      await trainer.release("v", task.col);
    }
    const mem = await trainer.memory();
    const st = io.stats();
    io.send({
      type: "mf-done",
      t,
      row: task.row,
      col: task.col,
      sq: r.sq,
      ratings: r.ratings,
      ms: performance.now() - started,
      modelBytes: mem.modelBytes,
      peakModelBytes: mem.peakModelBytes,
      bytesIn: st.bytesIn,
      bytesOut: st.bytesOut,
      peers: st.peers,
      vFrom,
    });
  }
}
