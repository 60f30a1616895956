// The only place that encodes and decodes msgpack (docs/bus.md "Encoding").
import { Decoder, Encoder } from '@msgpack/msgpack';

const encoder = new Encoder({ ignoreUndefined: true });
// Limits keep a stranger's entry from costing more than its own size; deeper or larger
// values fail to decode and are refused like any undecodable entry.
const decoder = new Decoder({
  maxStrLength: 1 << 20,
  maxBinLength: 1 << 20,
  maxArrayLength: 10_000,
  maxMapLength: 10_000,
  maxExtLength: 0,
});

/** @param {unknown} value @returns {Buffer} */
export function pack(value) {
  const bytes = encoder.encode(value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * @param {Uint8Array} bytes
 * @returns {unknown}
 * @throws {Error} the bytes are not one msgpack value.
 */
export function unpack(bytes) {
  return decoder.decode(bytes);
}
