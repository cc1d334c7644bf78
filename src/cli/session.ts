// What every CLI command that talks to nkitd shares: the global options and a client for one call.
import { NkitClient } from "../api/client.js";

export interface GlobalOpts {
  socket: string;
  json: boolean;
}

export async function withClient<R>(cli: GlobalOpts, fn: (c: NkitClient) => Promise<R>): Promise<R> {
  const c = new NkitClient(cli.socket);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}
