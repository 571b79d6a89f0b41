/**
 * Unsigned LEB128 varints and a bounds-checked reader: the number encoding of the compact
 * binary formats (manifest, manifest diff, signature, delta). Values stay below 2^35, far past
 * any length or count these formats carry, so plain numbers hold them exactly.
 */

const MAX_VARINT_BYTES = 5;

/** Bytes a varint of this value takes. */
export function varintLength(value: number): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes++;
  return bytes;
}

/** Writes value at `at` and returns the offset after it; out must have room (varintLength). */
export function writeVarint(out: Uint8Array, at: number, value: number): number {
  let rest = value;
  while (rest >= 0x80) {
    out[at++] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  out[at++] = rest;
  return at;
}

/** Grows as it is written: for encoders that cannot size their output up front. */
export class ByteWriter {
  private buffer: Buffer;
  private length = 0;

  constructor(initialCapacity = 256) {
    this.buffer = Buffer.allocUnsafe(initialCapacity);
  }

  varint(value: number): this {
    this.reserve(MAX_VARINT_BYTES);
    this.length = writeVarint(this.buffer, this.length, value);
    return this;
  }

  byte(value: number): this {
    this.reserve(1);
    this.buffer[this.length++] = value;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.reserve(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
    return this;
  }

  hex(value: string): this {
    this.reserve(value.length / 2);
    this.length += this.buffer.write(value, this.length, 'hex');
    return this;
  }

  /** The bytes written so far (a view, not a copy). */
  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}

/** Reads a binary format front to back; every read past the end calls onMalformed, which throws. */
export class ByteReader {
  private at = 0;
  private readonly view: Buffer;

  constructor(
    bytes: Uint8Array,
    private readonly onMalformed: (reason: string) => Error,
  ) {
    this.view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.at >= this.view.length;
  }

  get remaining(): number {
    return this.view.length - this.at;
  }

  byte(): number {
    if (this.at >= this.view.length) throw this.onMalformed('truncated');
    return this.view[this.at++]!;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let read = 0; ; read++) {
      if (read === MAX_VARINT_BYTES) throw this.onMalformed('number out of range');
      const byte = this.byte();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
  }

  /** The next n bytes, as a view. */
  bytes(n: number): Buffer {
    if (n > this.remaining) throw this.onMalformed('truncated');
    const out = this.view.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  hex(n: number): string {
    return this.bytes(n).toString('hex');
  }
}
