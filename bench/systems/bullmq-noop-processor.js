// BullMQ's sandboxed processor for the drain-threads cases: loaded in each of its worker threads, does nothing.
export default async () => undefined;
