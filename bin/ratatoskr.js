#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so the repository works without a build step.
import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../src/cli/main.ts");
runCli(process.argv.slice(2));
