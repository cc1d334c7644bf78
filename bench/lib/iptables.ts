// Puts back the iptables rules a benchmark's peers add and never remove (Nomad's bridge mode leaves a
// NOMAD-ADMIN chain, the CNI firewall and portmap plugins leave their chains and the jumps to them):
// what was there before the run stays, rules and chains that appeared during it go.
import { spawnSync } from "node:child_process";

const TOOLS = ["iptables", "ip6tables"] as const;
const TABLES = ["filter", "nat", "mangle", "raw"] as const;

interface TableRules {
  chains: Set<string>;
  rules: Set<string>;
}

function save(tool: string, table: string): TableRules | undefined {
  const r = spawnSync(`${tool}-save`, ["-t", table], { encoding: "utf8" });
  if (r.status !== 0) return undefined;
  const chains = new Set<string>();
  const rules = new Set<string>();
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]!);
    else if (line.startsWith("-A ")) rules.add(line.slice(3));
  }
  return { chains, rules };
}

/** Split an iptables-save rule line into arguments, honouring its double-quoted strings. */
function ruleArgs(rule: string): string[] {
  const args: string[] = [];
  for (const m of rule.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)) args.push(m[1] ?? m[2]!);
  return args;
}

/** Snapshots the rules now; the returned function removes what was added since (errors are returned). */
export function snapshotIptables(): () => string[] {
  const before = new Map<string, TableRules | undefined>();
  for (const tool of TOOLS) for (const table of TABLES) before.set(`${tool} ${table}`, save(tool, table));
  return () => {
    const errors: string[] = [];
    const ipt = (tool: string, args: string[]) => {
      const r = spawnSync(tool, ["-w", ...args], { encoding: "utf8" });
      if (r.status !== 0) errors.push(`${tool} ${args.join(" ")}: ${r.stderr.trim()}`);
    };
    for (const tool of TOOLS) {
      for (const table of TABLES) {
        const was = before.get(`${tool} ${table}`) ?? { chains: new Set<string>(), rules: new Set<string>() };
        const now = save(tool, table);
        if (!now) continue;
        // Rules first (they may jump to chains about to go), then the emptied new chains.
        for (const rule of now.rules)
          if (!was.rules.has(rule)) ipt(tool, ["-t", table, "-D", ...ruleArgs(rule)]);
        const added = [...now.chains].filter((c) => !was.chains.has(c));
        for (const c of added) ipt(tool, ["-t", table, "-F", c]);
        for (const c of added) ipt(tool, ["-t", table, "-X", c]);
      }
    }
    return errors;
  };
}
