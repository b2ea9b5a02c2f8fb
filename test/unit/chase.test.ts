/** When a waiting worker asks its peers again for updates (client/chase.ts). */
import { describe, expect, it } from "vitest";
import { AskWhenStalled } from "../../client/chase.ts";

describe("asking again for updates", () => {
  it("asks only after the first delay without progress, then after each further delay without progress", () => {
    const c = new AskWhenStalled(500, 2000);
    expect(c.due(10, 0)).toBe(false); // the wait starts
    expect(c.due(10, 500)).toBe(false);
    expect(c.due(10, 501)).toBe(true); // 0.5 s with nothing
    expect(c.due(10, 2000)).toBe(false);
    expect(c.due(10, 2502)).toBe(true); // 2 s more with nothing
    // Updates arriving postpone the next ask, however long the wait already is.
    for (let t = 2600; t <= 8000; t += 200) expect(c.due(10 + t, t)).toBe(false);
    expect(c.due(8000 + 10, 9999)).toBe(false);
    expect(c.due(8000 + 10, 10001)).toBe(true);
  });

  it("starts afresh after a reset (a step in the gate)", () => {
    const c = new AskWhenStalled(1500, 1500);
    c.due(3, 0);
    expect(c.due(3, 1501)).toBe(true);
    c.reset();
    expect(c.due(3, 1600)).toBe(false); // the same progress as before the step: a new wait
    expect(c.due(3, 3000)).toBe(false);
    expect(c.due(3, 3101)).toBe(true);
  });
});
