// Follow a credential's value from wxtoken over server-sent events with
// Node's built-in fetch (Node 18+). Prints one JSON line per value.
//   node watch.mjs BASE_URL ID API_KEY [COUNT] [LAST_EVENT_ID]
const [base, id, key, count = "0", lastId] = process.argv.slice(2);
const headers = { authorization: `Bearer ${key}` };
if (lastId) headers["last-event-id"] = lastId; // resume after this generation
const res = await fetch(`${base}/v1/apps/${id}/access_token/watch`, { headers });
if (!res.ok) throw new Error(`HTTP ${res.status}`);
const decoder = new TextDecoder();
let left = Number(count), buf = "";
for await (const chunk of res.body) {
  buf += decoder.decode(chunk, { stream: true });
  for (let end; (end = buf.indexOf("\n\n")) >= 0; buf = buf.slice(end + 2)) {
    const event = {};
    for (const line of buf.slice(0, end).split("\n")) {
      if (line.startsWith(":")) continue; // keep-alive
      const i = line.indexOf(":");
      event[line.slice(0, i)] = line.slice(i + 1).trimStart();
    }
    if (event.event !== "access_token") continue;
    console.log(JSON.stringify({ id: event.id, ...JSON.parse(event.data) }));
    if (--left === 0) process.exit(0);
  }
}
