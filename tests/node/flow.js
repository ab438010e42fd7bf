// One /v2 flow with the official twilio npm package: only client.verify.baseUrl changed.
// Run by tests/e2e/test_verify_v2_node.py against the Procfile's processes and the simulator.
"use strict";
const assert = require("node:assert/strict");
const twilio = require("twilio");

const { GATEWAY_URL, SIM_URL, ACCOUNT_SID, AUTH_TOKEN, TO } = process.env;

async function smsCode(count) {
  // The simulated handset's inbox (the simulator's control API, not the gateway).
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const inbox = (await (await fetch(`${SIM_URL}/_sim/handsets/${encodeURIComponent(TO)}`)).json()).inbox || [];
    if (inbox.length >= count) return inbox[count - 1].body.match(/\b(\d{4,10})\b/)[1];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no SMS #${count} to ${TO}`);
}

async function refused(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a RestException");
}

async function main() {
  const client = twilio(ACCOUNT_SID, AUTH_TOKEN);
  client.verify.baseUrl = GATEWAY_URL;
  const service = await client.verify.v2.services.create({ friendlyName: "Node shop" });
  assert.match(service.sid, /^VA[0-9a-f]{32}$/);
  assert.ok(service.dateCreated instanceof Date && !isNaN(service.dateCreated));
  const verifications = client.verify.v2.services(service.sid).verifications;
  const checks = client.verify.v2.services(service.sid).verificationChecks;

  const first = await verifications.create({ to: TO, channel: "sms" });
  assert.match(first.sid, /^VE[0-9a-f]{32}$/);
  assert.equal(first.status, "pending");
  const code = await smsCode(1);
  const again = await verifications.create({ to: TO, channel: "sms" });
  assert.equal(again.sid, first.sid);
  assert.equal(again.sendCodeAttempts.length, 2);
  assert.equal(await smsCode(2), code);
  const byTo = await client.verify.v2.services(service.sid).verifications(TO).fetch();
  assert.equal(byTo.sid, first.sid);

  const miss = await checks.create({ to: TO, code: code === "000000" ? "111111" : "000000" });
  assert.deepEqual([miss.status, miss.valid], ["pending", false]);
  const hit = await checks.create({ verificationSid: first.sid, code });
  assert.deepEqual([hit.status, hit.valid], ["approved", true]);
  const gone = await refused(client.verify.v2.services(service.sid).verifications(first.sid).fetch());
  assert.deepEqual([gone.status, gone.code], [404, 20404]);

  const badTo = await refused(verifications.create({ to: "15017122661", channel: "sms" }));
  assert.deepEqual([badTo.status, badTo.code], [400, 60200]);
  assert.match(badTo.message, /To/);
  const stranger = twilio(ACCOUNT_SID, "not-the-token");
  stranger.verify.baseUrl = GATEWAY_URL;
  const denied = await refused(stranger.verify.v2.services(service.sid).fetch());
  assert.deepEqual([denied.status, denied.code], [401, 20003]);
  console.log(JSON.stringify({ ok: true, service: service.sid, verification: first.sid }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
