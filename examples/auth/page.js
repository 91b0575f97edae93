// The logged-in page: get a token from the app, open a wasmnet session with it, echo through it.
const $ = (id) => document.getElementById(id);
let client = null;

async function connect() {
  client?.disconnect();
  $("send").disabled = true;
  $("status").textContent = "connecting…";
  // A fresh token for every session: tokens are short-lived and checked when a session opens.
  const res = await fetch("/token", { cache: "no-store" });
  if (res.status === 401) return location.assign("/"); // logged out
  const { token, wasmnet, user } = await res.json();
  $("user").textContent = `logged in as ${user}`;
  const { WasmnetClient } = await import(new URL("/wasmnet-client.js", wasmnet.replace(/^ws/, "http")).href);
  client = new WasmnetClient(wasmnet, { token });
  try {
    await client.ready();
    $("status").textContent = `connected as ${client.identity} (profile ${client.profile ?? "top level"})`;
    $("send").disabled = false;
  } catch (e) {
    // EAUTH: the server's reason ("token has expired", …); EREFUSED: origin, too many sessions, …
    $("status").textContent = `${e.code}${e.status ? ` (HTTP ${e.status})` : ""}: ${e.message}`;
  }
}

$("send").onclick = () => {
  const out = $("out");
  out.textContent = "";
  // Zero round trip: the message rides right behind the connect.
  const id = client.openAndSend($("host").value, Number($("port").value), $("msg").value);
  client.onData(id, (bytes) => {
    out.textContent += new TextDecoder().decode(bytes);
    client.close(id);
  });
  client.onClose(id, (err) => {
    if (err) out.textContent += `\n${err.code}: ${err.message}`; // EPOLICY outside the profile
  });
};
$("reconnect").onclick = connect;
connect();
