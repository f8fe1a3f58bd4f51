// BullMQ's sandboxed processor for bench/runtime.ts: loaded in each of its worker threads, does nothing.
export default async () => undefined;
