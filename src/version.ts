import { readFileSync } from "node:fs";
import { packageFile } from "./package-files.js";

// Found from the running module, as every package file is: the bundled entries sit a level deeper.
const path = packageFile("package.json");
if (!path) throw new Error("nkit's package.json is missing: reinstall nkit");
const pkg = JSON.parse(readFileSync(path, "utf8")) as { version: string };

export const VERSION: string = pkg.version;
