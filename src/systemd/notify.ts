// systemd notify protocol (Type=notify): READY once the datapath is adopted and serving, STOPPING
// on shutdown, WATCHDOG keep-alives at half the interval systemd asked for. Without NOTIFY_SOCKET
// (not under systemd) every call is a no-op. A layer of its own: the systemd-facing transport (a
// datagram on NOTIFY_SOCKET, sent by the addon) that the daemon only drives.
import type { Logger } from "../log.js";
import { sdNotifyAddon } from "../native/sdnotify.js";

export class SdNotifier {
  private readonly socket: string | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    env: NodeJS.ProcessEnv = process.env,
    private readonly log?: Logger,
  ) {
    this.socket = env.NOTIFY_SOCKET || undefined;
    const usec = Number(env.WATCHDOG_USEC);
    const pid = env.WATCHDOG_PID ? Number(env.WATCHDOG_PID) : process.pid;
    if (this.socket && usec > 0 && pid === process.pid) {
      this.watchdog = setInterval(() => this.send("WATCHDOG=1"), Math.max(1, Math.floor(usec / 2000)));
      this.watchdog.unref();
    }
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  private send(message: string): void {
    if (!this.socket) return;
    try {
      sdNotifyAddon().sdNotify(this.socket, message);
    } catch (e) {
      // systemd going away must not take the datapath owner down with it.
      this.log?.warn({ err: e, message }, "sd_notify failed");
    }
  }

  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`);
  }

  status(status: string): void {
    this.send(`STATUS=${status}`);
  }

  stopping(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.send("STOPPING=1");
  }
}
