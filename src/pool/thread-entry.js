// Piscina loads this file in every worker thread. Registering tsx here lets the threads run the
// TypeScript sources directly, as the main process does, with no build step.
import { register } from "tsx/esm/api";

register();
const { serve } = await import("./thread.ts");
export default serve;
