// A real browser: headless Chromium, driven by puppeteer-core, loads MQTT.js's browser build
// into a page, connects to a running Roost over wss://, subscribes, publishes and waits for its
// message; the page's result is asserted here. Arguments: the wss URL and the server's
// certificate (PEM), whose key the browser is told to trust (nothing else).
import puppeteer from "puppeteer-core";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const [wssUrl, serverCert] = process.argv.slice(2);
const spki = new X509Certificate(readFileSync(serverCert)).publicKey.export({ type: "spki", format: "der" });
const pin = createHash("sha256").update(spki).digest("base64");
const mqttBrowserBuild = fileURLToPath(new URL("./node_modules/mqtt/dist/mqtt.min.js", import.meta.url));

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", `--ignore-certificate-errors-spki-list=${pin}`],
});
let failed = 0;
try {
  const page = await browser.newPage();
  await page.setContent("<!doctype html><title>Roost from a browser</title>");
  await page.addScriptTag({ path: mqttBrowserBuild });
  for (const version of [4, 5]) {
    const result = await page.evaluate((url, protocolVersion) => new Promise((resolve) => {
      const topic = `browser/${protocolVersion}/${Math.random().toString(16).slice(2)}`;
      const client = mqtt.connect(url, { protocolVersion, reconnectPeriod: 0, connectTimeout: 5000 });
      const timer = setTimeout(() => { client.end(true); resolve("timed out"); }, 10000);
      client.on("error", (e) => { clearTimeout(timer); client.end(true); resolve(`error: ${e.message}`); });
      client.on("connect", () => {
        client.subscribe(topic, { qos: 1 }, (err) => {
          if (err) { clearTimeout(timer); resolve(`subscribe: ${err.message}`); return; }
          client.publish(topic, "hello from the browser", { qos: 1 });
        });
      });
      client.on("message", (t, payload) => {
        clearTimeout(timer);
        client.end();
        resolve(t === topic ? payload.toString() : `wrong topic ${t}`);
      });
    }), wssUrl, version);
    if (result === "hello from the browser") {
      console.log(`PASS Chromium + MQTT.js over wss://, MQTT ${version === 4 ? "3.1.1" : "5.0"}: subscribe, publish, receive`);
    } else {
      failed++;
      console.log(`FAIL Chromium + MQTT.js over wss://, MQTT ${version === 4 ? "3.1.1" : "5.0"}: ${result}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
