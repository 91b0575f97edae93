// Byte helpers: what callers may pass as data, and a guarded base64 fallback.
//
// The protocol's JSON codec (src/protocol/json.ts) uses the standard `Uint8Array.fromBase64` and
// `Uint8Array.prototype.toBase64`. Current Chrome, Firefox, Safari and Bun have them; for older
// browsers the client installs a spec-compatible fallback of the subset the codec uses, and only
// when the native functions are missing.

export type Data = string | Uint8Array | ArrayBuffer | ArrayBufferView;

const utf8 = new TextEncoder();

/** The bytes of `data`: strings as UTF-8, views without copying. */
export function toBytes(data: Data): Uint8Array {
  if (typeof data === "string") return utf8.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("data must be a string, Uint8Array, ArrayBuffer or ArrayBufferView");
}

type B64Ctor = Uint8ArrayConstructor & { fromBase64?: (s: string) => Uint8Array };
type B64Proto = Uint8Array & { toBase64?: () => string };

export function installBase64Fallback(): void {
  const ctor = Uint8Array as B64Ctor;
  if (typeof ctor.fromBase64 !== "function") {
    Object.defineProperty(Uint8Array, "fromBase64", {
      configurable: true,
      writable: true,
      value(s: string): Uint8Array {
        if (typeof s !== "string") throw new TypeError("fromBase64 expects a string");
        const bin = atob(s); // throws on invalid input, as the native function does
        const out = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
        return out;
      },
    });
  }
  if (typeof (Uint8Array.prototype as B64Proto).toBase64 !== "function") {
    Object.defineProperty(Uint8Array.prototype, "toBase64", {
      configurable: true,
      writable: true,
      value(this: Uint8Array): string {
        let bin = "";
        for (let i = 0; i < this.length; i += 0x8000) {
          bin += String.fromCharCode.apply(null, this.subarray(i, i + 0x8000) as unknown as number[]);
        }
        return btoa(bin);
      },
    });
  }
}
