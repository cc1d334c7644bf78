// The CPU mask nkit writes to a veth host end's rps_cpus, from the kernel's online CPU list.
import { describe, expect, it } from "vitest";
import { cpuMaskOf } from "../../src/datapath/devices.js";

describe("cpuMaskOf", () => {
  it("turns CPU lists into sysfs masks, 32 CPUs per comma-separated group", () => {
    expect(cpuMaskOf("0\n")).toBe("1");
    expect(cpuMaskOf("0-1\n")).toBe("3");
    expect(cpuMaskOf("0-3,8")).toBe("10f");
    expect(cpuMaskOf("0-31")).toBe("ffffffff");
    expect(cpuMaskOf("0-32")).toBe("1,ffffffff");
    expect(cpuMaskOf("0-63")).toBe("ffffffff,ffffffff");
    expect(cpuMaskOf("1,35,70")).toBe("40,00000008,00000002");
  });
});
