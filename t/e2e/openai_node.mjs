#!/usr/bin/env node
// One normal and one streamed chat call through the AILink gateway with the
// official Node "openai" client; prints a JSON summary on stdout.
//
//   npm ci --prefix t/e2e
//   node t/e2e/openai_node.mjs --base-url http://127.0.0.1:8080/v1 --token ailink_v1_...
//        [--model gpt-4o-mini] [--prompt "Hello"] [--events 4] [--bad-token T]
//
// --base-url and --token default to $AILINK_BASE_URL and $AILINK_TOKEN.
// --events sends X-Mock-Events (the mock provider's number of content chunks)
// with the streamed call.  With --bad-token, a third call with that token must
// fail, and its error is reported as "auth_error".
//
// Output: {"content", "streamed", "chunks", "content_chunks", "usage",
//          "stream_usage", "request_id", "auth_error"}
// Exit status 1 (message on stderr) when a call fails unexpectedly.

import { parseArgs } from "node:util";
import OpenAI from "openai";

const { values: opt } = parseArgs({
  options: {
    "base-url": { type: "string", default: process.env.AILINK_BASE_URL },
    token: { type: "string", default: process.env.AILINK_TOKEN },
    model: { type: "string", default: "gpt-4o-mini" },
    prompt: { type: "string", default: "Hello from Node" },
    events: { type: "string" },
    "bad-token": { type: "string" },
  },
});

if (!opt["base-url"] || !opt.token) {
  console.error("usage: openai_node.mjs --base-url URL --token TOKEN (or AILINK_BASE_URL, AILINK_TOKEN)");
  process.exit(2);
}

const clientOptions = { baseURL: opt["base-url"], maxRetries: 0, timeout: 10_000 };
const client = new OpenAI({ ...clientOptions, apiKey: opt.token });
const messages = [{ role: "user", content: opt.prompt }];

async function main() {
  const { data: completion, response } = await client.chat.completions
    .create({ model: opt.model, messages })
    .withResponse();

  const stream = await client.chat.completions.create(
    { model: opt.model, messages, stream: true, stream_options: { include_usage: true } },
    opt.events ? { headers: { "X-Mock-Events": opt.events } } : undefined,
  );
  let streamed = "";
  let chunks = 0;
  let contentChunks = 0;
  let streamUsage = null;
  for await (const chunk of stream) {
    chunks += 1;
    const delta = chunk.choices?.[0]?.delta?.content;
    if (delta) {
      streamed += delta;
      contentChunks += 1;
    }
    if (chunk.usage) streamUsage = chunk.usage;
  }

  let authError = null;
  if (opt["bad-token"]) {
    const bad = new OpenAI({ ...clientOptions, apiKey: opt["bad-token"] });
    try {
      await bad.chat.completions.create({ model: opt.model, messages });
      throw new Error("the call with --bad-token succeeded");
    } catch (e) {
      if (!(e instanceof OpenAI.APIError)) throw e;
      authError = {
        class: e.constructor.name,
        status: e.status,
        code: e.code ?? null,
        message: e.error?.message ?? null,
        request_id: e.headers?.get("x-ailink-request-id") ?? null,
      };
    }
  }

  return {
    content: completion.choices[0].message.content,
    streamed,
    chunks,
    content_chunks: contentChunks,
    usage: completion.usage ?? null,
    stream_usage: streamUsage,
    request_id: response.headers.get("x-ailink-request-id"),
    auth_error: authError,
  };
}

main().then(
  (summary) => process.stdout.write(JSON.stringify(summary) + "\n"),
  (err) => {
    console.error(`openai_node.mjs: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
