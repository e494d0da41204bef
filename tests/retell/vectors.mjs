// Retell webhook signatures made by retell-sdk itself (its `symmetric.sign`, which `sign`
// calls with the time now), and the SDK's own verdict on each at a given time, written to
// vectors.json for tests/it/platform_hooks.rs. Run from this folder:
//   npm ci && node vectors.mjs > vectors.json
import { readFileSync } from "node:fs";
import { symmetric } from "retell-sdk/lib/webhook_auth.js";

const version = JSON.parse(readFileSync("node_modules/retell-sdk/package.json", "utf8")).version;
const key = "key_webhook_badge_0a1b2c3d4e5f";
const other = "key_another_account_9f8e7d6c";
const stamp = 1703302428855;
const bodies = [
  JSON.stringify({ event: "call_ended", call: { call_id: "c1", call_status: "ended", end_timestamp: 1703302428855 } }),
  // Retell sends its bodies as its servers serialise them: spaces, escapes and non-ASCII
  // text are signed as they are.
  '{"event": "call_started", "call": {"call_id": "c2", "call_status": "ongoing", "to_number": "+14155550123", "metadata": {"note": "caf\\u00e9 \\"quoted\\" \u00e9\u00e8"}}}',
  "",
];

const vectors = [];
for (const body of bodies) {
  const signature = await symmetric.sign(body, key, stamp);
  const cases = [
    ["as signed", body, key, signature, stamp + 1000],
    ["another key", body, other, signature, stamp + 1000],
    ["another body", body + " ", key, signature, stamp + 1000],
    ["upper-case hex", body, key, signature.toUpperCase().replace("V=", "v=").replace(",D=", ",d="), stamp],
    ["just inside five minutes", body, key, signature, stamp + 5 * 60 * 1000],
    ["just past five minutes", body, key, signature, stamp + 5 * 60 * 1000 + 1],
    ["five minutes early", body, key, signature, stamp - 5 * 60 * 1000 - 1],
  ];
  for (const [name, checked, secret, sig, now] of cases) {
    const sdkVerifies = await symmetric.verify(checked, secret, sig, { timestamp: now });
    vectors.push({ name, body: checked, key: secret, signature: sig, now_ms: now, sdk_verifies: sdkVerifies });
  }
}
console.log(JSON.stringify({ "retell-sdk": version, command: "cd tests/retell && npm ci && node vectors.mjs > vectors.json", vectors }, null, 1));
