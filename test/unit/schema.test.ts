// What the zod schemas of config, service definitions, CNI requests and state files share
// (src/util/schema.ts): where an issue is, which one a user is told about, and the parts it carries.
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  asOne,
  complain,
  complaint,
  issuePath,
  orDefault,
  pathText,
  reportedIssue,
} from "../../src/util/schema.js";

const failure = (schema: z.ZodType, value: unknown): z.ZodError => {
  const r = schema.safeParse(value);
  if (r.success) throw new Error("expected the parse to fail");
  return r.error;
};

describe("zod issues as nkit reports them", () => {
  it("writes paths the way messages do, after where the value came from", () => {
    expect(pathText(["services", 2, "ports", 0, "port"])).toBe("services[2].ports[0].port");
    expect(pathText([0, "name"], "/etc/nkit/services.d/web.yaml")).toBe(
      "/etc/nkit/services.d/web.yaml[0].name",
    );
    expect(pathText([], "services[1]")).toBe("services[1]");
    expect(pathText([])).toBe("");
  });

  it("reports an unknown key before what is wrong inside its object, not before a sibling", () => {
    const inner = z.strictObject({ state: z.string().startsWith("/") });
    const schema = z.strictObject({ mtu: z.number(), paths: inner });
    const misspelt = reportedIssue(failure(schema, { mtu: 1, paths: { stat: "/x", state: "rel" } }));
    expect(issuePath(misspelt)).toEqual(["paths", "stat"]);
    const sibling = reportedIssue(failure(schema, { mtu: "x", paths: { stat: "/x" } }));
    expect(issuePath(sibling)).toEqual(["mtu"]);
    const outer = reportedIssue(failure(schema, { colour: 1, paths: { stat: "/x" } }));
    expect(issuePath(outer)).toEqual(["colour"]);
  });

  it("carries a problem and its fix through zod, and quotes the whole value when asked", () => {
    const list = asOne(
      z.array(z.string()),
      complain((v) => `expected names, got ${JSON.stringify(v)}`, "e.g. [eth0]"),
    );
    const issue = reportedIssue(failure(z.object({ uplinks: list }), { uplinks: ["eth0", 5] }));
    expect(issuePath(issue)).toEqual(["uplinks"]);
    expect(complaint.heard(issue)).toEqual({ problem: 'expected names, got ["eth0",5]', fix: "e.g. [eth0]" });
  });

  it("defaults absent and null values, never sharing one default between results", () => {
    const schema = z.object({ cidrs: orDefault(z.array(z.string()), ["10.0.0.0/8"]) });
    const a = schema.parse({});
    const b = schema.parse({ cidrs: null });
    expect(a).toEqual({ cidrs: ["10.0.0.0/8"] });
    expect(b.cidrs).not.toBe(a.cidrs);
  });
});
