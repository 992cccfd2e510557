// MQTT.js (npm `mqtt`) against a running Roost over ws:// and wss://, MQTT 3.1.1 and 5.0: each
// client subscribes, publishes to itself and must get its message back. Arguments: the ws URL,
// the wss URL and the CA file. One PASS/FAIL line per check; exits 1 on any failure.
import mqtt from "mqtt";
import { readFileSync } from "node:fs";

const [wsUrl, wssUrl, caFile] = process.argv.slice(2);
const ca = readFileSync(caFile);
let failed = 0;

function roundTrip(url, protocolVersion, extra = {}) {
  return new Promise((resolve, reject) => {
    const topic = `interop/mqttjs/${protocolVersion}/${Math.random().toString(16).slice(2)}`;
    const client = mqtt.connect(url, { protocolVersion, reconnectPeriod: 0, connectTimeout: 5000, ...extra });
    const timer = setTimeout(() => { client.end(true); reject(new Error("timed out")); }, 10000);
    client.on("error", (e) => { clearTimeout(timer); client.end(true); reject(e); });
    client.on("connect", () => {
      client.subscribe(topic, { qos: 1 }, (err) => {
        if (err) { clearTimeout(timer); client.end(true); return reject(err); }
        client.publish(topic, "hello from MQTT.js", { qos: 1 });
      });
    });
    client.on("message", (t, payload) => {
      clearTimeout(timer);
      client.end();
      if (t === topic && payload.toString() === "hello from MQTT.js") resolve();
      else reject(new Error(`got ${t}: ${payload}`));
    });
  });
}

const cases = [
  ["ws://, MQTT 3.1.1", wsUrl, 4, {}],
  ["ws://, MQTT 5.0", wsUrl, 5, {}],
  ["wss://, MQTT 3.1.1", wssUrl, 4, { ca }],
  ["wss://, MQTT 5.0", wssUrl, 5, { ca }],
];
for (const [name, url, version, extra] of cases) {
  try {
    await roundTrip(url, version, extra);
    console.log(`PASS MQTT.js ${name}: subscribe, publish, receive`);
  } catch (e) {
    failed++;
    console.log(`FAIL MQTT.js ${name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
