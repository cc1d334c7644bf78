// Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016): every backend walks the table in its own permutation and takes the next
// free entry in turn until the table is full. Each backend gets a near-equal share, a change of the
// backend set moves few entries, and the table depends only on the backend names and its size, so
// two hosts with the same backends pick the same backend for a flow.
import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../errors.js";

/** Entries of a table, NK_LB_MAGLEV_M in bpf/include/nkit_lb.h: a prime from the usual set. */
export const MAGLEV_TABLE_SIZE = 16381;

function isPrime(n: number): boolean {
  if (n < 2 || n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** offset and skip of a backend's permutation, from two independent hashes of its name. */
function permutation(name: string, m: number): { offset: number; skip: number } {
  const h = createHash("sha256").update(name).digest();
  return { offset: h.readUInt32BE(0) % m, skip: (h.readUInt32BE(4) % (m - 1)) + 1 };
}

/**
 * The table for backends (their names, e.g. "10.0.0.5:8080"): entry i holds the index of the
 * backend that owns it. An empty backend list has no table.
 */
export function maglevTable(backends: readonly string[], m = MAGLEV_TABLE_SIZE): Uint32Array {
  if (!isPrime(m)) throw new InvalidArgumentError(`Maglev table size ${m} is not a prime`);
  if (backends.length === 0) throw new InvalidArgumentError("a Maglev table needs at least one backend");
  if (backends.length > m) {
    throw new InvalidArgumentError(`${backends.length} backends do not fit a Maglev table of ${m}`);
  }
  const perms = backends.map((b) => permutation(b, m));
  const next = new Array<number>(backends.length).fill(0);
  const table = new Uint32Array(m);
  const taken = new Uint8Array(m);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < backends.length; i++) {
      const { offset, skip } = perms[i] as { offset: number; skip: number };
      let c = (offset + (next[i] as number) * skip) % m;
      while (taken[c]) {
        next[i] = (next[i] as number) + 1;
        c = (offset + (next[i] as number) * skip) % m;
      }
      taken[c] = 1;
      table[c] = i;
      next[i] = (next[i] as number) + 1;
      if (++filled === m) return table;
    }
  }
}
