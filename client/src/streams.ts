// Web-streams view of one wasmnet stream: a ReadableStream of the bytes the target sends and a
// WritableStream whose writes wait for flow-control credit.
import type { WasmnetError } from "./errors.ts";

export interface SocketStream {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

export interface StreamOptions {
  /**
   * Bytes the readable's internal queue holds before it stops pulling from the client's buffer.
   * Default 64 KiB. (Protocol version 2 has no credit toward the browser: bytes the page does not
   * read yet wait in the client.)
   */
  readableHighWaterMark?: number;
}

/** How the client feeds a stream. */
export interface StreamSink {
  data(bytes: Uint8Array): void;
  /** The target half-closed: no more data. */
  end(): void;
  /** The socket is gone; `error` when it did not close normally. */
  close(error?: WasmnetError): void;
}

/** What a stream needs from the client. */
export interface StreamHost {
  /** Resolves when the bytes are handed to the WebSocket (within the window). */
  write(bytes: Uint8Array): Promise<void>;
  /** Half-close toward the target (FIN after the queued bytes), when the server supports it. */
  end(): void;
  /** Close the socket. */
  close(): void;
}

export function socketStream(host: StreamHost, options: StreamOptions): { stream: SocketStream; sink: StreamSink } {
  let chunks: Uint8Array[] = [];
  let done = false;
  let failure: WasmnetError | undefined;
  let cancelled = false;
  let wake: (() => void) | undefined;

  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const sink: StreamSink = {
    data(bytes) {
      if (cancelled || done) return;
      chunks.push(bytes);
      notify();
    },
    end() {
      done = true;
      notify();
    },
    close(error) {
      if (error && !done) failure = error;
      done = true;
      notify();
    },
  };

  const readable = new ReadableStream<Uint8Array>(
    {
      // Pull-based: a chunk moves into the stream's queue only when the queue is below its
      // high-water mark; the rest waits in `chunks`.
      pull(controller) {
        return new Promise<void>((resolve) => {
          const attempt = () => {
            if (chunks.length > 0) {
              controller.enqueue(chunks.shift()!);
              resolve();
            } else if (failure) {
              controller.error(failure);
              resolve();
            } else if (done) {
              controller.close();
              resolve();
            } else {
              wake = attempt;
            }
          };
          attempt();
        });
      },
      cancel() {
        cancelled = true;
        chunks = [];
        host.close();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: options.readableHighWaterMark ?? 64 * 1024 }),
  );

  const writable = new WritableStream<Uint8Array>(
    {
      write(chunk) {
        return host.write(chunk);
      },
      close() {
        host.end();
      },
      abort() {
        host.close();
      },
    },
    new CountQueuingStrategy({ highWaterMark: 1 }),
  );

  return { stream: { readable, writable }, sink };
}
