// The wasmnet client is served by every wasmnet server at /wasmnet-client.js: import it from the
// server the user picked, then drive raw TCP from the page.
const $ = (id) => document.getElementById(id);
let client = null;

function show(el, text, isError = false) {
  el.textContent = text;
  el.className = isError ? "err" : "";
}

function describe(err) {
  // Rejections are WasmnetErrors: err.code is ECONNREFUSED, ETLS, EPOLICY (policy refusal), ECLOSED, …
  return err && err.code ? `${err.code}: ${err.message}` : String(err);
}

$("connect").onclick = async () => {
  const wsUrl = $("server").value.trim();
  const httpUrl = new URL(wsUrl.replace(/^ws/, "http"));
  try {
    client?.disconnect();
    const { WasmnetClient } = await import(new URL("/wasmnet-client.js", httpUrl).href);
    client = new WasmnetClient(wsUrl, { binary: $("binary").checked });
    await client.ready();
    show($("status"), `connected: protocol version ${client.version}, features [${client.features.join(", ")}]`);
    $("echo-go").disabled = $("http-go").disabled = false;
  } catch (e) {
    show($("status"), `cannot connect: ${describe(e)}`, true);
  }
};

$("echo-go").onclick = async () => {
  const out = $("echo-out");
  const message = $("echo-msg").value;
  const want = new TextEncoder().encode(message).length;
  show(out, "connecting…");
  try {
    const id = await client.connect($("echo-host").value.trim(), Number($("echo-port").value));
    const decoder = new TextDecoder();
    let received = 0;
    let text = "";
    await new Promise((resolve, reject) => {
      client.onData(id, (bytes) => {
        received += bytes.length;
        text += decoder.decode(bytes, { stream: true });
        if (received >= want) resolve();
      });
      client.onClose(id, (err) => reject(err ?? new Error("closed before the echo came back")));
      client.send(id, message);
    });
    client.close(id);
    show(out, `echoed: ${text}`);
  } catch (e) {
    show(out, describe(e), true);
  }
};

$("http-go").onclick = async () => {
  const out = $("http-out");
  const host = $("http-host").value.trim();
  const port = Number($("http-port").value);
  show(out, "connecting…");
  try {
    const id = await client.connect(host, port);
    // The web-streams view: write the request, read the response until the server closes.
    const { readable, writable } = client.stream(id);
    const writer = writable.getWriter();
    await writer.write(new TextEncoder().encode(
      `GET ${$("http-path").value || "/"} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\nUser-Agent: wasmnet-example\r\n\r\n`,
    ));
    writer.releaseLock();
    const decoder = new TextDecoder();
    let text = "";
    const reader = readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      show(out, text);
    }
    show(out, text + decoder.decode());
  } catch (e) {
    show(out, describe(e), true);
  }
};
