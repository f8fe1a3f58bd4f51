/**
 * What uWS does not check of an opening handshake (RFC 6455, 4.2.1). It upgrades any request to
 * the socket's path that carries a `Sec-WebSocket-Key`, whatever its `Upgrade`, `Connection` and
 * version say: a plain request that happens to carry a key (a misconfigured proxy that drops the
 * hop-by-hop headers, say) would get `101 Switching Protocols` and then WebSocket frames it
 * cannot read. Such a request is refused with a status that says why instead.
 */
export interface HandshakeHeaders {
  readonly upgrade: string;
  readonly connection: string;
  readonly key: string;
  readonly version: string;
}

export interface HandshakeRefusal {
  readonly status: 400 | 426;
  readonly message: string;
  /** Sent with the refusal: a 426 names the version this server speaks. */
  readonly headers: Readonly<Record<string, string>>;
}

/** The one version RFC 6455 defines; a client that offers another is told so (4.4). */
export const WEBSOCKET_VERSION = "13";

/** A comma-separated header's tokens, lower-cased (`Connection: keep-alive, Upgrade`). */
const tokens = (value: string) => value.split(",").map((token) => token.trim().toLowerCase());

/** A key is 16 random bytes, base64-encoded: 24 characters ending in `==`. */
const KEY = /^[A-Za-z0-9+/]{22}==$/;

/** Why this request is no WebSocket opening handshake, or undefined when it is one. */
export const handshakeRefusal = (headers: HandshakeHeaders): HandshakeRefusal | undefined => {
  if (!tokens(headers.upgrade).includes("websocket"))
    return { status: 400, message: "a WebSocket handshake needs the header Upgrade: websocket", headers: {} };
  if (!tokens(headers.connection).includes("upgrade"))
    return {
      status: 400,
      message: "a WebSocket handshake needs the header Connection: Upgrade",
      headers: {},
    };
  if (!KEY.test(headers.key.trim()))
    return { status: 400, message: "Sec-WebSocket-Key must be 16 bytes in base64", headers: {} };
  if (headers.version.trim() !== WEBSOCKET_VERSION)
    return {
      status: 426,
      message: `this server speaks WebSocket version ${WEBSOCKET_VERSION} only`,
      // A 426 names the protocol to upgrade to (RFC 9110, 15.5.22).
      headers: { upgrade: "websocket", "sec-websocket-version": WEBSOCKET_VERSION },
    };
  return undefined;
};
