/**
 * Page pacing (client/pace.ts): `?steptime=MS` and `?slowdown=F` parsed from
 * the URL, and the idle time after a step that makes a step last what they ask.
 */
import { describe, expect, it } from "vitest";
import { idleAfterStep, paceFromParams, MAX_STEP_TIME_MS } from "../../client/pace.ts";

const pace = (q: string) => paceFromParams(new URLSearchParams(q));

describe("page pacing parameters", () => {
  it("reads ?steptime and ?slowdown", () => {
    expect(pace("")).toEqual({ slowdown: 1, stepTimeMs: 0 });
    expect(pace("steptime=250")).toEqual({ slowdown: 1, stepTimeMs: 250 });
    expect(pace("steptime=250&slowdown=4")).toEqual({ slowdown: 4, stepTimeMs: 250 });
    expect(pace("slowdown=2.5&name=h1")).toEqual({ slowdown: 2.5, stepTimeMs: 0 });
  });

  it("ignores malformed or out-of-range values instead of failing the page", () => {
    for (const q of ["steptime=abc", "steptime=-5", "steptime=0", `steptime=${MAX_STEP_TIME_MS + 1}`, "steptime=Infinity", "steptime="]) {
      expect(pace(q).stepTimeMs, q).toBe(0);
    }
    for (const q of ["slowdown=0.5", "slowdown=x", "slowdown=1e9", "slowdown=-2"]) expect(pace(q).slowdown, q).toBe(1);
  });
});

describe("idle time after a step", () => {
  it("tops a step up to the step time, times the slowdown", () => {
    // 40 ms of a 300 ms step gone: sleep 260.
    expect(idleAfterStep({ slowdown: 1, stepTimeMs: 300 }, 40, 35, 35, 1)).toBe(260);
    // A page 4× slower than its paced peers: its step lasts 1200 ms whatever its compute.
    expect(idleAfterStep({ slowdown: 4, stepTimeMs: 300 }, 40, 35, 35, 1)).toBe(1160);
    expect(idleAfterStep({ slowdown: 4, stepTimeMs: 300 }, 400, 380, 10, 1)).toBe(800);
    // A step already longer than the step time: no sleep, and never a negative one.
    expect(idleAfterStep({ slowdown: 1, stepTimeMs: 300 }, 450, 440, 30, 1)).toBe(0);
  });

  it("keeps the page-relative ?slowdown when there is no step time", () => {
    expect(idleAfterStep({ slowdown: 1, stepTimeMs: 0 }, 40, 35, 30, 1)).toBe(0);
    // (F − 1) × the step time measured at join, whatever this step took.
    expect(idleAfterStep({ slowdown: 4, stepTimeMs: 0 }, 80, 75, 30, 1)).toBe(90);
  });

  it("adds the throttle's idle share on top", () => {
    // Half the time: a step of 300 ms (40 compute + 260 sleep) gets 300 ms more.
    expect(idleAfterStep({ slowdown: 1, stepTimeMs: 300 }, 40, 40, 40, 0.5)).toBeCloseTo(560, 9);
    expect(idleAfterStep({ slowdown: 1, stepTimeMs: 0 }, 40, 40, 40, 0.5)).toBeCloseTo(40, 9);
  });
});
