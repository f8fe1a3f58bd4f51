// Piscina loads this file in every worker thread. With a bundle (thread-bundle.ts, named in
// workerData) the thread imports that; otherwise it registers tsx and runs the TypeScript sources
// directly, as the main process does, with no build step.
//
// Everything is imported dynamically, under a top-level await, on purpose: Piscina first tries
// require() on this file, which on Node 20 would load an ES module graph without top-level await
// synchronously (require(esm)); a bundle's whole graph loaded that way crashed a test process
// once (a V8 fatal error, "IsGraphAsync must be used on an instantiated module"). This file's own
// graph is empty, so require() gives up at once and Piscina imports it.
import { workerData } from "node:worker_threads";

const bundle = workerData?.ratatoskrBundle;
let serve;
if (typeof bundle === "string") {
  ({ default: serve } = await import(bundle));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ serve } = await import("./thread.ts"));
}
export default serve;
