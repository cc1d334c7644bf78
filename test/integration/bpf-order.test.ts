// mprog ordering on tcx: before/after anchors by link, program and id, "first", the chain revision,
// and the errors for a stale revision, a duplicate program and a missing anchor.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { BpfLink, BpfObject, PinDir, queryAttached } from "../../src/bpf/index.js";
import { AlreadyExistsError, BpfError, NotFoundError } from "../../src/errors.js";
import { uniqueBpffsDir } from "../helpers/names.js";
import { Scope } from "../helpers/scope.js";
import { COUNTER_OBJ, createDevice, requireBuilt } from "./bpf-fixture.js";

let scope: Scope;

beforeAll(() => requireBuilt());

afterEach(async () => {
  await scope.close();
});

describe("tcx ordering", () => {
  it("places links before/after anchors and enforces the expected revision", async () => {
    scope = new Scope();
    const pins = new PinDir(uniqueBpffsDir("order"));
    scope.defer(() => pins.removeAll());
    const dev = await createDevice(scope);
    // two loads of one object give distinct program instances to chain up (one program may be attached once)
    const o1 = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => o1.close());
    const o2 = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => o2.close());
    const a = o1.program("nk_count_ingress");
    const b = o1.program("nk_count_ingress_alt");
    const c = o2.program("nk_count_ingress");
    const d = o2.program("nk_count_ingress_alt");
    const e = o2.program("nk_count_egress");
    const opts = { ifindex: dev.ifindex, direction: "ingress" } as const;
    const order = () => queryAttached(dev.ifindex, "tcx-ingress").programs.map((p) => p.programId);
    const links: BpfLink[] = [];
    scope.defer(() => {
      for (const l of links) l.close();
    });

    expect(queryAttached(dev.ifindex, "tcx-ingress")).toEqual({ revision: 1n, programs: [] });
    const la = BpfLink.attachTcx(a, opts);
    links.push(la);
    links.push(BpfLink.attachTcx(b, { ...opts, anchor: { before: la } }));
    expect(order()).toEqual([b.id, a.id]);
    links.push(BpfLink.attachTcx(c, { ...opts, anchor: { after: { programId: a.id } } }));
    expect(order()).toEqual([b.id, a.id, c.id]);
    links.push(BpfLink.attachTcx(d, { ...opts, anchor: "first" }));
    expect(order()).toEqual([d.id, b.id, a.id, c.id]);

    const { revision, programs } = queryAttached(dev.ifindex, "tcx-ingress");
    expect(programs.map((p) => p.linkId)).toEqual([links[3], links[1], links[0], links[2]].map((l) => l?.id));
    expect(revision).toBe(5n);

    // a stale revision is refused with a clear message and attaches nothing
    let stale: unknown;
    try {
      BpfLink.attachTcx(e, {
        ...opts,
        anchor: { after: { linkId: la.id } },
        expectedRevision: revision - 1n,
      });
    } catch (err) {
      stale = err;
    }
    expect(stale).toBeInstanceOf(BpfError);
    expect((stale as BpfError).errnoCode).toBe("ESTALE");
    expect((stale as Error).message).toMatch(/expected revision does not match/);
    expect(order()).toEqual([d.id, b.id, a.id, c.id]);

    links.push(
      BpfLink.attachTcx(e, { ...opts, anchor: { after: { linkId: la.id } }, expectedRevision: revision }),
    );
    expect(order()).toEqual([d.id, b.id, a.id, e.id, c.id]);
    expect(queryAttached(dev.ifindex, "tcx-ingress").revision).toBe(revision + 1n);

    // the same program twice at one hook
    expect(() => BpfLink.attachTcx(a, opts)).toThrow(AlreadyExistsError);
    // an anchor that is not in this chain (attached nowhere)
    const stray = o1.program("nk_count_egress");
    expect(() => BpfLink.attachTcx(stray, { ...opts, direction: "egress", anchor: { before: a } })).toThrow(
      NotFoundError,
    );
    expect(queryAttached(dev.ifindex, "tcx-egress").programs).toEqual([]);

    for (const l of links) l.close();
    expect(queryAttached(dev.ifindex, "tcx-ingress").programs).toEqual([]);
  });
});
