// nkitd whose NRI socket is missing (nkitd started before containerd, or containerd down): nkitd
// runs anyway, `nkit status` and `nkit doctor` say that CRI pods are not wired and why, and once
// containerd's NRI socket answers the plugin registers and synchronizes by itself; when containerd
// goes away again, status says so again.
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StatusResponse } from "../../src/api/types.js";
import {
  doctorCheck,
  Nkitd,
  type NkitdSetup,
  nkit,
  nkitdSetup,
  nkitJson,
  requireDist,
  until,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { ContainerdEnv, containerdUnavailable } from "./nri-env.js";

const skip = containerdUnavailable();
const scope = new Scope();
let setup: NkitdSetup;
let nkitd: Nkitd;
let env: ContainerdEnv;

const status = () => nkitJson<StatusResponse>(setup.socket, "status");

describe.skipIf(skip !== undefined)(
  `nkitd without its NRI socket${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    beforeAll(async () => {
      requireDist();
      env = new ContainerdEnv();
      scope.defer(() => env.teardown());
      env.prepare();
      setup = await nkitdSetup(scope, "nri");
      const config = readFileSync(setup.config, "utf8").replace(
        "nri: {enabled: false}",
        `nri: {enabled: true, socket: ${env.nriSocket}}`,
      );
      writeFileSync(setup.config, config);
      nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    }, 60_000);

    afterAll(() => scope.close(), 60_000);

    it("runs, and status and doctor say CRI pods are not wired and why", async () => {
      await until(
        () => nkitd.log("NRI connection attempt failed") !== undefined,
        "a failed NRI attempt",
        10_000,
      );
      const s = await status();
      expect(s.nri).toMatchObject({ socket: env.nriSocket, connected: false, synchronized: false });
      expect(s.nri?.lastError).toMatch(/ENOENT|no such file/i);
      const text = (await nkit(setup.socket, "status")).stdout;
      expect(text).toContain(`nri:        NOT CONNECTED to ${env.nriSocket}`);
      expect(text).toContain("CRI pods are not wired until it is");
      const check = await doctorCheck(setup.socket, "NRI plugin connected");
      expect(check).toMatchObject({ status: "fail" });
      expect(check?.detail).toContain(env.nriSocket);
    });

    it("registers and synchronizes by itself once containerd's NRI socket answers", async () => {
      await env.start();
      const deadline = Date.now() + 30_000;
      let s = await status();
      while (!(s.nri?.connected && s.nri.synchronized) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        s = await status();
      }
      expect(s.nri).toMatchObject({ connected: true, synchronized: true, lastError: "" });
      expect(s.nri?.runtime).toMatch(/containerd/);
      expect((await nkit(setup.socket, "status")).stdout).toMatch(/nri: {8}connected to .*containerd/);
      expect(await doctorCheck(setup.socket, "NRI plugin connected")).toMatchObject({ status: "pass" });
    });

    it("says so again when containerd goes away", async () => {
      await env.stopContainerd();
      const deadline = Date.now() + 15_000;
      let s = await status();
      while (s.nri?.connected && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        s = await status();
      }
      expect(s.nri?.connected).toBe(false);
      expect(nkitd.proc.running()).toBe(true);
    });
  },
);
