// Child processes for tests that run the built binaries (nkit, nkitd) as users do.
import { type ChildProcess, spawn } from "node:child_process";

export interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface NodeChild {
  child: ChildProcess;
  done: Promise<Exit>;
  out: () => string;
  err: () => string;
}

export function spawnNode(args: string[], env: NodeJS.ProcessEnv = process.env): NodeChild {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<Exit>((resolve) =>
    child.once("exit", (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done, out: () => stdout, err: () => stderr };
}

export async function waitFor(
  pred: () => boolean | Promise<boolean>,
  what: string,
  ms = 20_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
