// The Prometheus endpoint: plain HTTP on metrics.listen ("host:port"), GET /metrics only.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { prometheusContentType } from "prom-client";
import { ConfigError } from "../errors.js";

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new ConfigError("metrics.listen", `"${listen}" is not host:port`, 'use e.g. "127.0.0.1:9965"');
  }
  return { host: m[1] ?? m[2] ?? "127.0.0.1", port };
}

interface MetricsServer {
  /** The bound address (port resolved when 0 was asked for). */
  readonly address: string;
  close(): Promise<void>;
}

export async function startMetricsServer(
  listen: string,
  render: () => Promise<string>,
): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      let body: string;
      try {
        body = await render();
      } catch (e) {
        res.writeHead(500, { "content-type": "text/plain" }).end(`${(e as Error).message}\n`);
        return;
      }
      res.writeHead(200, { "content-type": prometheusContentType });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/plain" }).end("nkitd metrics: GET /metrics\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found; metrics are at /metrics\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  return {
    address: a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
