// `npm run bench:vm` (scripts/vm/bench.sh): the datapath benchmark inside the netkit VM lane's guest.
//   vm.js guest [--rounds N --seconds S --pods N]   inside the guest: measure, print the data block
//   vm.js monitor --root PID --out trace.json        on the host: console filter + host CPU sampler
//   vm.js report --log console.log [...]             on the host: decode it, write bench/results/vm-*
// Runs from the compiled copy in bench/dist; only the guest half loads the native addon.
import { ADDON } from "./lib/paths.js";

const [cmd, ...rest] = process.argv.slice(2);
let rc: number;
if (cmd === "guest") {
  process.env.NKIT_NATIVE_ADDON ??= ADDON;
  const { guestMain } = await import("./lib/vm-guest.js");
  rc = await guestMain(rest);
} else if (cmd === "monitor") {
  const { monitorMain } = await import("./lib/vm-monitor.js");
  rc = await monitorMain(rest);
} else if (cmd === "report") {
  const { reportMain } = await import("./lib/vm-report.js");
  rc = await reportMain(rest);
} else {
  process.stderr.write(
    "usage: node bench/dist/bench/vm.js guest|monitor|report [options]   (npm run bench:vm runs both)\n",
  );
  rc = 2;
}
process.exit(rc);
